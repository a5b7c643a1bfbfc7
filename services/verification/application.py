"""The verification application: revoke on reset; register and challenge methods.

Methods: the authenticator app (TOTP codes, and number-matching push once a device has
activated with its Ed25519 key) and a phone (a code by text, or a call answered with #, or a
call that reads out a code). Every command is get, mutate, save; texts and calls are sent by
the wiring after the intent is saved (``Outgoing``), then recorded as sent or failed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

import segno
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.verification import commands as c
from services.verification import push, totp
from services.verification.domain import (
    APP,
    CALL,
    PHONE,
    PUSH,
    SMS,
    VERIFIED,
    CodeRejected,
    Enrollment,
    Method,
    PhoneSends,
    SendRateLimited,
    UnknownDevice,
)
from services.verification.phone import DIRECT_LINE_NOTE, masked, parse_phone
from services.verification.telephony import Outgoing
from shared.application import ServiceApplication
from shared.contracts import EventEnvelope
from shared.errors import AuthenticationFailed, InvalidRequest, NotFound
from shared.secrets import Vault, keyed_hash
from shared.settings import Settings
from shared.tokens import issue_token, verify_token

SIGNATURE_SLACK_SECONDS = 300
CODE = re.compile(r"^\d{6}$")
STATUS_MESSAGES = {
    (PUSH, "verified"): "Notification approved",
    (CALL, "verified"): "Call answered. Your phone was registered successfully.",
    (SMS, "verified"): "Code accepted.",
    (PUSH, "denied"): "The request was denied on your device.",
    (PUSH, "failed"): "Too many wrong numbers: this request is closed. Try again.",
    (CALL, "failed"): "The call was not answered with #. Try again.",
}


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class VerificationApplication(ServiceApplication):
    service = "verification"
    system_events = frozenset({"MethodsRevoked", "MethodLocked", "CodeDispatched", "CodeDeliveryFailed"})

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.vault = Vault(settings, self.service)
        self.code_key = hmac.new(settings.vault_key_bytes, b"rekey one-time codes", hashlib.sha256).digest()

    def close(self) -> None:
        self.vault.close()
        super().close()

    # --- the reset policy --------------------------------------------------------------------
    def on_reset_approved(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        enrollment = self._enrollment(envelope.subject)
        revoked = enrollment.revoke_before(envelope.occurred_at, envelope.correlation_id)
        saved = self.save_processed(tracking, enrollment)
        if saved:
            for method in revoked:  # crypto-shred the revoked methods' secrets
                self.vault.delete(method.secret_ref)
        return saved

    # --- what the web shows ------------------------------------------------------------------
    def status(self, cmd: c.Status) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        return {
            "username": username,
            "must_enroll": not enrollment.registered,
            "default_method": enrollment.default_method,
            "methods": [self._describe(enrollment, m) for m in enrollment.registered],
        }

    def _describe(self, enrollment: Enrollment, m: Method) -> dict[str, Any]:
        return {
            "method_id": m.method_id, "method_type": m.method_type, "label": m.label,
            "channel": m.channel, "masked_phone": m.masked_phone, "push": bool(m.devices),
            "locked": m.locked, "default": m.method_id == enrollment.default_method,
        }

    # --- authenticator app -------------------------------------------------------------------
    def start_app_registration(self, cmd: c.StartAppRegistration) -> dict[str, Any]:
        username, enrollment = self._may_change_methods(cmd.username, cmd.token)
        method_id = _new_id("m")
        challenge_id = _new_id("c")
        seed = totp.new_seed()
        activation = secrets.token_urlsafe(24)
        ref = f"totp:{enrollment.id}:{method_id}"
        self.vault.put(ref, seed.encode())
        enrollment.start_registration(
            method_id=method_id, method_type=APP, secret_ref=ref, started_at=_now(),
            activation_hash=keyed_hash(self.code_key, f"activation:{activation}"),
        )
        enrollment.issue_challenge(challenge_id, method_id, APP, purpose="registration", issued_at=_now())
        self.save(enrollment)
        issuer = self.settings.portal_name
        uri = totp.provisioning_uri(seed, username, issuer)
        # Extra parameters: other apps ignore them; ours activates push with them.
        uri += "&" + urlencode({"rekey_method": method_id, "rekey_activation": activation})
        return {
            "method_id": method_id,
            "challenge_id": challenge_id,
            "issuer": issuer,
            "account_name": username,
            "otpauth_uri": uri,
            "secret_key": totp.readable_key(seed),
            "qr_svg": segno.make(uri, error="m").svg_inline(scale=4),
            "digits": totp.DIGITS,
            "period": totp.PERIOD,
        }

    def verify_code(self, cmd: c.VerifyCode) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        code = cmd.code.strip().replace(" ", "")
        if not CODE.match(code):
            raise InvalidRequest("A code has 6 digits.")
        enrollment = self._enrollment(username)
        method_id = cmd.method_id or enrollment.default_method
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        enrollment.check_usable(method)
        limit = self.settings.method_lock_after
        if method.method_type == PHONE:
            latest = enrollment.latest_challenge(method_id, (SMS, CALL))
            expected = latest.code_hash if latest is not None else None
            matches = expected is not None and hmac.compare_digest(
                keyed_hash(self.code_key, f"{latest.challenge_id}:{code}"), expected  # type: ignore[union-attr]
            )
            verified = enrollment.verify_sent_code(method_id, matches, _now(), limit)
        else:
            challenge_id = method.challenges[-1] if method.challenges else _new_id("c")
            if method.registered:
                challenge_id = _new_id("c")
                enrollment.issue_challenge(
                    challenge_id, method_id, method.method_type, "sign_in", issued_at=_now()
                )
            seed = self.vault.get(method.secret_ref)
            step = totp.matching_step(seed.decode(), code) if seed else None
            verified = enrollment.verify(method_id, challenge_id, step, limit)
        self.save(enrollment)
        if not verified:
            raise CodeRejected(self._wrong_code_message(enrollment.methods[method_id]))
        return self._verified(username, enrollment, method_id)

    def _wrong_code_message(self, method: Method) -> str:
        if method.locked:
            return "Too many wrong codes: this method is now locked. Call the help desk."
        left = self.settings.method_lock_after - method.failures
        return f"That code is not right, or it was already used. {left} tries left before the method locks."

    def _verified(self, username: str, enrollment: Enrollment, method_id: str) -> dict[str, Any]:
        default = enrollment.default_method
        return {
            "verified": True,
            "method_id": method_id,
            "default_method": default,
            "default_label": enrollment.methods[default].label if default else None,
            "mfa_token": issue_token(self.settings.token_key_bytes, username, "mfa"),
        }

    # --- push with number matching: the web's side -------------------------------------------
    def start_push(self, cmd: c.StartPush) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        setting_up = [m.method_id for m in enrollment.methods.values()
                      if m.method_type == APP and m.devices and not m.registered]
        method_id = cmd.method_id or (setting_up[-1] if setting_up else enrollment.default_method)
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        enrollment.check_usable(method)
        if method.method_type != APP or not method.devices:
            raise InvalidRequest("No authenticator with notifications is activated for that method.")
        return self._issue_push(
            username, enrollment, method, cmd.application, cmd.location
        )

    def _issue_push(
        self, username: str, enrollment: Enrollment, method: Method, application: str | None,
        location: str | None,
    ) -> dict[str, Any]:
        challenge_id = _new_id("c")
        number = push.new_number(self.settings.push_number_digits)
        now = _now()
        expires = now + timedelta(seconds=self.settings.push_ttl_seconds)
        context = {
            "application": application or self.settings.portal_name,
            "requested_at": now.isoformat(timespec="seconds"),
            "location": location or "unknown location",
            "account": username,
        }
        enrollment.issue_challenge(
            challenge_id, method.method_id, APP,
            purpose="sign_in" if method.registered else "registration", kind=PUSH,
            issued_at=now, expires_at=expires,
            code_hash=keyed_hash(self.code_key, f"{challenge_id}:{number}"), context=context,
        )
        self.save(enrollment)
        return {
            "challenge_id": challenge_id, "method_id": method.method_id, "kind": PUSH,
            "number": number, "expires_at": expires.isoformat(),
            "prompt": "Approve the notification we're sending to your app by entering the "
                      "number shown below.",
        }

    def challenge_status(self, cmd: c.ChallengeStatus) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        challenge = enrollment.challenge(cmd.challenge_id)
        state = challenge.status(_now())
        result: dict[str, Any] = {
            "challenge_id": challenge.challenge_id, "method_id": challenge.method_id,
            "kind": challenge.kind, "state": state,
            "message": STATUS_MESSAGES.get((challenge.kind, state), state.capitalize()),
        }
        if state == VERIFIED:
            result.update(self._verified(username, enrollment, challenge.method_id))
        return result

    # --- the authenticator device API --------------------------------------------------------
    def activate_device(self, cmd: c.ActivateDevice) -> dict[str, Any]:
        self._fresh(cmd.signed_at)
        if not push.signature_ok(cmd.public_key, cmd.signature, "activate", cmd.signed_fields()):
            raise UnknownDevice("The activation request is not signed by the key it carries.")
        enrollment = self._enrollment(cmd.username)
        method = enrollment.method(cmd.method_id)
        if method.method_type != APP:
            raise InvalidRequest("Only an authenticator app method can activate a device.")
        expected = method.activation_hash or ""
        ok = hmac.compare_digest(
            keyed_hash(self.code_key, f"activation:{cmd.activation_code}"), expected
        )
        if cmd.device_id in method.devices:
            raise InvalidRequest("That device is already activated.")
        enrollment.activate_device(
            cmd.method_id, ok, cmd.device_id, cmd.public_key, cmd.device_name,
            push.fingerprint(cmd.public_key), _now(),
        )
        self.save(enrollment)
        return {"device_id": cmd.device_id, "method_id": cmd.method_id,
                "issuer": self.settings.portal_name, "account_name": enrollment.username}

    def device_pending(self, cmd: c.DevicePending) -> list[dict[str, Any]]:
        enrollment = self._device_checked(cmd, "pending")
        now = _now()
        return [
            {"challenge_id": ch.challenge_id, "method_id": ch.method_id, **ch.context,
             "expires_at": ch.expires_at.isoformat() if ch.expires_at else None}
            for ch in enrollment.issued.values()
            if ch.method_id == cmd.method_id and ch.kind == PUSH and ch.alive(now)
        ]

    def device_respond(self, cmd: c.DeviceRespond) -> dict[str, Any]:
        enrollment = self._device_checked(cmd, "respond")
        now = _now()
        challenge = enrollment.issued.get(cmd.challenge_id)
        if challenge is None or challenge.method_id != cmd.method_id:
            raise NotFound("There is no such sign-in request.")
        if cmd.decision == "deny":
            enrollment.deny_push(cmd.challenge_id, cmd.device_id, cmd.nonce, now)
            self.save(enrollment)
            return {"challenge_id": cmd.challenge_id, "state": "denied",
                    "message": "Denied. Your help desk's security team is told."}
        number = (cmd.number or "").strip()
        if not number.isdigit():
            raise InvalidRequest("Type the number shown on the sign-in screen.")
        ok = challenge.code_hash is not None and hmac.compare_digest(
            keyed_hash(self.code_key, f"{challenge.challenge_id}:{number}"), challenge.code_hash
        )
        approved = enrollment.answer_push(
            cmd.challenge_id, cmd.device_id, ok, cmd.nonce, now, self.settings.push_max_wrong,
            self.settings.method_lock_after,
        )
        self.save(enrollment)
        state = enrollment.issued[cmd.challenge_id].state
        if approved:
            return {"challenge_id": cmd.challenge_id, "state": state, "message": "Approved."}
        raise CodeRejected(
            "That number is not the one shown. The request is closed; try signing in again."
            if state != "pending"
            else "That number is not the one shown on the sign-in screen. Try again."
        )

    def _device_checked(self, cmd: c.DevicePending | c.DeviceRespond, purpose: str) -> Enrollment:
        self._fresh(cmd.signed_at)
        enrollment = self._enrollment(cmd.username)
        device = enrollment.device(cmd.method_id, cmd.device_id)
        if not push.signature_ok(device.public_key, cmd.signature, purpose, cmd.signed_fields()):
            raise UnknownDevice("The request is not signed by this device's key.")
        return enrollment

    def _fresh(self, signed_at: int) -> None:
        if abs(time.time() - signed_at) > SIGNATURE_SLACK_SECONDS:
            raise AuthenticationFailed("The device's request is too old, or its clock is wrong.")

    # --- phone -------------------------------------------------------------------------------
    def start_phone_registration(self, cmd: c.StartPhoneRegistration) -> tuple[dict[str, Any], Outgoing]:
        username, enrollment = self._may_change_methods(cmd.username, cmd.token)
        e164 = parse_phone(cmd.number, cmd.country)
        method_id = _new_id("m")
        ref = f"phone:{enrollment.id}:{method_id}"
        phone_hash = keyed_hash(self.code_key, f"phone:{e164}")
        sends = self._check_send_limits(enrollment, phone_hash)
        self.vault.put(ref, e164.encode())
        enrollment.start_registration(
            method_id=method_id, method_type=PHONE, secret_ref=ref, started_at=_now(),
            channel=cmd.channel, masked_phone=masked(e164), phone_hash=phone_hash,
        )
        result, outgoing = self._issue_phone(username, enrollment, enrollment.methods[method_id], e164)
        sends.count(at=_now())
        self.save(enrollment, sends)
        result["note"] = DIRECT_LINE_NOTE
        return result, outgoing

    def start_challenge(self, cmd: c.StartChallenge) -> tuple[dict[str, Any], Outgoing | None]:
        """A later sign-in: challenge the default (or chosen) method and offer the others."""
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        method_id = cmd.method_id or enrollment.default_method
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        if not method.registered:
            raise InvalidRequest("That method is not set up yet.")
        enrollment.check_usable(method)
        outgoing: Outgoing | None = None
        if method.method_type == PHONE:
            result, outgoing = self._send_phone_code(username, enrollment, method)
        elif method.devices:
            result = self._issue_push(username, enrollment, method, None, cmd.location)
        else:
            result = {"method_id": method_id, "kind": "totp",
                      "prompt": "Enter the code shown in your authenticator app."}
        result["label"] = method.label
        result["others"] = [
            self._describe(enrollment, m) for m in enrollment.registered if m.method_id != method_id
        ]
        return result, outgoing

    def resend_code(self, cmd: c.ResendCode) -> tuple[dict[str, Any], Outgoing]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        method = enrollment.method(cmd.method_id)
        if method.method_type != PHONE:
            raise InvalidRequest("Only a phone method gets codes sent.")
        enrollment.check_usable(method)
        return self._send_phone_code(username, enrollment, method)

    def _send_phone_code(
        self, username: str, enrollment: Enrollment, method: Method
    ) -> tuple[dict[str, Any], Outgoing]:
        """A new text or call to a registered phone, within the send limits, saved."""
        e164 = (self.vault.get(method.secret_ref) or b"").decode()
        if not e164:
            raise NotFound("That phone method has no number any more. Set it up again.")
        sends = self._check_send_limits(enrollment, method.phone_hash or "")
        result, outgoing = self._issue_phone(username, enrollment, method, e164)
        sends.count(at=_now())
        self.save(enrollment, sends)
        return result, outgoing

    def _check_send_limits(self, enrollment: Enrollment, phone_hash: str) -> PhoneSends:
        window = self.settings.send_window_minutes
        since = _now() - timedelta(minutes=window)
        if enrollment.sends_since(since) >= self.settings.send_limit_per_user:
            raise SendRateLimited(
                f"Too many texts and calls for your account. Wait {window} minutes and try again, "
                "or use another method."
            )
        try:
            sends: PhoneSends = self.repository.get(PhoneSends.create_id(phone_hash))
        except AggregateNotFoundError:
            sends = PhoneSends(phone_hash=phone_hash)
        if sends.since(since) >= self.settings.send_limit_per_number:
            raise SendRateLimited(
                f"Too many texts and calls to this phone number. Wait {window} minutes and try again."
            )
        return sends

    def _issue_phone(
        self, username: str, enrollment: Enrollment, method: Method, e164: str
    ) -> tuple[dict[str, Any], Outgoing]:
        challenge_id = _new_id("c")
        now = _now()
        kind = SMS if method.channel == "sms" else CALL
        read_code = kind == SMS or self.settings.call_mode == "read_code"
        code = push.new_code() if read_code else None
        expires = now + timedelta(minutes=self.settings.phone_code_minutes)
        enrollment.issue_challenge(
            challenge_id, method.method_id, PHONE,
            purpose="sign_in" if method.registered else "registration", kind=kind,
            issued_at=now, expires_at=expires,
            code_hash=keyed_hash(self.code_key, f"{challenge_id}:{code}") if code else None,
        )
        base = self.settings.webhook_base_url
        query = f"u={quote(username)}&c={challenge_id}"
        portal = self.settings.portal_name
        if kind == SMS:
            outgoing = Outgoing(
                username, challenge_id, method.method_id, "sms", e164, masked(e164),
                body=f"{code} is your {portal} verification code. It expires in "
                     f"{self.settings.phone_code_minutes} minutes. Do not share it.",
                status_callback=f"{base}/twilio/status?{query}",
            )
            prompt = f"We texted a 6-digit code to {masked(e164)}. Enter it below."
        elif code:
            spoken = ", ".join(code)
            twiml = (
                f"<Response><Say>Your {escape(portal)} verification code is {spoken}. "
                f"Again: {spoken}.</Say></Response>"
            )
            outgoing = Outgoing(
                username, challenge_id, method.method_id, "call", e164, masked(e164), body=twiml,
                status_callback=f"{base}/twilio/status?{query}",
            )
            prompt = f"We are calling {masked(e164)}. Enter the code the call reads out."
        else:
            outgoing = Outgoing(
                username, challenge_id, method.method_id, "call", e164, masked(e164),
                url=f"{base}/twilio/voice?{query}", status_callback=f"{base}/twilio/status?{query}",
            )
            prompt = f"We are calling {masked(e164)}. Answer the call and press the # key."
        result = {
            "method_id": method.method_id, "challenge_id": challenge_id, "kind": kind,
            "channel": method.channel, "masked_phone": masked(e164),
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
        if challenge is None or challenge.kind != CALL or not challenge.alive(_now()):
            return "<Response><Say>This request is no longer valid. Goodbye.</Say><Hangup/></Response>"
        action = escape(
            f"{self.settings.webhook_base_url}/twilio/gather?u={quote(username)}&c={challenge_id}"
        )
        portal = escape(self.settings.portal_name)
        return (
            f'<Response><Gather numDigits="1" action="{action}" method="POST" timeout="10">'
            f"<Say>This is the {portal}. If you are setting up or signing in, press the pound key "
            "now. If not, hang up.</Say></Gather><Say>We did not get a key press. Goodbye.</Say>"
            "</Response>"
        )

    def call_gathered(self, username: str, challenge_id: str, digits: str) -> str:
        enrollment = self._enrollment(username)
        outcome = enrollment.answer_call(challenge_id, digits, _now(), self.settings.method_lock_after)
        if outcome is None:
            return "<Response><Say>This request is no longer valid. Goodbye.</Say><Hangup/></Response>"
        self.save(enrollment)
        if outcome:
            return "<Response><Say>Thank you. Your phone is verified. Goodbye.</Say></Response>"
        return "<Response><Say>That was not the pound key. Goodbye.</Say></Response>"

    def call_status(self, username: str, challenge_id: str, status: str) -> None:
        if status not in ("busy", "failed", "no-answer", "canceled"):
            return
        enrollment = self._enrollment(username)
        enrollment.call_not_answered(challenge_id, status, _now())
        self.save(enrollment)

    # --- defaults ----------------------------------------------------------------------------
    def set_default_method(self, cmd: c.SetDefaultMethod) -> dict[str, Any]:
        _, enrollment = self._may_change_methods(cmd.username, cmd.token)
        enrollment.set_default(cmd.method_id)
        self.save(enrollment)
        method = enrollment.methods[cmd.method_id]
        return {"default_method": cmd.method_id, "default_label": method.label}

    # --- helpers -----------------------------------------------------------------------------
    def _signed_in(self, username: str, token: str, stage: str = "password") -> str:
        """The username a token vouches for; tokens from before the last reset do not count."""
        reset_at = self._enrollment(username).reset_at
        return verify_token(
            self.settings.token_key_bytes, token, stage, username,
            issued_after=reset_at.timestamp() if reset_at else None,
        )

    def _may_change_methods(self, username: str, token: str) -> tuple[str, Enrollment]:
        """The first method needs only the password step; once a user has a method, adding
        or changing one needs a completed MFA sign-in, or a stolen password alone would let
        anyone enrol their own phone."""
        try:
            return self._signed_in(username, token, "mfa"), self._enrollment(username)
        except AuthenticationFailed:
            username = self._signed_in(username, token)
        enrollment = self._enrollment(username)
        if enrollment.registered:
            raise AuthenticationFailed(
                "Sign in with your current method first to add or change a sign-in method."
            )
        return username, enrollment

    def _enrollment(self, username: str) -> Enrollment:
        try:
            return self.repository.get(Enrollment.id_for(username))
        except AggregateNotFoundError:
            return Enrollment(username=username)
