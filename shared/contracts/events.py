"""Versioned bodies of the public events, one model per past-tense event name.

A body model ignores any attribute it does not declare, so a stored event that carries a hash
or a ciphertext cannot put it on the bus by accident.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class EventBody(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_version: ClassVar[int] = 1


# --- ticketing -------------------------------------------------------------------------------
class ResetRequested(EventBody):
    ticket_id: str
    ticket_number: str
    name: str
    email: str  # masked
    username: str
    reason: str
    channel: str = "api"


class IdentityVerified(EventBody):
    ticket_id: str
    agent: str
    method: str
    note: str = ""


class ResetApproved(EventBody):
    ticket_id: str
    username: str
    agent: str


class ResetRejected(EventBody):
    ticket_id: str
    agent: str
    reason: str


class TicketClosed(EventBody):
    ticket_id: str
    reason: str


# --- credentials -----------------------------------------------------------------------------
class AccountRegistered(EventBody):
    username: str
    email: str  # masked
    display_name: str
    role: str


class PasswordIssued(EventBody):
    ticket_id: str | None = None
    expires_at: datetime


class TemporaryPasswordSent(EventBody):
    ticket_id: str | None = None
    to: str  # masked


class TemporaryPasswordDeliveryFailed(EventBody):
    ticket_id: str | None = None
    reason: str


class PasswordChanged(EventBody):
    reason: str


class SignInSucceeded(EventBody):
    temporary: bool


class SignInFailed(EventBody):
    reason: str
    failures: int


class AccountLocked(EventBody):
    failures: int


# --- verification ----------------------------------------------------------------------------
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


# --- consent ---------------------------------------------------------------------------------
class AgreementPublished(EventBody):
    version: int
    title: str
    content_hash: str
    clauses: int


class AgreementPresented(EventBody):
    version: int
    content_hash: str


class AgreementAccepted(EventBody):
    version: int
    content_hash: str


class AgreementDeclined(EventBody):
    version: int
    content_hash: str


CONTRACTS: dict[str, type[EventBody]] = {
    cls.__name__: cls
    for cls in (
        ResetRequested,
        IdentityVerified,
        ResetApproved,
        ResetRejected,
        TicketClosed,
        AccountRegistered,
        PasswordIssued,
        TemporaryPasswordSent,
        TemporaryPasswordDeliveryFailed,
        PasswordChanged,
        SignInSucceeded,
        SignInFailed,
        AccountLocked,
        MethodsRevoked,
        MethodRegistrationStarted,
        ChallengeIssued,
        ChallengeVerified,
        ChallengeFailed,
        MethodLocked,
        MethodRegistered,
        DefaultMethodSet,
        AgreementPublished,
        AgreementPresented,
        AgreementAccepted,
        AgreementDeclined,
    )
}


def contract_for(name: str) -> type[EventBody] | None:
    return CONTRACTS.get(name)
