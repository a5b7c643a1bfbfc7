"""Public events of the ticketing service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from shared.contracts.base import EventBody


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
