"""Commands the verification service accepts over the bus (the web's and the devices')."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

import shared.commands
from shared.commands import USERNAME, Command
from shared.contracts.client import ClientContext
from shared.idempotency import IdempotencyKey

Id = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class Authenticated(shared.commands.Authenticated):
    """Every web-side verification command carries the token from the password step."""


CLIENT = Field(None, description="The web client (address through trusted proxies, user agent)")


class StartAppRegistration(Authenticated):
    client: ClientContext | None = CLIENT
    app: Literal["microsoft", "other"] = Field(
        "microsoft", description="'other': any TOTP app, labelled 'Authenticator app'")
    idempotency_key: IdempotencyKey = None


class VerifyCode(Authenticated):
    method_id: str | None = Field(None, max_length=64, description="Default method if omitted")
    code: str = Field(min_length=1, max_length=16)


class Status(Authenticated):
    pass


class StartPush(Authenticated):
    """ "Let's try it out" or a sign-in: send a number-matching request to the app."""

    method_id: str | None = Field(None, max_length=64, description="Default method if omitted")
    application: str | None = Field(None, max_length=120)
    location: str | None = Field(None, max_length=120, description="Where the request came from")


class ChallengeStatus(Authenticated):
    challenge_id: str = Id


class StartPhoneRegistration(Authenticated):
    number: str = Field(min_length=3, max_length=32)
    country: str = Field("US", min_length=2, max_length=2, description="ISO region, US first")
    channel: Literal["sms", "call"]
    client: ClientContext | None = CLIENT
    idempotency_key: IdempotencyKey = None


class StartChallenge(Authenticated):
    """A sign-in: challenge the default method, or the one chosen from the others offered."""

    method_id: str | None = Field(None, max_length=64)
    location: str | None = Field(None, max_length=120)
    channel: Literal["app"] | None = Field(
        None, description="'app': the app's code instead of a notification to it"
    )


class ResendCode(Authenticated):
    """ "Resend code" / "Call me again" for a phone method, also while it is being set up."""

    method_id: str = Id


class PhoneCountries(Command):
    """The countries and regions a phone number may be in (no sign-in needed: it is public)."""


class SetDefaultMethod(Authenticated):
    """Security info: make a registered method the default (needs a fresh MFA check)."""

    method_id: str = Id
    client: ClientContext | None = CLIENT


class RemoveMethod(Authenticated):
    """Security info: remove a registered method, not the last one nor the default (needs a
    fresh MFA check)."""

    method_id: str = Id
    client: ClientContext | None = CLIENT


CREDENTIAL = Field(min_length=2, max_length=16_000,
                   description="The browser's PublicKeyCredential as JSON (base64url fields)")


class StartPasskeyRegistration(Authenticated):
    client: ClientContext | None = CLIENT
    idempotency_key: IdempotencyKey = None


class PasskeyAnswer(Authenticated):
    """The browser's answer to a WebAuthn challenge: a new credential (``create``) to finish a
    registration, or an assertion (``get``) for a sign-in."""

    challenge_id: str = Id
    credential: str = CREDENTIAL


class SecurityInfo(Authenticated):
    """Security info: the methods with when each was added and last used, and whether the
    token is a fresh enough MFA check to change them."""


# --- the authenticator device API (signed with the device's Ed25519 key) ----------------------
class Signed(Command):
    username: str = USERNAME
    method_id: str = Id
    signed_at: int = Field(description="Unix seconds when the device signed")
    signature: str = Field(min_length=20, max_length=200)


class ActivateDevice(Signed):
    device_id: str = Id
    activation_code: str = Field(min_length=8, max_length=128)
    public_key: str = Field(min_length=40, max_length=64, description="base64 raw Ed25519 key")
    device_name: str = Field("authenticator", min_length=1, max_length=80)

    def signed_fields(self) -> dict[str, object]:
        return self.model_dump(exclude={"signature"})


class DevicePending(Signed):
    device_id: str = Id

    def signed_fields(self) -> dict[str, object]:
        return self.model_dump(exclude={"signature"})


class DeviceRespond(Signed):
    device_id: str = Id
    challenge_id: str = Id
    decision: Literal["approve", "deny"]
    number: str | None = Field(None, max_length=8)
    nonce: str = Field(min_length=16, max_length=64)

    def signed_fields(self) -> dict[str, object]:
        return self.model_dump(exclude={"signature"})
