"""The authenticator app: registration (the QR code, the activation for push) and TOTP codes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from services.verification import commands as c
from services.verification import presenter, totp
from services.verification.base import VerificationBase, new_id, step_facts
from services.verification.domain import (
    APP,
    APP_CHANNEL,
    OTHER_APP_LABEL,
    Enrollment,
    Method,
    activation_hash,
)
from shared.contracts.client import client_facts
from shared.secrets import keyed_hash


class AppMethods(VerificationBase):
    def start_app_registration(self, cmd: c.StartAppRegistration) -> dict[str, Any]:
        username, enrollment = self._may_change_methods(cmd.username, cmd.token)
        answered = self.idempotency.replay("start_app_registration", cmd)
        if answered is not None:  # a retry: the same method and QR code, nothing new
            method = self._pending_setup(enrollment, answered["method_id"])
            seed = (self.vault.get(method.secret_ref) or b"").decode()
            return {**self._app_setup(username, method.method_id, answered["challenge_id"], seed),
                    "replaces_earlier": bool(answered.get("replaced"))}
        replaced = enrollment.replace_setups(APP)
        method_id = new_id("m")
        challenge_id = new_id("c")
        seed = totp.new_seed()
        ref = f"totp:{enrollment.id}:{method_id}"
        self.vault.put(ref, seed.encode())
        now = self.clock.now()
        enrollment.start_registration(
            method_id=method_id, method_type=APP, secret_ref=ref, started_at=now,
            activation_hash=activation_hash(self.code_key, self._activation(method_id, seed)),
            client=client_facts(cmd.client), label=OTHER_APP_LABEL if cmd.app == "other" else None,
        )
        enrollment.issue_challenge(challenge_id, method_id, APP, purpose="registration", issued_at=now)
        self.save(enrollment, *self.idempotency.record(
            "start_app_registration", cmd,
            {"method_id": method_id, "challenge_id": challenge_id, "replaced": len(replaced)}))
        for earlier in replaced:  # their seeds: nothing can check a code against them now
            self.vault.delete(earlier.secret_ref)
        return {**self._app_setup(username, method_id, challenge_id, seed),
                "replaces_earlier": bool(replaced)}

    def _activation(self, method_id: str, seed: str) -> str:
        """The code our app activates push with: derived from the method's seed with the code
        key, so a retried setup shows the same QR code without the code being kept anywhere
        (only its hash is stored; the QR code carries it beside the seed)."""
        return keyed_hash(self.code_key, f"activation-code:{method_id}:{seed}")[:32]

    def _app_setup(self, username: str, method_id: str, challenge_id: str,
                   seed: str) -> dict[str, Any]:
        """What the person scans or types: the QR code, the readable key, the app's settings."""
        issuer = self.settings.portal_name
        uri = totp.provisioning_uri(seed, username, issuer)
        # Extra parameters: other apps ignore them; ours activates push with them.
        uri += "&" + urlencode({totp.METHOD_PARAMETER: method_id,
                                totp.ACTIVATION_PARAMETER: self._activation(method_id, seed)})
        return {
            "method_id": method_id,
            "challenge_id": challenge_id,
            "issuer": issuer,
            "account_name": username,
            "otpauth_uri": uri,
            "secret_key": totp.readable_key(seed),
            "qr_svg": presenter.qr_svg(uri),
            "digits": totp.DIGITS,
            "period": totp.PERIOD,
            **step_facts(APP_CHANNEL, takes_code=True),
        }

    def _check_app_code(self, enrollment: Enrollment, method: Method, code: str) -> bool:
        """A TOTP code for an app method: a sign-in gets its own challenge to record the outcome."""
        challenge_id = method.challenges[-1] if method.challenges else new_id("c")
        if method.registered:
            challenge_id = new_id("c")
            enrollment.issue_challenge(
                challenge_id, method.method_id, method.method_type, "sign_in",
                issued_at=self.clock.now(),
            )
        seed = self.vault.get(method.secret_ref)
        step = totp.matching_step(seed.decode(), code, now=self.clock.time()) if seed else None
        return enrollment.verify(method.method_id, challenge_id, step, self.settings.method_lock_after,
                                 now=self.clock.now())

    def _app_code_step(self, method: Method) -> dict[str, Any]:
        """A sign-in by the app's code (an app without notifications, or one asked for its code):
        nothing is sent, the app shows the code."""
        return {"method_id": method.method_id, "kind": "totp", "prompt": presenter.APP_CODE_PROMPT,
                **step_facts(APP_CHANNEL, takes_code=True)}
