"""A user's state at one instant, folded from the public events about them up to it.

``rekey audit as-of USER TIME`` answers what an auditor asks about a moment: was the account
registered and locked, which temporary password was live (issued, not yet changed, not yet
expired), which sign-in methods were registered and which was the default, which agreement
version (and the hash of its text) the user had accepted, and which tickets were still open.
The fold reads only public contracts, so it runs the same on the audit service's projection and
on a history rebuilt from the stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.contracts import EventEnvelope


class TemporaryPassword(BaseModel):
    issued_at: datetime
    expires_at: datetime | None = None
    ticket_id: str | None = None
    delivery: str = "pending"  # pending, sent, failed
    live: bool = True
    ended: str | None = None  # why it is no longer live


class Method(BaseModel):
    method_id: str
    method_type: str
    label: str = ""
    masked_phone: str | None = None
    registered_at: datetime
    state: str = "registered"  # registered, revoked, locked


class Agreement(BaseModel):
    version: int
    content_hash: str
    at: datetime
    accepted: bool


class Ticket(BaseModel):
    ticket_id: str
    ticket_number: str
    state: str  # open, awaiting_second_approval, approved, rejected, closed, expired
    opened_at: datetime
    reason: str = ""


class UserState(BaseModel):
    """What was true about one user at ``at``; ``events`` is how many events it is made of."""

    username: str
    at: datetime
    events: int = 0
    registered: bool = False
    role: str | None = None
    display_name: str | None = None
    account: str = "not registered"  # not registered, active, locked
    locked_until: datetime | None = None
    temporary_password: TemporaryPassword | None = None
    methods: list[Method] = Field(default_factory=list)
    default_method: str | None = None
    agreement: Agreement | None = None
    open_tickets: list[Ticket] = Field(default_factory=list)
    last_event: str | None = None


class _Fold:
    """Applies events one by one; one small method per event name."""

    def __init__(self, username: str, at: datetime) -> None:
        self.state = UserState(username=username, at=at)
        self.methods: dict[str, Method] = {}
        self.tickets: dict[str, Ticket] = {}

    def apply(self, event: EventEnvelope) -> None:
        handler: Callable[[EventEnvelope, dict[str, Any]], None] | None = getattr(
            self, f"on_{event.name}", None)
        if handler is not None:
            handler(event, event.body)
        self.state.events += 1
        self.state.last_event = f"{event.occurred_at.isoformat()} {event.source}.{event.name}"

    def result(self) -> UserState:
        s = self.state
        tp = s.temporary_password
        if tp is not None and tp.live and tp.expires_at is not None and tp.expires_at <= s.at:
            tp.live, tp.ended = False, f"expired at {tp.expires_at.isoformat()}"
        if s.locked_until is not None and s.locked_until <= s.at:
            s.account, s.locked_until = "active", None
        s.methods = list(self.methods.values())
        s.open_tickets = [t for t in self.tickets.values()
                          if t.state in ("open", "awaiting_second_approval", "approved")]
        return s

    # --- credentials
    def on_AccountRegistered(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        s = self.state
        s.registered, s.role, s.display_name, s.account = True, b.get("role"), b.get(
            "display_name"), "active"

    def on_PasswordIssued(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.state.temporary_password = TemporaryPassword(
            issued_at=e.occurred_at, expires_at=b.get("expires_at"), ticket_id=b.get("ticket_id"))
        self.state.account, self.state.locked_until = "active", None  # a new password unlocks

    def on_TemporaryPasswordSent(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        if self.state.temporary_password is not None:
            self.state.temporary_password.delivery = "sent"

    def on_TemporaryPasswordDeliveryFailed(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        if self.state.temporary_password is not None:
            self.state.temporary_password.delivery = "failed"

    def on_PasswordChanged(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        tp = self.state.temporary_password
        if tp is not None and tp.live:
            tp.live, tp.ended = False, f"replaced by the user's own password at {e.occurred_at.isoformat()}"

    def on_AccountLocked(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.state.account, self.state.locked_until = "locked", b.get("until")

    def on_AccountUnlocked(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.state.account, self.state.locked_until = "active", None

    # --- verification
    def on_MethodRegistered(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.methods[b["method_id"]] = Method(
            method_id=b["method_id"], method_type=b["method_type"], label=b.get("label", ""),
            masked_phone=b.get("masked_phone"), registered_at=e.occurred_at)

    def on_MethodsRevoked(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        for method_id in b.get("revoked", []):
            if method_id in self.methods:
                self.methods[method_id].state = "revoked"
            if self.state.default_method == method_id:
                self.state.default_method = None

    def on_MethodLocked(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        if b["method_id"] in self.methods:
            self.methods[b["method_id"]].state = "locked"

    def on_DefaultMethodSet(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.state.default_method = b["method_id"]

    on_DefaultMethodChanged = on_DefaultMethodSet

    def on_MethodRemoved(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        if b["method_id"] in self.methods:
            self.methods[b["method_id"]].state = "removed"

    # --- consent
    def on_AgreementAccepted(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.state.agreement = Agreement(version=b["version"], content_hash=b["content_hash"],
                                         at=e.occurred_at, accepted=True)

    def on_AgreementDeclined(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.state.agreement = Agreement(version=b["version"], content_hash=b["content_hash"],
                                         at=e.occurred_at, accepted=False)

    # --- ticketing
    def on_ResetRequested(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self.tickets[b["ticket_id"]] = Ticket(
            ticket_id=b["ticket_id"], ticket_number=b["ticket_number"], state="open",
            opened_at=e.occurred_at, reason=b.get("reason", ""))

    def _ticket(self, b: dict[str, Any], state: str) -> None:
        ticket = self.tickets.get(str(b.get("ticket_id")))
        if ticket is not None:
            ticket.state = state

    def on_ApprovalRecorded(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self._ticket(b, "awaiting_second_approval")

    def on_ResetApproved(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self._ticket(b, "approved")

    def on_ResetRejected(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self._ticket(b, "rejected")

    def on_TicketClosed(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self._ticket(b, "closed")

    def on_TicketExpired(self, e: EventEnvelope, b: dict[str, Any]) -> None:
        self._ticket(b, "expired")


def state_at(username: str, at: datetime, events: Iterable[EventEnvelope]) -> UserState:
    """The user's state at ``at`` from the events about them (later events are ignored)."""
    fold = _Fold(username, at)
    for event in events:
        if event.subject.lower() == username.strip().lower() and event.occurred_at <= at:
            fold.apply(event)
    return fold.result()
