"""Passkeys and security keys (WebAuthn) as a user's sign-in method, with the machinery the
agents' passkeys use (``shared.passkeys``, the portal as relying party).

A passkey's credential id and public key are not secrets: they are kept in the enrolment's
events (``PasskeyAttested``), nothing in the vault. Each WebAuthn challenge is a
``ChallengeIssued`` of kind ``webauthn`` holding only a keyed hash of the challenge; it is
answered once (then ``verified`` or ``failed``), within ``PASSKEY_SECONDS``, by the key it was
issued for, whose signature counter must move forward.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from services.verification import commands as c
from services.verification.base import VerificationBase, new_id, step_facts
from services.verification.domain import (
    PASSKEY,
    PASSKEY_NOT_ACCEPTED,
    WEBAUTHN,
    Enrollment,
    Method,
    PasskeyNotAccepted,
    code_hash,
)
from shared import passkeys
from shared.contracts.client import client_facts

PASSKEY_SECONDS = 300  # how long the browser has to answer a WebAuthn challenge
PASSKEY_PROMPT = "Use your passkey or security key to sign in."


class PasskeyMethods(VerificationBase):
    def _rp(self) -> passkeys.RelyingParty:
        return passkeys.RelyingParty.of(self.settings)

    def _passkey_challenge(self, enrollment: Enrollment, method_id: str, purpose: str,
                           challenge: str) -> str:
        challenge_id = new_id("c")
        now = self.clock.now()
        enrollment.issue_challenge(
            challenge_id, method_id, PASSKEY, purpose, kind=WEBAUTHN, issued_at=now,
            expires_at=now + timedelta(seconds=PASSKEY_SECONDS),
            code_hash=code_hash(self.code_key, challenge_id, challenge),
        )
        return challenge_id

    def start_passkey_registration(self, cmd: c.StartPasskeyRegistration) -> dict[str, Any]:
        """The options for ``navigator.credentials.create`` (resident key preferred, user
        verification required; the account's other passkeys excluded)."""
        username, enrollment = self._may_change_methods(cmd.username, cmd.token)
        existing = [m.credential_id for m in enrollment.registered if m.credential_id]
        options, challenge = passkeys.registration_options(
            self._rp(), username, username, enrollment.id.bytes, existing)
        answered = self.idempotency.replay("start_passkey_registration", cmd)
        if answered is not None:
            # A retry: the same method, with a fresh challenge (a challenge is never kept to
            # be shown again); nothing else is started.
            method_id = self._pending_setup(enrollment, answered["method_id"]).method_id
            challenge_id = self._passkey_challenge(enrollment, method_id, "registration", challenge)
            self.save(enrollment)
        else:
            method_id = new_id("m")
            enrollment.start_registration(method_id=method_id, method_type=PASSKEY, secret_ref="",
                                          started_at=self.clock.now(),
                                          client=client_facts(cmd.client))
            challenge_id = self._passkey_challenge(enrollment, method_id, "registration", challenge)
            self.save(enrollment, *self.idempotency.record(
                "start_passkey_registration", cmd, {"method_id": method_id}))
        return {"method_id": method_id, "challenge_id": challenge_id, "options": options,
                **step_facts(PASSKEY, takes_code=False)}

    def finish_passkey_registration(self, cmd: c.PasskeyAnswer) -> dict[str, Any]:
        """The browser's new credential, verified (origin, relying party, user verification,
        the very challenge issued): the method is registered."""
        username, enrollment = self._may_change_methods(cmd.username, cmd.token)
        credential = passkeys.parsed(cmd.credential, PASSKEY_NOT_ACCEPTED)
        signed = passkeys.challenge_of(credential, PASSKEY_NOT_ACCEPTED)
        challenge, method = enrollment.open_passkey_challenge(cmd.challenge_id, self.code_key,
                                                              signed, self.clock.now())
        new = passkeys.verified_registration(self._rp(), credential, signed)
        enrollment.attest_passkey(method.method_id, challenge.challenge_id, new.credential_id,
                                  new.public_key, new.sign_count, self.clock.now())
        self.save(enrollment)
        return self._verified(username, enrollment, method.method_id)

    def _passkey_step(self, enrollment: Enrollment, method: Method) -> dict[str, Any]:
        """A sign-in by a passkey: the options for ``navigator.credentials.get``."""
        options, challenge = passkeys.authentication_options(self._rp(), [method.credential_id or ""])
        challenge_id = self._passkey_challenge(enrollment, method.method_id, "sign_in", challenge)
        self.save(enrollment)
        return {"method_id": method.method_id, "challenge_id": challenge_id, "kind": WEBAUTHN,
                "options": options, "prompt": PASSKEY_PROMPT, **step_facts(PASSKEY, takes_code=False)}

    def verify_passkey(self, cmd: c.PasskeyAnswer) -> dict[str, Any]:
        """The browser's assertion for a sign-in challenge: verified once, else refused."""
        username, enrollment = self._enrolled(cmd.username, cmd.token)
        credential = passkeys.parsed(cmd.credential, PASSKEY_NOT_ACCEPTED)
        signed = passkeys.challenge_of(credential, PASSKEY_NOT_ACCEPTED)
        challenge, method = enrollment.open_passkey_challenge(cmd.challenge_id, self.code_key,
                                                              signed, self.clock.now())
        if not method.registered or credential.get("id") != method.credential_id:
            raise PasskeyNotAccepted(PASSKEY_NOT_ACCEPTED)
        try:
            count = passkeys.verified_sign_count(self._rp(), credential, signed,
                                                 method.public_key or "", method.sign_count,
                                                 PASSKEY_NOT_ACCEPTED)
        except passkeys.PasskeyRefused:
            enrollment.passkey_refused(method, challenge.challenge_id, self.settings.method_lock_after)
            self.save(enrollment)
            raise
        enrollment.use_passkey(method, challenge.challenge_id, count, self.clock.now())
        self.save(enrollment)
        return self._verified(username, enrollment, method.method_id)
