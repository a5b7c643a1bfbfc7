"""The ticketing application: get, mutate, save; nothing here knows about NATS."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.ticketing.commands import (
    ApproveReset,
    RejectReset,
    RequestReset,
    VerifyIdentity,
)
from services.ticketing.domain import APPROVED, CLOSED, REJECTED, AccountFile, Ticket
from shared.application import ServiceApplication
from shared.contracts import EventEnvelope
from shared.errors import NotAllowed, NotFound
from shared.masking import mask_email

AGENT_ROLE = "agent"


class TicketingApplication(ServiceApplication):
    service = "ticketing"
    system_events = frozenset({"TicketClosed"})

    # --- commands ----------------------------------------------------------------------------
    def request_reset(self, cmd: RequestReset) -> dict[str, str]:
        file = self._file(cmd.username) or AccountFile(username=cmd.username)
        ticket = Ticket(
            name=cmd.name,
            email=str(cmd.email),
            username=cmd.username,
            reason=cmd.reason,
            requested_by=cmd.requested_by or cmd.username,
            channel=cmd.channel,
        )
        file.file_ticket(ticket.id)
        self.save(ticket, file)
        return {"ticket_id": str(ticket.id), "ticket_number": ticket_number(ticket.id)}

    def verify_identity(self, cmd: VerifyIdentity) -> dict[str, Any]:
        ticket = self.ticket(cmd.ticket)
        self._check_agent(cmd.agent)
        ticket.verify_identity(cmd.agent, cmd.method, cmd.note)
        self.save(ticket)
        return self.describe(ticket)

    def approve(self, cmd: ApproveReset) -> dict[str, Any]:
        ticket = self.ticket(cmd.ticket)
        self._check_agent(cmd.agent)
        ticket.check_undecided()
        ticket.check_not_own(cmd.agent)
        file = self._file(ticket.username)
        if file is None or not file.known:
            raise NotFound(
                f"There is no portal account named {ticket.username!r}: "
                "check the username with the requester, or reject the ticket."
            )
        ticket.approve(cmd.agent)
        self.save(ticket)
        return self.describe(ticket)

    def reject(self, cmd: RejectReset) -> dict[str, Any]:
        ticket = self.ticket(cmd.ticket)
        self._check_agent(cmd.agent)
        ticket.reject(cmd.agent, cmd.reason)
        self.save(ticket)
        return self.describe(ticket)

    # --- policies on upstream events --------------------------------------------------------
    def on_account_registered(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        file = self._file(envelope.subject) or AccountFile(username=envelope.subject)
        file.note_account(role=envelope.body["role"])
        return self.save_processed(tracking, file)

    def on_agreement_accepted(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        file = self._file(envelope.subject)
        closed = []
        for ticket_id in file.tickets if file else []:
            ticket = self.repository.get(ticket_id)
            if ticket.state == APPROVED:
                ticket.close("agreement accepted: the reset is complete")
                closed.append(ticket)
        return self.save_processed(tracking, *closed)

    # --- queries -----------------------------------------------------------------------------
    def ticket(self, ref: str) -> Ticket:
        ref = ref.strip()
        try:
            return self.repository.get(UUID(ref))
        except (ValueError, AggregateNotFoundError):
            pass
        wanted = ref.upper()
        for ticket_id in self.aggregate_ids(Ticket.ResetRequested):  # type: ignore[attr-defined]
            if ticket_number(ticket_id) == wanted:
                return self.repository.get(ticket_id)
        raise NotFound(f"There is no ticket {ref!r}.")

    def list_tickets(self, state: str | None = None) -> list[dict[str, Any]]:
        tickets = [self.repository.get(i) for i in self.aggregate_ids(Ticket.ResetRequested)]
        if state == "open":
            tickets = [t for t in tickets if t.state not in (APPROVED, REJECTED, CLOSED)]
        elif state:
            tickets = [t for t in tickets if t.state == state]
        return [self.describe(t) for t in tickets]

    def show(self, ref: str) -> dict[str, Any]:
        ticket = self.ticket(ref)
        timeline = []
        for stored in self.events.get(ticket.id):
            facts = {
                k: v
                for k, v in stored.__dict__.items()
                if k not in ("originator_id", "originator_version", "timestamp", "email")
            }
            timeline.append(
                {"at": stored.timestamp.isoformat(), "event": type(stored).__name__, **facts}
            )
        return {**self.describe(ticket), "timeline": timeline}

    def describe(self, ticket: Ticket) -> dict[str, Any]:
        return {
            "ticket_id": str(ticket.id),
            "ticket_number": ticket_number(ticket.id),
            "username": ticket.username,
            "name": ticket.name,
            "email": mask_email(ticket.email),
            "reason": ticket.reason,
            "state": ticket.state,
            "requested_by": ticket.requested_by,
            "identity_check": ticket.identity_check,
            "decided_by": ticket.decided_by,
            "created_at": ticket.created_on.isoformat(),
        }

    # --- contracts ---------------------------------------------------------------------------
    def extra_fields(self, event: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {"ticket_id": str(event.originator_id)}
        if type(event).__name__ == "ResetRequested":
            fields["ticket_number"] = ticket_number(event.originator_id)
            fields["email"] = mask_email(event.email)
            fields["actor"] = event.requested_by
        return fields

    # --- helpers -----------------------------------------------------------------------------
    def _file(self, username: str) -> AccountFile | None:
        try:
            return self.repository.get(AccountFile.id_for(username))
        except AggregateNotFoundError:
            return None

    def _check_agent(self, agent: str) -> None:
        file = self._file(agent)
        if file is None or file.role != AGENT_ROLE:
            raise NotAllowed(f"{agent!r} is not a help-desk agent.")



def ticket_number(ticket_id: UUID) -> str:
    """The number people quote: short, stable, derived from the ticket's id."""
    return f"RK-{ticket_id.hex[:8].upper()}"
