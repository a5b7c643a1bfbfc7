"""Push with number matching: the web's side (a number to type) and the device API (signed).

A device activates with the one-time activation code from the QR's URI and its Ed25519 public
key; afterwards every request it makes is signed with that key, and signed recently.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.verification import commands as c
from services.verification import presenter, push
from services.verification.base import VerificationBase, new_id, step_facts
from services.verification.domain import (
    APP,
    IDENTITY_PROOF,
    PUSH,
    Challenge,
    CodeRejected,
    Enrollment,
    Method,
    PushRateLimited,
    UnknownDevice,
    code_hash,
)
from shared.errors import AuthenticationFailed, InvalidRequest, NotFound

SIGNATURE_SLACK_SECONDS = 300




class PushMethods(VerificationBase):
    def proof_outcome(self, challenge: Challenge, outcome: str) -> list[Any]:
        """Replaced by the help desk's method challenges (the outcome of a proof's push)."""
        return []

    # --- the web's side ----------------------------------------------------------------------
    def start_push(self, cmd: c.StartPush) -> dict[str, Any]:
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        setting_up = [m.method_id for m in enrollment.methods.values()
                      if m.method_type == APP and m.devices and not m.registered]
        method_id = cmd.method_id or (setting_up[-1] if setting_up else enrollment.default_method)
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        enrollment.check_usable(method)
        if method.method_type != APP or not method.devices:
            raise InvalidRequest("No authenticator with notifications is activated for that method.")
        return self._issue_push(username, enrollment, method, cmd.application, cmd.location)

    def _issue_push(
        self, username: str, enrollment: Enrollment, method: Method, application: str | None,
        location: str | None,
    ) -> dict[str, Any]:
        challenge_id = new_id("c")
        number = push.new_number(self.settings.push_number_digits)
        expires = self.clock.now() + timedelta(seconds=self.settings.push_ttl_seconds)
        self._push_challenge(
            enrollment, method, challenge_id, number, expires,
            purpose="sign_in" if method.registered else "registration",
            application=application or self.settings.portal_name,
            location=location or "unknown location",
        )
        self.save(enrollment)
        return {
            "challenge_id": challenge_id, "method_id": method.method_id, "kind": PUSH,
            **step_facts(PUSH, takes_code=False), "number": number,
            "expires_at": expires.isoformat(), "prompt": presenter.PUSH_PROMPT,
        }

    def _push_challenge(
        self, enrollment: Enrollment, method: Method, challenge_id: str, number: str,
        expires: datetime, purpose: str, application: str, location: str,
    ) -> None:
        """Issue a push whose number the device must be answered with (limits checked first)."""
        self._check_push_limits(enrollment.username, method)
        now = self.clock.now()
        context = {
            "application": application, "requested_at": now.isoformat(timespec="seconds"),
            "location": location, "account": enrollment.username,
        }
        enrollment.issue_challenge(
            challenge_id, method.method_id, APP, purpose=purpose, kind=PUSH, issued_at=now,
            expires_at=expires, code_hash=code_hash(self.code_key, challenge_id, number),
            context=context,
        )

    def _check_push_limits(self, username: str, method: Method) -> None:
        """Push bombing: a flood of requests until a tired person approves one. Refused before
        anything is recorded; the app's codes (and any other method) still work meanwhile."""
        limits = {f"user:{username}": self.settings.push_limit_per_user}
        for device in method.devices.values():  # a device is its key, whatever its id says
            limits[f"device:{push.fingerprint(device.public_key)}"] = self.settings.push_limit_per_device
        if not self.push_limits.allow_each(limits):
            raise PushRateLimited(presenter.push_limited_message(self.settings.push_limit_window_minutes))

    # --- the authenticator device API --------------------------------------------------------
    def activate_device(self, cmd: c.ActivateDevice) -> dict[str, Any]:
        self._check_signed_recently(cmd.signed_at)
        if not push.signature_ok(cmd.public_key, cmd.signature, "activate", cmd.signed_fields()):
            raise UnknownDevice("The activation request is not signed by the key it carries.")
        enrollment = self._enrollment(cmd.username)
        method = enrollment.method(cmd.method_id)
        if method.method_type != APP:
            raise InvalidRequest("Only an authenticator app method can activate a device.")
        ok = method.activation_matches(self.code_key, cmd.activation_code)
        if cmd.device_id in method.devices:
            raise InvalidRequest("That device is already activated.")
        enrollment.activate_device(
            cmd.method_id, ok, cmd.device_id, cmd.public_key, cmd.device_name,
            push.fingerprint(cmd.public_key), self.clock.now(),
        )
        self.save(enrollment)
        return {"device_id": cmd.device_id, "method_id": cmd.method_id,
                "issuer": self.settings.portal_name, "account_name": enrollment.username}

    def device_pending(self, cmd: c.DevicePending) -> list[dict[str, Any]]:
        enrollment = self._device_checked(cmd, "pending")
        now = self.clock.now()
        return [
            {"challenge_id": ch.challenge_id, "method_id": ch.method_id, **ch.context,
             "expires_at": ch.expires_at.isoformat() if ch.expires_at else None}
            for ch in enrollment.issued.values()
            if ch.method_id == cmd.method_id and ch.kind == PUSH and ch.alive(now)
        ]

    def device_respond(self, cmd: c.DeviceRespond) -> dict[str, Any]:
        enrollment = self._device_checked(cmd, "respond")
        now = self.clock.now()
        challenge = enrollment.issued.get(cmd.challenge_id)
        if challenge is None or challenge.method_id != cmd.method_id:
            raise NotFound("There is no such sign-in request.")
        if cmd.decision == "deny":
            enrollment.deny_push(cmd.challenge_id, cmd.device_id, cmd.nonce, now)
            self.save(enrollment, *self.proof_outcome(challenge, "denied"))
            return {"challenge_id": cmd.challenge_id, "state": "denied",
                    "message": presenter.PUSH_DENIED}
        number = (cmd.number or "").strip()
        if not number.isdigit():
            raise InvalidRequest("Type the number shown on the sign-in screen.")
        # A help desk's proof fails at the first wrong number: no guessing while on the phone.
        proof = challenge.purpose == IDENTITY_PROOF
        approved = enrollment.answer_push(
            cmd.challenge_id, cmd.device_id, challenge.matches(self.code_key, number), cmd.nonce,
            now, 1 if proof else self.settings.push_max_wrong, self.settings.method_lock_after,
        )
        self.save(enrollment, *self.proof_outcome(challenge, "approved" if approved else "wrong"))
        state = enrollment.issued[cmd.challenge_id].state
        if approved:
            return {"challenge_id": cmd.challenge_id, "state": state, "message": presenter.PUSH_APPROVED}
        raise CodeRejected(presenter.wrong_number_message(closed=state != "pending"))

    def _device_checked(self, cmd: c.DevicePending | c.DeviceRespond, purpose: str) -> Enrollment:
        self._check_signed_recently(cmd.signed_at)
        enrollment = self._enrollment(cmd.username)
        device = enrollment.device(cmd.method_id, cmd.device_id)
        if not push.signature_ok(device.public_key, cmd.signature, purpose, cmd.signed_fields()):
            raise UnknownDevice("The request is not signed by this device's key.")
        return enrollment

    def _check_signed_recently(self, signed_at: int) -> None:
        """A signed device request counts only near the time it was signed (no late replays)."""
        if abs(self.clock.time() - signed_at) > SIGNATURE_SLACK_SECONDS:
            raise AuthenticationFailed("The device's request is too old, or its clock is wrong.")
