"""The verification application: revoke on reset, register and verify authenticator apps."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.verification import totp
from services.verification.commands import StartAppRegistration, Status, VerifyCode
from services.verification.domain import APP, CodeRejected, Enrollment
from shared.application import ServiceApplication
from shared.contracts import EventEnvelope
from shared.errors import InvalidRequest
from shared.secrets import Vault
from shared.settings import Settings
from shared.tokens import issue_token, verify_token


class VerificationApplication(ServiceApplication):
    service = "verification"
    system_events = frozenset({"MethodsRevoked", "MethodLocked"})

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.vault = Vault(settings, self.service)

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

    # --- commands ----------------------------------------------------------------------------
    def status(self, cmd: Status) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        return {
            "username": username,
            "must_enroll": not enrollment.registered,
            "default_method": enrollment.default_method,
            "methods": [
                {"method_id": m.method_id, "method_type": m.method_type, "label": m.label,
                 "default": m.method_id == enrollment.default_method}
                for m in enrollment.registered
            ],
        }

    def start_app_registration(self, cmd: StartAppRegistration) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        method_id = f"m-{secrets.token_hex(6)}"
        challenge_id = f"c-{secrets.token_hex(6)}"
        seed = totp.new_seed()
        ref = f"totp:{enrollment.id}:{method_id}"
        self.vault.put(ref, seed.encode())
        enrollment.start_registration(
            method_id=method_id, method_type=APP, secret_ref=ref, started_at=datetime.now(UTC)
        )
        enrollment.issue_challenge(challenge_id, method_id, APP, purpose="registration")
        self.save(enrollment)
        issuer = self.settings.portal_name
        return {
            "method_id": method_id,
            "challenge_id": challenge_id,
            "issuer": issuer,
            "account_name": username,
            "otpauth_uri": totp.provisioning_uri(seed, username, issuer),
            "secret_key": totp.readable_key(seed),
        }

    def verify_code(self, cmd: VerifyCode) -> dict[str, Any]:
        username = self._signed_in(cmd.username, cmd.token)
        enrollment = self._enrollment(username)
        method_id = cmd.method_id or enrollment.default_method
        if method_id is None:
            raise InvalidRequest("Set up a sign-in method first.")
        method = enrollment.method(method_id)
        enrollment.check_usable(method)
        challenge_id = method.challenges[-1] if method.challenges else ""
        if method.registered:
            challenge_id = f"c-{secrets.token_hex(6)}"
            enrollment.issue_challenge(challenge_id, method_id, method.method_type, "sign_in")
        seed = self.vault.get(method.secret_ref)
        step = totp.matching_step(seed.decode(), cmd.code) if seed else None
        verified = enrollment.verify(method_id, challenge_id, step)
        self.save(enrollment)
        if not verified:
            locked = enrollment.methods[method_id].locked
            raise CodeRejected(
                "Too many wrong codes: this method is now locked. Call the help desk."
                if locked
                else "That code is not right, or it was already used. Try the next code."
            )
        return {
            "verified": True,
            "method_id": method_id,
            "default_method": enrollment.default_method,
            "default_label": enrollment.methods[enrollment.default_method].label
            if enrollment.default_method
            else None,
            "mfa_token": issue_token(self.settings.token_key_bytes, username, "mfa"),
        }

    # --- helpers -----------------------------------------------------------------------------
    def _signed_in(self, username: str, token: str) -> str:
        return verify_token(self.settings.token_key_bytes, token, "password", username)

    def _enrollment(self, username: str) -> Enrollment:
        try:
            return self.repository.get(Enrollment.id_for(username))
        except AggregateNotFoundError:
            return Enrollment(username=username)
