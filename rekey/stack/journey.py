"""The person's side of a reset after the mail, over the bus as the portal takes it: sign in
with the temporary password, choose a new one, set up an authenticator app from its QR code,
accept the agreement. One path for the integration tests and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pyotp

from services.verification import totp


class Caller(Protocol):
    async def call(self, service: str, command: str, **payload: Any) -> Any: ...


@dataclass(frozen=True)
class Completed:
    """What the person saw on the way (a test checks none of it reaches the history)."""

    registration: dict[str, Any]  # start_app_registration's answer: QR link, secret key
    seed: str  # the authenticator app's TOTP seed
    verified: dict[str, Any]  # verify_code's answer, with the MFA token


async def complete_reset(client: Caller, username: str, temporary: str, new_password: str) -> Completed:
    await client.call("credentials", "sign_in", username=username, password=temporary)
    token = (await client.call("credentials", "change_password", username=username,
                               current_password=temporary, new_password=new_password))["token"]
    registration = await client.call("verification", "start_app_registration", username=username,
                                     token=token)
    seed = totp.parse_uri(registration["otpauth_uri"]).secret
    verified = await client.call("verification", "verify_code", username=username, token=token,
                                 method_id=registration["method_id"], code=pyotp.TOTP(seed).now())
    mfa = verified["mfa_token"]
    agreement = await client.call("consent", "present", username=username, token=mfa)
    await client.call("consent", "accept", username=username, token=mfa,
                      version=agreement["version"], content_hash=agreement["content_hash"],
                      accepted=True, confirmed=True)
    return Completed(registration, seed, verified)
