"""Public events of the ticketing service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from uuid import UUID

from shared.contracts.base import EventBody


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


class TicketExpired(EventBody):
    ticket_id: str
    reason: str
