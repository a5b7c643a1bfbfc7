"""Reset tickets and the per-account facts ticketing keeps (accounts known, their tickets)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.application import UserAggregate, same_user
from shared.errors import Conflict, NotAllowed

OPEN = "open"
VERIFIED = "identity_verified"
APPROVED = "approved"
REJECTED = "rejected"
CLOSED = "closed"

IDENTITY_CHECKS = ("call_back", "manager_confirmation", "id_check")


class TicketNotOpen(Conflict):
    """The ticket was already decided or closed."""


class SelfApprovalRefused(NotAllowed):
    """An agent may not approve a reset they asked for, or one for their own account."""


class Ticket(Aggregate):
    """One request to reset a user's MFA, from filing to closure."""

    @event("ResetRequested")
    def __init__(
        self,
        name: str,
        email: str,
        username: str,
        reason: str,
        requested_by: str,
        channel: str,
    ) -> None:
        self.name = name
        self.email = email
        self.username = username
        self.reason = reason
        self.requested_by = requested_by
        self.channel = channel
        self.state = OPEN
        self.identity_check: str | None = None
        self.decided_by: str | None = None
        self.decision_reason: str | None = None

    @property
    def subject(self) -> str:
        return self.username

    def check_undecided(self) -> None:
        if self.state not in (OPEN, VERIFIED):
            raise TicketNotOpen(f"This ticket is already {self.state.replace('_', ' ')}.")

    def check_not_own(self, agent: str) -> None:
        if same_user(agent, self.requested_by):
            raise SelfApprovalRefused("An agent cannot approve a reset they requested.")
        if same_user(agent, self.username):
            raise SelfApprovalRefused("An agent cannot approve a reset of their own account.")

    def verify_identity(self, agent: str, method: str, note: str) -> None:
        self.check_undecided()
        self._identity_verified(agent=agent, method=method, note=note)

    @event("IdentityVerified")
    def _identity_verified(self, agent: str, method: str, note: str) -> None:
        self.identity_check = method
        self.state = VERIFIED

    def approve(self, agent: str) -> None:
        self.check_undecided()
        self.check_not_own(agent)
        self._approved(agent=agent, username=self.username)

    @event("ResetApproved")
    def _approved(self, agent: str, username: str) -> None:
        self.state = APPROVED
        self.decided_by = agent

    def reject(self, agent: str, reason: str) -> None:
        self.check_undecided()
        self._rejected(agent=agent, reason=reason)

    @event("ResetRejected")
    def _rejected(self, agent: str, reason: str) -> None:
        self.state = REJECTED
        self.decided_by = agent
        self.decision_reason = reason

    def close(self, reason: str) -> None:
        if self.state == CLOSED:
            return
        self._closed(reason=reason)

    @event("TicketClosed")
    def _closed(self, reason: str) -> None:
        self.state = CLOSED


class AccountFile(UserAggregate):
    """What ticketing knows of one portal account: that it exists, its role, its tickets."""

    @event("AccountFileOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.known = False
        self.role: str | None = None
        self.tickets: list[UUID] = []

    @event("AccountNoted")
    def note_account(self, role: str) -> None:
        self.known = True
        self.role = role

    @event("TicketFiled")
    def file_ticket(self, ticket_id: UUID) -> None:
        self.tickets.append(ticket_id)
