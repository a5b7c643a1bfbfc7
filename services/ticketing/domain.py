"""Reset tickets and the per-account facts ticketing keeps (accounts known, their tickets)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.application import UserAggregate, same_user
from shared.errors import Conflict, NotAllowed

OPEN = "open"
VERIFIED = "identity_verified"
AWAITING_SECOND = "awaiting_second_approval"
APPROVED = "approved"
REJECTED = "rejected"
CLOSED = "closed"
EXPIRED = "expired"
UNDECIDED = (OPEN, VERIFIED, AWAITING_SECOND)

IDENTITY_CHECKS = ("call_back", "manager_confirmation", "id_check")


class TicketNotOpen(Conflict):
    """The ticket was already decided or closed."""


class SelfApprovalRefused(NotAllowed):
    """An agent may not approve a reset they asked for, or one for their own account."""


class SecondApprovalRequired(NotAllowed):
    """Four eyes: the second approval must come from another agent."""


class IdentityCheckRequired(NotAllowed):
    """A request from an address not on file needs the identity check before approval."""


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
        sender_verified: bool = True,
    ) -> None:
        self.name = name
        self.email = email
        self.username = username
        self.reason = reason
        self.requested_by = requested_by
        self.channel = channel
        self.sender_verified = sender_verified
        self.state = OPEN
        self.identity_check: str | None = None
        self.decided_by: str | None = None
        self.decision_reason: str | None = None
        self.approvals: list[str] = []
        self.joined = 0
        self.delivery: str | None = None
        self.pending_acks: dict[str, str] = {}

    @property
    def subject(self) -> str:
        return self.username

    def check_undecided(self) -> None:
        if self.state not in UNDECIDED:
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
        if self.state == OPEN:
            self.state = VERIFIED

    def approve(
        self, agent: str, *, four_eyes: bool = False, sender_on_file: bool = False
    ) -> bool:
        """Approve; returns whether the reset is now approved (False: first of four eyes).

        ``sender_on_file``: the requester's address is now known to be the one on file (the
        account may have become known to ticketing after the request was filed).
        """
        self.check_undecided()
        self.check_not_own(agent)
        if not (self.sender_verified or sender_on_file) and self.identity_check is None:
            raise IdentityCheckRequired(
                "This request came from an address that is not the one on file: "
                "record how you checked the person's identity first."
            )
        if four_eyes:
            if any(same_user(agent, a) for a in self.approvals):
                raise SecondApprovalRequired(
                    "You already approved this ticket: a second agent must approve it too."
                )
            if not self.approvals:
                self._approval_recorded(agent=agent)
                return False
        self._approved(agent=agent, username=self.username)
        return True

    @event("ApprovalRecorded")
    def _approval_recorded(self, agent: str) -> None:
        self.approvals.append(agent)
        self.state = AWAITING_SECOND

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

    def join(self, name: str, email: str, reason: str, channel: str, sender_verified: bool) -> None:
        """A further request for the same account while this one is open: kept, not duplicated."""
        self.check_undecided()
        self._joined(
            name=name, email=email, reason=reason, channel=channel, sender_verified=sender_verified
        )

    @event("RequestJoined")
    def _joined(
        self, name: str, email: str, reason: str, channel: str, sender_verified: bool
    ) -> None:
        self.joined += 1

    def is_stale(self, now: datetime, after: timedelta) -> bool:
        return self.state in UNDECIDED and self.modified_on + after <= now

    def expire(self, now: datetime, after: timedelta) -> bool:
        if not self.is_stale(now, after):
            return False
        self._expired(reason=f"nobody handled it within {after.total_seconds() / 3600:g} hours")
        return True

    @event("TicketExpired")
    def _expired(self, reason: str) -> None:
        self.state = EXPIRED

    @event("DeliveryNoted")
    def note_delivery(self, status: str, detail: str = "") -> None:
        """The temporary password's mail, as credentials reports it: pending, sent or failed."""
        self.delivery = status

    @event("AcknowledgementIntended")
    def intend_acknowledgement(self, intent_id: str, to: str) -> None:
        self.pending_acks[intent_id] = to

    @event("AcknowledgementSent")
    def mark_acknowledged(self, intent_id: str, error: str | None = None) -> None:
        self.pending_acks.pop(intent_id, None)


class AccountFile(UserAggregate):
    """What ticketing knows of one portal account: that it exists, its role, its tickets."""

    @event("AccountFileOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.known = False
        self.role: str | None = None
        self.email_digest: str | None = None
        self.tickets: list[UUID] = []

    @event("AccountNoted")
    def note_account(self, role: str, email_digest: str | None = None) -> None:
        self.known = True
        self.role = role
        self.email_digest = email_digest

    @event("TicketFiled")
    def file_ticket(self, ticket_id: UUID) -> None:
        self.tickets.append(ticket_id)


class QuarantinedMail(Aggregate):
    """An intake mail that could not become a ticket, kept with the reason (never lost)."""

    @event("MailQuarantined")
    def __init__(self, reason: str, sender: str, size: int, digest: str, path: str) -> None:
        self.reason = reason
        self.sender = sender
        self.size = size
        self.digest = digest
        self.path = path

    @property
    def subject(self) -> str:
        return ""
