"""Public events of the ticketing service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from shared.contracts.base import EventBody
from shared.contracts.client import ClientFacts


def ticket_number(ticket_id: UUID | str) -> str:
    """The number people quote for a ticket: short, stable, derived from the ticket's id."""
    return f"RK-{UUID(str(ticket_id)).hex[:8].upper()}"


class ResetRequested(EventBody):
    ticket_id: str
    ticket_number: str
    name: str
    email: str  # masked
    username: str
    reason: str
    channel: str = "api"
    sender_verified: bool = True  # the requester's address is the one on file
    client: ClientFacts | None = None  # the web client; None by mail, API or CLI (see channel)


class IdentityVerified(EventBody):
    ticket_id: str
    agent: str
    method: str
    note: str = ""


class ResetApproved(EventBody):
    ticket_id: str
    username: str
    agent: str


class ResetScheduled(EventBody):
    """Approved, to take effect at ``effective_at`` (the end of the cancel window) unless the
    person cancels from the link mailed to the address on file; ``ResetApproved`` follows."""

    ticket_id: str
    username: str
    agent: str
    effective_at: datetime


class ResetCancelled(EventBody):
    """The person cancelled a scheduled reset from the mailed link: nothing was reset, and the
    ticket is frozen until an agent reviews it."""

    ticket_id: str
    channel: str
    client: ClientFacts | None = None  # the web client (address, network, user agent)


class ReviewClosed(EventBody):
    """An agent closed the review of a cancelled reset."""

    ticket_id: str
    agent: str
    note: str


class ResetRejected(EventBody):
    ticket_id: str
    agent: str
    reason: str


class TicketClosed(EventBody):
    ticket_id: str
    reason: str


class ApprovalRecorded(EventBody):
    """Four eyes: the first agent approved; the reset waits for a second agent."""

    ticket_id: str
    agent: str


class RequestJoined(EventBody):
    """Another request for the same account while a ticket is open, joined to it."""

    ticket_id: str
    channel: str
    reason: str
    sender_verified: bool
    client: ClientFacts | None = None


class ResetFlagged(EventBody):
    """Post-reset detection: a rule flagged this ticket for the security team (a fact, not a
    decision); ``evidence`` holds what the rule compared (addresses, networks, counts)."""

    ticket_id: str
    rule: str
    summary: str
    evidence: dict[str, str] = {}


class TicketExpired(EventBody):
    ticket_id: str
    reason: str


class ProofStarted(EventBody):
    """The system started an identity proof: which kind, by whom, to where (masked), until when.
    Never the code. A call-back carries the phone on file sealed for verification, which calls
    it (shared/sealed.py), never a number the caller gave; a method challenge carries the
    number the agent reads to the person, sealed for this proof, which verification pushes."""

    ticket_id: str
    proof_id: str
    kind: str
    agent: str
    destination: str  # masked
    expires_at: datetime
    call_to_sealed: str | None = None
    number_sealed: str | None = None


class ProofSucceeded(EventBody):
    ticket_id: str
    proof_id: str
    kind: str
    actor: str
    evidence: str


class ProofFailed(EventBody):
    ticket_id: str
    proof_id: str
    kind: str
    reason: str


class ProofCodeRefused(EventBody):
    """A wrong code was typed for a mailed-code proof (the proof fails after a few)."""

    ticket_id: str
    proof_id: str
    wrong: int
