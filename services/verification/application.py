"""The verification application: revoke on reset; register and challenge methods.

Methods: the authenticator app (TOTP codes, and number-matching push once a device has
activated with its Ed25519 key) and a phone (a code by text, or a call answered with #, or a
call that reads out a code). Each family lives in its own module (``methods_app``,
``methods_push``, ``methods_phone``); this class composes them and holds what crosses them:
the reset policy, the status, codes and challenges of any method, the default method.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import Tracking

from services.verification import commands as c
from services.verification import presenter
from services.verification.base import step_facts
from services.verification.callbacks import CallBackMethods
from services.verification.domain import (
    APP_CHANNEL,
    CODE_DIGITS,
    PASSKEY,
    PHONE,
    SMS,
    VERIFIED,
    CodeRejected,
    MethodLockedError,
)
from services.verification.method_challenges import MethodChallengeMethods
from services.verification.methods_app import AppMethods
from services.verification.methods_passkey import PasskeyMethods
from services.verification.methods_phone import PhoneMethods
from services.verification.phone import Country, masked
from services.verification.telephony import Outgoing
from shared.contracts import EventEnvelope
from shared.contracts.client import client_facts
from shared.contracts.ticketing import ResetApproved, ResetScheduled
from shared.errors import InvalidRequest


class VerificationApplication(AppMethods, MethodChallengeMethods, PhoneMethods, PasskeyMethods,
                              CallBackMethods):
    # --- the reset policy --------------------------------------------------------------------
    def on_reset_approved(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        approved = ResetApproved.model_validate(envelope.body)
        enrollment = self._enrollment(approved.username)
        revoked = enrollment.revoke_before(envelope.occurred_at, approved.ticket_id)
        mark = self.reset_mark_for(envelope)
        saved = self.save_processed(tracking, enrollment, mark)
        if saved:
            for method in revoked:  # crypto-shred the revoked methods' secrets
                self.vault.delete(method.secret_ref)
        return saved

    # --- the cancel window: tell a surviving phone ------------------------------------------
    def on_reset_scheduled(self, envelope: EventEnvelope) -> Outgoing | None:
        """A reset waits for its cancel window: text the user's phone, if one that takes texts
        survives (credentials mails the cancel link to the address on file). The text to send
        after the commit, or None. Like every text, no sweep: the mail is the sure channel."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return None
        scheduled = ResetScheduled.model_validate(envelope.body)
        enrollment = self._enrollment(scheduled.username)
        phone = enrollment.phone_to_tell()
        e164 = (self.vault.get(phone.secret_ref) or b"").decode() if phone else ""
        if phone is None or not e164:
            self.save_processed(tracking)
            return None
        intent = f"{envelope.source}:{envelope.notification_id}"
        enrollment.intend_reset_notice(intent, phone.method_id, scheduled.ticket_id)
        if not self.save_processed(tracking, enrollment):
            return None
        body = presenter.reset_notice_sms(self.settings.portal_name,
                                          self.settings.helpdesk_contact)
        return Outgoing(enrollment.username, intent, phone.method_id, SMS, e164, masked(e164),
                        body=body)

    def mark_reset_notice(self, outgoing: Outgoing, error: str | None) -> None:
        enrollment = self._enrollment(outgoing.username)
        enrollment.mark_reset_notice(outgoing.intent_id, outgoing.method_id, outgoing.masked_to,
                                     error)
        self.save(enrollment)

    # --- what the web shows ------------------------------------------------------------------
    def status(self, cmd: c.Status) -> dict[str, Any]:
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        return {
            "username": username,
            "must_enroll": not enrollment.registered,
            "default_method": enrollment.default_method,
            "methods": [self._describe(enrollment, m) for m in enrollment.registered],
        }

    def verify_code(self, cmd: c.VerifyCode) -> dict[str, Any]:
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        code = cmd.code.strip().replace(" ", "")
        if not (code.isdigit() and len(code) == CODE_DIGITS):
            raise InvalidRequest(presenter.code_format_message(CODE_DIGITS))
        method_id = cmd.method_id or enrollment.default_method
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        enrollment.check_usable(method)
        if method.method_type == PASSKEY:
            raise InvalidRequest("A passkey or security key takes no code: use it instead.")
        if method.method_type == PHONE:
            verified = self._check_phone_code(enrollment, method, code)
        else:
            verified = self._check_app_code(enrollment, method, code)
        self.save(enrollment)
        if not verified:  # the wrong code that locks the method is told as a lock
            wrong = enrollment.methods[method_id]
            refusal = MethodLockedError if wrong.locked else CodeRejected
            raise refusal(presenter.wrong_code_message(wrong, self.settings.method_lock_after))
        return self._verified(username, enrollment, method_id)

    def start_challenge(self, cmd: c.StartChallenge) -> tuple[dict[str, Any], Outgoing | None]:
        """A later sign-in: challenge the default (or chosen) method and offer the others."""
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        method_id = cmd.method_id or enrollment.default_method
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        if not method.registered:
            raise InvalidRequest("That method is not set up yet.")
        enrollment.check_usable(method)
        outgoing: Outgoing | None = None
        if method.method_type == PHONE:
            if cmd.channel == APP_CHANNEL:
                raise InvalidRequest("Only an authenticator app shows a code to type.")
            result, outgoing = self._send_phone_code(username, enrollment, method)
        elif method.method_type == PASSKEY:
            result = self._passkey_step(enrollment, method)
        elif method.devices and cmd.channel != APP_CHANNEL:
            result = self._issue_push(username, enrollment, method, None, cmd.location)
        else:
            result = self._app_code_step(method)
        result["label"] = method.label
        result["others"] = [
            self._describe(enrollment, m) for m in enrollment.registered if m.method_id != method_id
        ]
        return result, outgoing

    def phone_countries(self, cmd: c.PhoneCountries) -> list[Country]:
        """The countries and regions a phone may be in, in display order (United States first)."""
        return [Country(**country) for country in self.phone_policy.countries()]

    def challenge_status(self, cmd: c.ChallengeStatus) -> dict[str, Any]:
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        challenge = enrollment.challenge(cmd.challenge_id)
        state = challenge.status(self.clock.now())
        result: dict[str, Any] = {
            "challenge_id": challenge.challenge_id, "method_id": challenge.method_id,
            "kind": challenge.kind, "state": state,
            **step_facts(challenge.channel, challenge.takes_code),
            "message": presenter.status_message(challenge.kind, state, challenge.purpose),
        }
        if state == VERIFIED:
            result.update(self._verified(username, enrollment, challenge.method_id))
        return result

    # --- Security info: list, change the default, remove ------------------------------------
    def security_info(self, cmd: c.SecurityInfo) -> dict[str, Any]:
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        return {
            "username": username,
            "default_method": enrollment.default_method,
            "methods": [self._describe(enrollment, m) for m in enrollment.registered],
            "fresh": self.is_fresh(username, cmd.token),
            "fresh_minutes": self.settings.fresh_mfa_minutes,
        }

    def set_default_method(self, cmd: c.SetDefaultMethod) -> dict[str, Any]:
        _, enrollment = self._may_change_methods(cmd.username, cmd.token)
        enrollment.change_default(cmd.method_id, client_facts(cmd.client))
        self.save(enrollment)
        method = enrollment.methods[cmd.method_id]
        return {"default_method": cmd.method_id, "default_label": method.label}

    def remove_method(self, cmd: c.RemoveMethod) -> dict[str, Any]:
        username = self._fresh_mfa(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        removed = enrollment.remove(cmd.method_id, client_facts(cmd.client))
        if self.save(enrollment):
            self.vault.delete(removed.secret_ref)  # crypto-shred its seed or number
        return {"removed": removed.method_id, "label": removed.label}
