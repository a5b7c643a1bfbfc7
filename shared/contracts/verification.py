"""Public events of the verification service (schema version 1 unless a class says otherwise).

None of these declares a secret: no seed, code, code hash, push number, phone number (only its
masked form), activation code or key; the stored events' other attributes are dropped.
"""

from __future__ import annotations

from datetime import datetime

from shared.contracts.base import EventBody


class MethodsRevoked(EventBody):
    ticket_id: str | None = None
    revoked: list[str]


class MethodRegistrationStarted(EventBody):
    method_id: str
    method_type: str
    channel: str | None = None
    masked_phone: str | None = None


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


class DefaultMethodSet(EventBody):
    method_id: str
    method_type: str
    label: str
    masked_phone: str | None = None
