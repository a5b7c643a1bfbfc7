"""Public events of the verification service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from shared.contracts.base import EventBody


class MethodsRevoked(EventBody):
    ticket_id: str | None = None
    revoked: list[str]


class MethodRegistrationStarted(EventBody):
    method_id: str
    method_type: str


class ChallengeIssued(EventBody):
    challenge_id: str
    method_id: str
    method_type: str
    purpose: str


class ChallengeVerified(EventBody):
    challenge_id: str
    method_id: str
    method_type: str


class ChallengeFailed(EventBody):
    challenge_id: str
    method_id: str
    method_type: str
    reason: str
    failures: int


class MethodLocked(EventBody):
    method_id: str
    method_type: str


class MethodRegistered(EventBody):
    method_id: str
    method_type: str
    label: str


class DefaultMethodSet(EventBody):
    method_id: str
    method_type: str
    label: str
