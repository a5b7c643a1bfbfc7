"""A phone: a code by text, a call answered with #, or a call that reads out a code.

The number lives in the vault; events hold its masked form and a keyed hash (for the
per-number send limit). Texts and calls are sent by the wiring after the intent is saved
(``Outgoing``), then recorded as sent or failed. Twilio's webhooks end here, already
authenticated by their signature.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from eventsourcing.application import AggregateNotFoundError

from services.verification import commands as c
from services.verification import presenter, push
from services.verification.base import VerificationBase, new_id, step_facts
from services.verification.domain import (
    CALL,
    CODE_DIGITS,
    PHONE,
    SMS,
    Enrollment,
    Method,
    PhoneSends,
    SendRateLimited,
    code_hash,
    phone_hash,
)
from services.verification.phone import DIRECT_LINE_NOTE, masked, parse_phone
from services.verification.telephony import Outgoing
from shared.contracts.client import client_facts
from shared.errors import InvalidRequest, NotFound


class PhoneMethods(VerificationBase):
    # --- registration and codes --------------------------------------------------------------
    def start_phone_registration(
        self, cmd: c.StartPhoneRegistration
    ) -> tuple[dict[str, Any], Outgoing | None]:
        username, enrollment = self._may_change_methods(cmd.username, cmd.token)
        answered = self.idempotency.replay("start_phone_registration", cmd)
        if answered is not None:  # a retry: the first answer, no second text or call
            self._pending_setup(enrollment, answered["method_id"])
            return answered, None
        e164 = parse_phone(cmd.number, cmd.country, self.phone_policy)
        method_id = new_id("m")
        ref = f"phone:{enrollment.id}:{method_id}"
        number_hash = phone_hash(self.code_key, e164)
        sends = self._check_send_limits(enrollment, number_hash)
        self.vault.put(ref, e164.encode())
        enrollment.start_registration(
            method_id=method_id, method_type=PHONE, secret_ref=ref, started_at=self.clock.now(),
            channel=cmd.channel, masked_phone=masked(e164), phone_hash=number_hash,
            client=client_facts(cmd.client),
        )
        result, outgoing = self._issue_phone(username, enrollment, enrollment.methods[method_id], e164)
        sends.count(at=self.clock.now())
        result["note"] = DIRECT_LINE_NOTE
        self.save(enrollment, sends,
                  *self.idempotency.record("start_phone_registration", cmd, result))
        return result, outgoing

    def resend_code(self, cmd: c.ResendCode) -> tuple[dict[str, Any], Outgoing]:
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        method = enrollment.method(cmd.method_id)
        if method.method_type != PHONE:
            raise InvalidRequest("Only a phone method gets codes sent.")
        enrollment.check_usable(method)
        return self._send_phone_code(username, enrollment, method)

    def _check_phone_code(self, enrollment: Enrollment, method: Method, code: str) -> bool:
        """A code sent by text or read out by a call, against the latest one sent."""
        latest = enrollment.latest_challenge(method.method_id, (SMS, CALL))
        matches = latest is not None and latest.matches(self.code_key, code)
        return enrollment.verify_sent_code(
            method.method_id, matches, self.clock.now(), self.settings.method_lock_after
        )

    def _send_phone_code(
        self, username: str, enrollment: Enrollment, method: Method
    ) -> tuple[dict[str, Any], Outgoing]:
        """A new text or call to a registered phone, within the send limits, saved."""
        e164 = (self.vault.get(method.secret_ref) or b"").decode()
        if not e164:
            raise NotFound("That phone method has no number any more. Set it up again.")
        sends = self._check_send_limits(enrollment, method.phone_hash or "")
        result, outgoing = self._issue_phone(username, enrollment, method, e164)
        sends.count(at=self.clock.now())
        self.save(enrollment, sends)
        return result, outgoing

    def _check_send_limits(self, enrollment: Enrollment, number_hash: str) -> PhoneSends:
        window = self.settings.send_window_minutes
        since = self.clock.now() - timedelta(minutes=window)
        if enrollment.sends_since(since) >= self.settings.send_limit_per_user:
            raise SendRateLimited(
                f"Too many texts and calls for your account. Wait {window} minutes and try again, "
                "or use another method."
            )
        try:
            sends: PhoneSends = self.repository.get(PhoneSends.create_id(number_hash))
        except AggregateNotFoundError:
            sends = PhoneSends(phone_hash=number_hash)
        if sends.since(since) >= self.settings.send_limit_per_number:
            raise SendRateLimited(
                f"Too many texts and calls to this phone number. Wait {window} minutes and try again."
            )
        return sends

    def _issue_phone(
        self, username: str, enrollment: Enrollment, method: Method, e164: str
    ) -> tuple[dict[str, Any], Outgoing]:
        challenge_id = new_id("c")
        now = self.clock.now()
        kind = SMS if method.channel == "sms" else CALL
        read_code = kind == SMS or self._calls_read_code()
        code = push.new_code(CODE_DIGITS) if read_code else None
        expires = now + timedelta(minutes=self.settings.phone_code_minutes)
        enrollment.issue_challenge(
            challenge_id, method.method_id, PHONE,
            purpose="sign_in" if method.registered else "registration", kind=kind,
            issued_at=now, expires_at=expires,
            code_hash=code_hash(self.code_key, challenge_id, code) if code else None,
        )
        base = self.settings.webhook_base_url
        query = f"u={quote(username)}&c={challenge_id}"
        portal = self.settings.portal_name
        to = masked(e164)
        body: str | None = None
        url: str | None = None
        if kind == SMS and code:
            body = presenter.sms_body(code, portal, self.settings.phone_code_minutes)
            prompt = presenter.sms_prompt(to, CODE_DIGITS)
        elif code:
            body = presenter.read_code_twiml(code, portal)
            prompt = presenter.read_code_prompt(to)
        else:
            url = f"{base}/twilio/voice?{query}"
            prompt = presenter.press_pound_prompt(to)
        outgoing = Outgoing(username, challenge_id, method.method_id, kind, e164, to, body=body,
                            url=url, status_callback=f"{base}/twilio/status?{query}")
        result = {
            "method_id": method.method_id, "challenge_id": challenge_id, "kind": kind,
            **step_facts(kind, takes_code=code is not None), "masked_phone": to,
            "expires_at": expires.isoformat(), "prompt": prompt,
        }
        return result, outgoing

    def mark_sent(self, outgoing: Outgoing, sid: str) -> None:
        enrollment = self._enrollment(outgoing.username)
        enrollment.mark_sent(outgoing.challenge_id, outgoing.method_id, outgoing.channel,
                             outgoing.masked_to)
        self.save(enrollment)

    def mark_failed(self, outgoing: Outgoing, reason: str) -> None:
        enrollment = self._enrollment(outgoing.username)
        enrollment.mark_delivery_failed(outgoing.challenge_id, outgoing.method_id,
                                        outgoing.channel, reason)
        self.save(enrollment)

    # --- Twilio webhooks (already authenticated by their signature) --------------------------
    def voice_twiml(self, username: str, challenge_id: str) -> str:
        enrollment = self._enrollment(username)
        challenge = enrollment.issued.get(challenge_id)
        if challenge is None or challenge.kind != CALL or not challenge.alive(self.clock.now()):
            return presenter.NO_LONGER_VALID_TWIML
        action = f"{self.settings.webhook_base_url}/twilio/gather?u={quote(username)}&c={challenge_id}"
        return presenter.gather_twiml(action, self.settings.portal_name)

    def call_gathered(self, username: str, challenge_id: str, digits: str) -> str:
        enrollment = self._enrollment(username)
        outcome = enrollment.answer_call(
            challenge_id, digits, self.clock.now(), self.settings.method_lock_after
        )
        if outcome is None:
            return presenter.NO_LONGER_VALID_TWIML
        self.save(enrollment)
        return presenter.PHONE_VERIFIED_TWIML if outcome else presenter.NOT_POUND_TWIML

    def call_status(self, username: str, challenge_id: str, status: str) -> None:
        if status not in ("busy", "failed", "no-answer", "canceled"):
            return
        enrollment = self._enrollment(username)
        enrollment.call_not_answered(challenge_id, status, self.clock.now())
        self.save(enrollment)
