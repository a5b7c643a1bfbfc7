"""Public events of the verification service (schema version 1 unless a class says otherwise).

None of these declares a secret: no seed, code, code hash, push number, phone number (only its
masked form), activation code or key; the stored events' other attributes are dropped.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from shared.contracts.base import EventBody
from shared.contracts.client import ClientFacts


class MethodsRevoked(EventBody):
    ticket_id: str | None = None
    revoked: list[str]


class MethodRegistrationStarted(EventBody):
    method_id: str
    method_type: str
    channel: str | None = None
    masked_phone: str | None = None
    client: ClientFacts | None = None  # the web client that started it


class MethodSetupsReplaced(EventBody):
    """A new setup of this kind replaced the unfinished ones: their keys no longer work."""

    method_ids: list[str]
    method_type: str


class DeviceActivated(EventBody):
    method_id: str
    method_type: str
    device_id: str
    device_name: str
    key_fingerprint: str


class ChallengeIssued(EventBody):
    challenge_id: str
    method_id: str
    method_type: str
    purpose: str
    kind: str = "totp"
    expires_at: datetime | None = None
    context: dict[str, str] | None = None


class CodeDispatched(EventBody):
    challenge_id: str
    method_id: str
    channel: str
    masked_phone: str


class CodeDeliveryFailed(EventBody):
    challenge_id: str
    method_id: str
    channel: str
    reason: str


class ChallengeVerified(EventBody):
    challenge_id: str
    method_id: str
    method_type: str
    device_id: str | None = None


class ChallengeFailed(EventBody):
    challenge_id: str
    method_id: str
    method_type: str
    reason: str
    failures: int
    dead: bool = False
    device_id: str | None = None


class ChallengeDenied(EventBody):
    """The device said "This wasn't me": the security team reviews these."""

    challenge_id: str
    method_id: str
    method_type: str
    device_id: str
    context: dict[str, str] | None = None


class MethodLocked(EventBody):
    method_id: str
    method_type: str


class MethodRegistered(EventBody):
    method_id: str
    method_type: str
    label: str
    masked_phone: str | None = None
    client: ClientFacts | None = None  # the web client that started the registration


class DefaultMethodSet(EventBody):
    method_id: str
    method_type: str
    label: str
    masked_phone: str | None = None



class MethodFacts(BaseModel):
    """What an event about one method the user changed says of it (not an event itself)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    method_id: str
    method_type: str
    label: str
    masked_phone: str | None = None
    client: ClientFacts | None = None  # the web client that asked for the change


class MethodRemoved(MethodFacts, EventBody):
    """The user removed a method in Security info (never the last one, nor the default)."""


class DefaultMethodChanged(MethodFacts, EventBody):
    """The user chose another default method in Security info."""

    previous_method_id: str | None = None


class CallBackAnswered(EventBody):
    """The help desk's call-back to the phone on file was answered with # (an identity proof)."""

    ticket_id: str
    proof_id: str
    to: str  # masked


class CallBackFailed(EventBody):
    ticket_id: str
    proof_id: str
    reason: str


class MethodChallengeAnswered(EventBody):
    """The help desk's push to a method the user still has was approved on the device with the
    number the agent read (an identity proof). Never the number."""

    ticket_id: str
    proof_id: str
    method: str  # the method's label


class MethodChallengeFailed(EventBody):
    """Denied on the device, answered with a wrong number, or no push could be sent."""

    ticket_id: str
    proof_id: str
    reason: str
