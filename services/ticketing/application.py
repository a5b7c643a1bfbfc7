"""The ticketing application: get, mutate, save; nothing here knows about NATS."""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from services.ticketing.domain import (
    APPROVED,
    UNDECIDED,
    AccountFile,
    QuarantinedMail,
    Ticket,
)
from services.ticketing.limits import RequestLimits
from shared.addresses import address_digest, same_digest
from shared.application import ServiceApplication, normalise_username
from shared.contracts import EventEnvelope
from shared.contracts.ticketing import ticket_number
from shared.errors import NotAllowed, NotFound, RateLimited
from shared.masking import mask_email

AGENT_ROLE = "agent"


DELIVERY_STATES = {
    "PasswordIssued": "pending",
    "TemporaryPasswordSent": "sent",
    "TemporaryPasswordDeliveryFailed": "failed",
}


@dataclass(frozen=True)
class Acknowledgement:
    """An acknowledgement mail to send for a ticket opened (or joined) by email."""

    ticket_id: UUID
    intent_id: str
    to: str
    ticket_number: str


class TicketingApplication(ServiceApplication):
    service = "ticketing"
    system_events = frozenset({"TicketClosed", "TicketExpired"})

    def __init__(self, settings: Any, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.limits = RequestLimits(
            settings.requests_per_sender, settings.requests_per_account,
            settings.request_window_seconds,
        )
        self._fresh: list[Acknowledgement] = []
        self._fresh_lock = threading.Lock()

    # --- commands ----------------------------------------------------------------------------
    def request_reset(self, cmd: RequestReset, *, acknowledge: bool = False) -> dict[str, Any]:
        """File a request (API, web or mail alike). The answer never tells whether the account
        exists or whether the address is the one on file; a request for an account that has an
        open ticket joins that ticket."""
        sender = address_digest(self.settings, str(cmd.email))
        if not self.limits.allow(sender, normalise_username(cmd.username)):
            raise RateLimited(
                "Too many reset requests from this address or for this account. "
                "Try again later or call the help desk."
            )
        file = self._file(cmd.username) or AccountFile(username=cmd.username)
        verified = file.known and same_digest(file.email_digest, sender)
        ticket = self._open_ticket(file)
        joined = ticket is not None
        if ticket is not None:
            ticket.join(cmd.name, str(cmd.email), cmd.reason, cmd.channel, verified)
            touched: list[Any] = [ticket]
        else:
            ticket = Ticket(
                name=cmd.name,
                email=str(cmd.email),
                username=cmd.username,
                reason=cmd.reason,
                requested_by=cmd.requested_by or cmd.username,
                channel=cmd.channel,
                sender_verified=verified,
            )
            file.file_ticket(ticket.id)
            touched = [ticket, file]
        intent = None
        if acknowledge:
            intent = str(uuid.uuid4())
            ticket.intend_acknowledgement(intent, str(cmd.email))
        self.save(*touched)
        if intent is not None:
            self._remember(ticket, intent)
        return {
            "ticket_id": str(ticket.id),
            "ticket_number": ticket_number(ticket.id),
            "joined": joined,
        }

    def _open_ticket(self, file: AccountFile) -> Ticket | None:
        for ticket_id in reversed(file.tickets):
            ticket = self.repository.get(ticket_id)
            if ticket.state in UNDECIDED:
                return ticket
        return None

    def quarantine(self, reason: str, sender: str, size: int, digest: str, path: str) -> str:
        mail = QuarantinedMail(reason=reason, sender=sender, size=size, digest=digest, path=path)
        self.save(mail)
        return str(mail.id)

    def quarantined(self) -> list[dict[str, Any]]:
        found = []
        for mail_id in self.aggregate_ids(QuarantinedMail.MailQuarantined):  # type: ignore[attr-defined]
            mail = self.repository.get(mail_id)
            found.append({
                "id": str(mail.id), "at": mail.created_on.isoformat(), "reason": mail.reason,
                "sender": mask_email(mail.sender), "size": mail.size, "path": mail.path,
            })
        return found

    # --- acknowledgements: intent recorded, then sent ----------------------------------------
    def _remember(self, ticket: Ticket, intent: str) -> None:
        with self._fresh_lock:
            self._fresh.append(
                Acknowledgement(ticket.id, intent, ticket.pending_acks[intent], ticket_number(ticket.id))
            )

    def take_fresh_acknowledgements(self) -> list[Acknowledgement]:
        with self._fresh_lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def unsent_acknowledgements(self) -> list[Acknowledgement]:
        found = []
        for ticket_id in self.aggregate_ids(Ticket.ResetRequested):  # type: ignore[attr-defined]
            ticket = self.repository.get(ticket_id)
            for intent, to in ticket.pending_acks.items():
                found.append(Acknowledgement(ticket.id, intent, to, ticket_number(ticket.id)))
        return found

    def mark_acknowledged(self, ack: Acknowledgement, error: str | None) -> None:
        ticket = self.repository.get(ack.ticket_id)
        if ack.intent_id in ticket.pending_acks:
            ticket.mark_acknowledged(ack.intent_id, error)
            self.save(ticket)

    # --- expiry ------------------------------------------------------------------------------
    def expire_stale(self, now: datetime | None = None) -> list[str]:
        """Expire undecided tickets nobody touched for ``ticket_expiry_hours``."""
        now = now or datetime.now(UTC)
        after = timedelta(hours=self.settings.ticket_expiry_hours)
        expired = []
        for ticket_id in self.aggregate_ids(Ticket.ResetRequested):  # type: ignore[attr-defined]
            ticket = self.repository.get(ticket_id)
            if ticket.expire(now, after):
                self.save(ticket)
                expired.append(ticket_number(ticket.id))
        return expired

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
        on_file = same_digest(file.email_digest, address_digest(self.settings, ticket.email))
        ticket.approve(cmd.agent, four_eyes=self.settings.four_eyes, sender_on_file=on_file)
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
        file.note_account(role=envelope.body["role"], email_digest=envelope.body.get("email_digest"))
        return self.save_processed(tracking, file)

    def on_delivery_event(self, envelope: EventEnvelope) -> bool:
        """Credentials' temporary password mail: pending, sent or failed, shown on the ticket."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        ticket = None
        with contextlib.suppress(ValueError, TypeError, AggregateNotFoundError):
            ticket = self.repository.get(UUID(str(envelope.body.get("ticket_id"))))
        if ticket is None:
            return self.save_processed(tracking)
        ticket.note_delivery(DELIVERY_STATES[envelope.name], str(envelope.body.get("reason", "")))
        return self.save_processed(tracking, ticket)

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
            tickets = [t for t in tickets if t.state in UNDECIDED]
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
                if k
                not in ("originator_id", "originator_version", "originator_topic", "timestamp",
                        "email", "to")
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
            "channel": ticket.channel,
            "sender_verified": ticket.sender_verified,
            "approvals": list(ticket.approvals),
            "joined_requests": ticket.joined,
            "delivery": ticket.delivery,
        }

    # --- contracts ---------------------------------------------------------------------------
    def extra_fields(self, event: Any) -> dict[str, Any]:
        if type(event).__name__ == "MailQuarantined":
            return {}
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
