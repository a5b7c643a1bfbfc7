"""The ticketing application: get, mutate, save; nothing here knows about NATS."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.ticketing import detection
from services.ticketing.commands import (
    ApproveReset,
    CancelLink,
    CancelReset,
    CloseReview,
    RejectReset,
    RequestReset,
)
from services.ticketing.detection import RULE_LABELS, Flag, RequestsFrom, Thresholds
from services.ticketing.domain import (
    APPROVE,
    APPROVED,
    PENDING,
    SCHEDULED,
    UNDECIDED,
    AccountFile,
    QuarantinedMail,
    Ticket,
    TicketNumber,
)
from services.ticketing.proofs import ADDRESS_MATCH_LABEL, ADDRESS_OTHER_LABEL
from services.ticketing.proving import ProofMethods
from shared import context
from shared.addresses import address_digest, same_digest
from shared.application import ServiceApplication, batchable, normalise_username
from shared.clock import Clock
from shared.contracts import EventEnvelope
from shared.contracts.client import ClientContext, client_facts
from shared.contracts.credentials import (
    AccountRegistered,
    PasswordIssued,
    TemporaryPasswordDeliveryFailed,
    TemporaryPasswordSent,
)
from shared.contracts.ticketing import ticket_number
from shared.contracts.verification import MethodRegistered
from shared.errors import AuthenticationFailed, InvalidRequest, NotAllowed, NotFound, RateLimited
from shared.indexes import AggregateLog, save_backfill, unlogged
from shared.masking import mask_email
from shared.rate_limits import SlidingWindow
from shared.sealed import open_fact
from shared.sweeps import Sweeps
from shared.tokens import unverified_binding, verify_token

AGENT_ROLE = "agent"
# What ticketing keeps of AccountRegistered's facts on file (masked, digested or sealed).
TYPED_ADDRESS = "typed_address_is_on_file_proves_nothing"
ON_FILE = {
    "email_sealed", "phone", "phone_sealed", "manager_email", "manager_email_digest",
    "manager_email_sealed",
}
BAD_CANCEL_LINK = ("This cancel link is not valid or has expired. If you did not ask for a reset "
                   "of your sign-in methods, call the help desk now.")


Delivered = PasswordIssued | TemporaryPasswordSent | TemporaryPasswordDeliveryFailed
DELIVERY_STATES: dict[str, tuple[type[Delivered], str]] = {
    "PasswordIssued": (PasswordIssued, "pending"),
    "TemporaryPasswordSent": (TemporaryPasswordSent, "sent"),
    "TemporaryPasswordDeliveryFailed": (TemporaryPasswordDeliveryFailed, "failed"),
}


@dataclass(frozen=True)
class Acknowledgement:
    """An acknowledgement mail to send for a ticket opened (or joined) by email."""

    ticket_id: UUID
    intent_id: str
    to: str
    ticket_number: str


@dataclass(frozen=True)
class RejectionNotice:
    """A mail to the address on file: the reset asked for on this ticket was not approved."""

    ticket_id: UUID
    intent_id: str
    to: str
    ticket_number: str


@dataclass(frozen=True)
class Alert:
    """A mail to the security address about a flagged ticket (``REKEY_SECURITY_ADDRESS``)."""

    ticket_id: UUID
    ticket_number: str
    username: str
    rule: str
    summary: str

    @property
    def intent_id(self) -> str:  # the flag is the intent: one per rule and ticket
        return f"{self.ticket_id}:{self.rule}"

    @classmethod
    def of(cls, ticket: Ticket, rule: str) -> Alert:
        summary = next((f["summary"] for f in ticket.flags if f["rule"] == rule), "")
        return cls(ticket.id, ticket_number(ticket.id), ticket.username, rule, summary)


class TicketingApplication(ProofMethods, ServiceApplication):
    service = "ticketing"
    system_events = frozenset({"TicketClosed", "TicketExpired", "ResetFlagged"})
    # ResetApproved at the end of a cancel window names the approving agent (its ``agent``).

    def __init__(
        self, settings: Any, env: dict[str, str] | None = None, *, clock: Clock | None = None
    ) -> None:
        super().__init__(settings, env, clock=clock)
        self.limits = SlidingWindow(
            settings.requests_per_sender, settings.request_window_seconds, clock=self.clock
        )
        # Called (from a worker thread) once an acknowledgement's intent is saved; the
        # wiring sends it. Unwired, the intent waits for the next start-up sweep.
        self.send_acknowledgement: Callable[[Acknowledgement], None] = lambda ack: None
        self.send_alert: Callable[[Alert], None] = lambda alert: None
        self.send_rejection_notice: Callable[[RejectionNotice], None] = lambda notice: None
        self.country = detection.country_lookup(settings.geoip_db)
        self.all_tickets = AggregateLog(self, "tickets")
        self.sweeps = Sweeps(self, Ticket)
        # Every ticket up to this log position is decided; deciding is final, so the expiry
        # sweep and the open list start after it (in memory: a restart reads the log once).
        self._decided_through = 0
        self._decided_lock = threading.Lock()
        self.all_quarantined = AggregateLog(self, "quarantined-mail")

    # --- commands ----------------------------------------------------------------------------
    def request_reset(
        self, cmd: RequestReset, *, acknowledge: bool = False, by_mail_from: str | None = None
    ) -> dict[str, Any]:
        """File a request (API, web or mail alike). The answer never tells whether the account
        exists or whether the address is the one on file; a request for an account that has an
        open ticket joins that ticket. ``acknowledge``: mail the ticket number to the sender if
        it is the address on file (by digest), never to another address (no backscatter).
        ``by_mail_from``: the sender domain of an intake mail, which also counts against the
        intake's limits (all or nothing with the others)."""
        self._check_arrived_as_said(cmd, by_mail_from)
        answered = self.idempotency.replay("request_reset", cmd)
        if answered is not None:  # a retry: the first answer, nothing filed again
            return answered
        sender = address_digest(self.settings, str(cmd.email))
        limits = {
            f"sender:{sender}": self.settings.requests_per_sender,
            f"account:{normalise_username(cmd.username)}": self.settings.requests_per_account,
        }
        if by_mail_from is not None:
            self.admit_mail(by_mail_from, also=limits)
        elif not self.limits.allow_each(limits):
            raise RateLimited(
                "Too many reset requests from this address or for this account. "
                "Try again later or call the help desk."
            )
        file = self._file(cmd.username) or AccountFile(username=cmd.username)
        verified = file.known and same_digest(file.email_digest, sender)
        ticket = self._open_ticket(file)
        joined = ticket is not None
        client = client_facts(cmd.client)
        if ticket is not None:
            ticket.join(cmd.name, str(cmd.email), cmd.reason, cmd.channel, verified, client)
            touched: list[Any] = [ticket]
        else:
            ticket = Ticket(
                name=cmd.name,
                email=str(cmd.email),
                username=cmd.username,
                reason=cmd.reason,
                requested_by=self.agent(cmd.principal).name if cmd.principal else cmd.username,
                channel=cmd.channel,
                sender_verified=verified,
                client=client,
            )
            file.file_ticket(ticket.id)
            touched = [
                ticket, file, TicketNumber(ticket_number(ticket.id), ticket.id),
                self.all_tickets.entry(ticket.id),
            ]
        intent, to = None, self._acknowledge_to(cmd, file, verified, acknowledge)
        if to is not None:
            intent = str(uuid.uuid4())
            ticket.intend_acknowledgement(intent, to)
        index = self._requests_from(cmd.client)
        alerts = self._flag(ticket, self._request_flags(file, index))
        answer = {"ticket_id": str(ticket.id), "ticket_number": ticket_number(ticket.id),
                  "joined": joined}
        self.save(*touched, *([index] if index else []),
                  *self.idempotency.record("request_reset", cmd, answer))
        if intent is not None:
            self.send_acknowledgement(
                Acknowledgement(ticket.id, intent, str(to), ticket_number(ticket.id))
            )
        for alert in alerts:
            self.send_alert(alert)
        return answer

    @staticmethod
    def _check_arrived_as_said(cmd: RequestReset, by_mail_from: str | None) -> None:
        """Only the mail intake files a request as ``email``, and only the portal's web form
        as ``web`` (a bus caller's claim would put a false channel on the ticket the agent and
        the auditor read, and a web request's acknowledgement goes to the address on file)."""
        if cmd.channel == "email" and by_mail_from is None:
            raise InvalidRequest("channel: only the help desk's mail intake files a request by "
                                 "mail; use 'api'.")
        if cmd.channel == "web" and not context.came_through("portal"):
            raise InvalidRequest("channel: only the portal's web form files a request as "
                                 "'web'; use 'api'.")

    def _acknowledge_to(self, cmd: RequestReset, file: AccountFile, verified: bool,
                        acknowledge: bool) -> str | None:
        """Where the ticket number is mailed, if anywhere: only ever the address on file, so
        an impostor's typed address (or a forged ``From:``) learns nothing and the form probes
        nothing. The web form's request: the address on file of a known account, whatever
        address was typed (its owner learns of the request). A mail's (``acknowledge``): the
        sender, only when it is the address on file (no backscatter to forged senders)."""
        if cmd.channel == "web" and file.known:
            return self._address_on_file(file) or (str(cmd.email) if verified else None)
        return str(cmd.email) if acknowledge and verified else None

    def _address_on_file(self, file: AccountFile | None) -> str | None:
        """The account's address on file, opened from its sealed copy (None without one)."""
        sealed = file.on_file.get("email_sealed") if file is not None and file.known else None
        if not sealed:
            return None
        try:
            return open_fact(self.settings, file.username, "email", sealed)  # type: ignore[union-attr]
        except Exception:  # sealed for another account or altered: no address to trust
            return None

    def admit_mail(self, domain: str, also: dict[str, int] | None = None) -> None:
        """Count one intake mail against the global and per-sender-domain limits (and ``also``),
        none of which a forged ``From:`` address escapes; over one: ``RateLimited``."""
        limits = {
            "intake": self.settings.intake_mails_per_window,
            f"intake-domain:{domain.strip().lower()}": self.settings.intake_mails_per_domain,
            **(also or {}),
        }
        if not self.limits.allow_each(limits):
            raise RateLimited(
                "Too many requests by mail (from this address or domain, for this account, or "
                "in all). Try again later or call the help desk."
            )

    def _open_ticket(self, file: AccountFile) -> Ticket | None:
        for ticket_id in reversed(file.tickets):
            ticket = self.repository.get(ticket_id)
            if ticket.state in UNDECIDED:
                return ticket
        return None

    def quarantine(self, reason: str, sender: str, size: int, digest: str, path: str) -> str:
        mail = QuarantinedMail(reason=reason, sender=sender, size=size, digest=digest, path=path)
        self.save(mail, self.all_quarantined.entry(mail.id))
        return str(mail.id)

    def quarantined(self) -> list[dict[str, Any]]:
        found = []
        for mail in self.readable(self.all_quarantined.ids()):
            found.append({
                "id": str(mail.id), "at": mail.created_on.isoformat(), "reason": mail.reason,
                "sender": mask_email(mail.sender), "size": mail.size, "path": mail.path,
            })
        return found

    # --- acknowledgements: intent recorded, then sent (shared.effects) -----------------------
    def unsent_acknowledgements(self) -> list[Acknowledgement]:
        found = []
        for ticket in self.readable(self.sweeps.touched()):
            for intent, to in ticket.pending_acks.items():
                found.append(Acknowledgement(ticket.id, intent, to, ticket_number(ticket.id)))
        return found

    def acknowledgement_pending(self, ack: Acknowledgement) -> bool:
        return ack.intent_id in self.repository.get(ack.ticket_id).pending_acks

    def mark_acknowledged(self, ack: Acknowledgement, error: str | None) -> None:
        ticket = self.repository.get(ack.ticket_id)
        if ack.intent_id in ticket.pending_acks:
            ticket.mark_acknowledged(ack.intent_id, error)
            self.save(ticket)

    # --- expiry ------------------------------------------------------------------------------
    def expire_stale(self, now: datetime | None = None) -> list[str]:
        """Expire undecided tickets nobody touched for ``ticket_expiry_hours``."""
        now = now or self.clock.now()
        after = timedelta(hours=self.settings.ticket_expiry_hours)
        expired = []
        for ticket in self._maybe_undecided():
            if ticket.expire(now, after):
                self.save(ticket)
                expired.append(ticket_number(ticket.id))
        return expired

    # --- the cancel window -------------------------------------------------------------------
    def take_effect_due(self, now: datetime | None = None) -> list[str]:
        """Approve the scheduled resets whose cancel window has ended (``ResetApproved``, which
        credentials and verification act on); from then the user's earlier sign-ins end."""
        now = now or self.clock.now()
        approved = []
        for ticket in self._maybe_undecided():
            if ticket.state == SCHEDULED and ticket.take_effect(now):
                self.save(ticket, self.reset_mark(ticket.username))
                approved.append(ticket_number(ticket.id))
        return approved

    def cancel_link(self, cmd: CancelLink) -> dict[str, Any]:
        """What a cancel link would cancel (the page before the person confirms)."""
        ticket = self._cancel_link_ticket(cmd.token)
        ticket.check_cancellable()
        return self._cancel_facts(ticket)

    def cancel_reset(self, cmd: CancelReset) -> dict[str, Any]:
        """The person cancelled from the link: ``ResetCancelled``, the ticket frozen for review.
        Used once: a second use finds it cancelled already."""
        ticket = self._cancel_link_ticket(cmd.token)
        ticket.cancel("link", cmd.client.facts() if cmd.client else None)
        self.save(ticket)
        return self._cancel_facts(ticket)

    def close_review(self, cmd: CloseReview) -> dict[str, Any]:
        agent = self._acting_agent(cmd.principal)
        ticket = self.ticket(cmd.ticket)
        ticket.close_review(agent, cmd.note)
        self.save(ticket)
        return self.describe(ticket, agent)

    def _cancel_link_ticket(self, token: str) -> Ticket:
        """The ticket a genuine cancel link (credentials signed it, bound to the ticket, for the
        ticket's user) names; anything else is refused in the same words."""
        refused = AuthenticationFailed(BAD_CANCEL_LINK)
        try:
            ticket: Ticket = self.repository.get(UUID(unverified_binding(token)))
            verify_token(self.token_keys, token, "reset_cancel", ticket.username,
                         bound_to=str(ticket.id))
        except (ValueError, AggregateNotFoundError, AuthenticationFailed):
            raise refused from None
        return ticket

    def _cancel_facts(self, ticket: Ticket) -> dict[str, Any]:
        return {
            "ticket_number": ticket_number(ticket.id),
            "state": ticket.state,
            "state_label": ticket.state_label,
            "effective_at": ticket.effective_at.isoformat() if ticket.effective_at else None,
        }

    def approve(self, cmd: ApproveReset) -> dict[str, Any]:
        agent = self._acting_agent(cmd.principal)
        ticket = self.ticket(cmd.ticket)
        ticket.check_undecided()
        ticket.check_not_own(agent)
        file = self._file(ticket.username)
        if file is None or not file.known:
            raise NotFound(
                f"There is no portal account named {ticket.username!r}: "
                "check the username with the requester, or reject the ticket."
            )
        ticket.approve(
            agent, policy=self.policy, privileged=file.privileged,
            four_eyes=self._four_eyes(file), effective_at=self._cancel_window_end(file),
        )
        # An approval that takes effect now ends the user's earlier sign-ins here at once.
        self.save(ticket, *([self.reset_mark(ticket.username)] if ticket.state == APPROVED else []))
        return self.describe(ticket, agent)

    def reject(self, cmd: RejectReset) -> dict[str, Any]:
        agent = self._acting_agent(cmd.principal)
        ticket = self.ticket(cmd.ticket)
        ticket.reject(agent, cmd.reason)
        notice = None
        if (to := self._address_on_file(self._file(ticket.username))) is not None:
            notice = RejectionNotice(ticket.id, str(uuid.uuid4()), to, ticket_number(ticket.id))
            ticket.intend_rejection_notice(notice.intent_id, to)
        self.save(ticket)
        if notice is not None:
            self.send_rejection_notice(notice)
        return self.describe(ticket, agent)

    # --- rejection notices: intent recorded, then sent (shared.effects) ---------------------
    def unsent_rejection_notices(self) -> list[RejectionNotice]:
        return [
            RejectionNotice(ticket.id, intent, to, ticket_number(ticket.id))
            for ticket in self.readable(self.sweeps.touched())
            for intent, to in ticket.pending_rejection_notices.items()
        ]

    def rejection_notice_pending(self, notice: RejectionNotice) -> bool:
        return notice.intent_id in self.repository.get(notice.ticket_id).pending_rejection_notices

    def mark_rejection_noticed(self, notice: RejectionNotice, error: str | None) -> None:
        ticket = self.repository.get(notice.ticket_id)
        if notice.intent_id in ticket.pending_rejection_notices:
            ticket.mark_rejection_noticed(notice.intent_id, error)
            self.save(ticket)

    # --- policies on upstream events --------------------------------------------------------
    @batchable
    def on_account_registered(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        file = self._file(envelope.subject) or AccountFile(username=envelope.subject)
        body = AccountRegistered.model_validate(envelope.body)
        file.note_account(
            role=body.role, email_digest=body.email_digest, privileged=body.privileged,
            on_file=body.model_dump(include=ON_FILE),
        )
        return self.save_processed(tracking, file)

    def on_delivery_event(self, envelope: EventEnvelope) -> bool:
        """Credentials' temporary password mail: pending, sent or failed, shown on the ticket."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        contract, status = DELIVERY_STATES[envelope.name]
        body = contract.model_validate(envelope.body)
        ticket = None
        with contextlib.suppress(ValueError, TypeError, AggregateNotFoundError):
            ticket = self.repository.get(UUID(str(body.ticket_id)))
        if ticket is None:
            return self.save_processed(tracking)
        reason = body.reason if isinstance(body, TemporaryPasswordDeliveryFailed) else ""
        ticket.note_delivery(status, reason)
        # A new password: the user's sign-ins from before it no longer count (as on approval).
        mark = self.reset_mark_for(envelope) if envelope.name == "PasswordIssued" else None
        return self.save_processed(tracking, ticket, mark)

    @batchable
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

    # --- post-reset detection (the rules: services/ticketing/detection.py) ---------------------
    @property
    def thresholds(self) -> Thresholds:
        return Thresholds.of(self.settings)

    def _requests_from(self, client: ClientContext | None) -> RequestsFrom | None:
        """The index of requests from the client's address (None without an address)."""
        if client is None:
            return None
        return self.find(RequestsFrom.create_id(client.address)) or RequestsFrom(client.address)

    def _request_flags(self, file: AccountFile, index: RequestsFrom | None) -> list[Flag]:
        """The request rules; the request is counted on ``index``, its address's requests."""
        requests = index.count(self.clock.now(), self.thresholds.window) if index else 0
        return detection.on_request(
            privileged=file.known and file.privileged, role=file.role if file.known else None,
            requests_from_address=requests, address=index.address if index else None,
            thresholds=self.thresholds,
        )

    def _flag(self, ticket: Ticket, flags: list[Flag]) -> list[Alert]:
        """Record each new flag on ``ticket`` (to be mailed when the security address is set);
        the alerts to send once saved."""
        mail = bool(self.settings.security_address)
        return [
            Alert.of(ticket, found.rule) for found in flags
            if ticket.flag(found.rule, found.summary, found.evidence, alert=mail) and mail
        ]

    def on_method_registered(self, envelope: EventEnvelope) -> bool:
        """Verification's MethodRegistered: note an authenticator app on the account's file (a
        method a push proof can reach); after a reset, note the method on the reset's ticket and
        flag what the method rules find (another network, a second method soon)."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        body = MethodRegistered.model_validate(envelope.body)
        files = self.note_surviving_method(envelope.subject, body.method_id, body.method_type,
                                           body.label)
        found = self._last_reset(envelope.subject)
        if found is None or envelope.occurred_at - found[1] > self.thresholds.window:
            return self.save_processed(tracking, *files)
        ticket, reset_at = found
        method_client = body.client.model_dump() if body.client else None
        flags = detection.on_method_registered(
            reset_at=reset_at, registered_at=envelope.occurred_at, request_client=ticket.client,
            method_client=method_client, methods_before=len(ticket.methods_after_reset),
            thresholds=self.thresholds, country=self.country,
        )
        ticket.note_new_method(body.method_id, body.method_type, body.label, method_client)
        alerts = self._flag(ticket, flags)
        saved = self.save_processed(tracking, ticket, *files)
        for alert in alerts if saved else []:
            self.send_alert(alert)
        return saved

    def _last_reset(self, username: str) -> tuple[Ticket, datetime] | None:
        """The account's latest approved ticket and when it was approved (its own events)."""
        file = self._file(username)
        for ticket_id in reversed(file.tickets if file else []):
            approved = [e.timestamp for e in self.events.get(ticket_id)
                        if type(e).__name__ == "ResetApproved"]
            if approved:
                return self.repository.get(ticket_id), approved[-1]
        return None

    # --- alerts to the security address: intent recorded, then sent (shared.effects) --------
    def unsent_alerts(self) -> list[Alert]:
        tickets = self.readable(self.sweeps.touched())
        return [Alert.of(ticket, rule) for ticket in tickets for rule in ticket.unsent_alerts]

    def alert_pending(self, alert: Alert) -> bool:
        return alert.rule in self.repository.get(alert.ticket_id).unsent_alerts

    def mark_alerted(self, alert: Alert, error: str | None) -> None:
        ticket = self.repository.get(alert.ticket_id)
        if ticket.alert_sent(alert.rule, error):
            self.save(ticket)

    # --- queries -----------------------------------------------------------------------------
    def ticket(self, ref: str) -> Ticket:
        ref = ref.strip()
        try:
            return self.repository.get(UUID(ref))
        except (ValueError, AggregateNotFoundError):
            pass
        try:
            index: TicketNumber = self.repository.get(TicketNumber.create_id(ref))
        except AggregateNotFoundError:
            raise NotFound(f"There is no ticket {ref!r}.") from None
        return self.repository.get(index.ticket_id)

    def list_tickets(self, state: str | None = None, principal: str | None = None
                     ) -> list[dict[str, Any]]:
        """Tickets (``open`` means undecided); ``principal``: the viewer, for ``next_actions``."""
        agent = self._viewer(principal)
        if state == "open":
            return [self.describe(t, agent) for t in self._maybe_undecided() if t.state in UNDECIDED]
        if state in PENDING:  # e.g. waiting for a second approval, or under review
            return [self.describe(t, agent) for t in self._maybe_undecided() if t.state == state]
        tickets = list(self.readable(self.all_tickets.ids()))
        if state:
            tickets = [t for t in tickets if t.state == state]
        return [self.describe(t, agent) for t in tickets]

    def _maybe_undecided(self) -> Iterator[Ticket]:
        """The tickets after the longest run of decided ones at the start of the log."""
        leading = True
        for position, ticket_id in self.all_tickets.since(self._decided_through):
            ticket: Ticket = self.repository.get(ticket_id)
            if leading and ticket.state not in PENDING:
                with self._decided_lock:
                    self._decided_through = max(self._decided_through, position)
            else:
                leading = False
            yield ticket

    def show(self, ref: str, principal: str | None = None) -> dict[str, Any]:
        agent = self._viewer(principal)
        ticket = self.ticket(ref)
        timeline = []
        # The events up to the version just read: one consistent view (an event saved between
        # the two reads would show in the timeline but not in the state, a flag say).
        for stored in self.events.get(ticket.id, lte=ticket.version):
            facts = {
                k: v
                for k, v in stored.__dict__.items()
                if not k.startswith("_") and k
                not in ("originator_id", "originator_version", "originator_topic", "timestamp",
                        "email", "to", "code_hash", "call_to_sealed")
            }
            if "sender_verified" in facts:  # the typed address: it proves nothing, say so
                facts[TYPED_ADDRESS] = facts.pop("sender_verified")
            timeline.append(
                {"at": stored.timestamp.isoformat(), "event": type(stored).__name__, **facts}
            )
        return {**self.describe(ticket, agent), "timeline": timeline}

    def describe(self, ticket: Ticket, agent: str | None = None) -> dict[str, Any]:
        """A ticket as screens show it, with what ``agent`` (the viewer: an agent on file, from
        ``_acting_agent`` or ``_viewer``) may do with it now."""
        file = self._file(ticket.username)
        actions = self.next_actions(ticket, agent, file) if agent else []
        return {
            "ticket_id": str(ticket.id),
            "ticket_number": ticket_number(ticket.id),
            "username": ticket.username,
            "name": ticket.name,
            "email": mask_email(ticket.email),
            "reason": ticket.reason,
            "state": ticket.state,
            "requested_by": ticket.requested_by,
            "decided_by": ticket.decided_by,
            "created_at": ticket.created_on.isoformat(),
            "channel": ticket.channel,
            # The typed address matching the one on file proves nothing: never "verified".
            "address_on_file": ADDRESS_MATCH_LABEL if ticket.sender_verified
            else ADDRESS_OTHER_LABEL,
            "approvals": list(ticket.approvals),
            "joined_requests": ticket.joined,
            "delivery": ticket.delivery,
            "client": ticket.client,
            "flags": [{**f, "label": RULE_LABELS.get(f["rule"], f["rule"])} for f in ticket.flags],
            "state_label": ticket.state_label,
            "privileged": bool(file and file.privileged),
            "effective_at": ticket.effective_at.isoformat() if ticket.effective_at else None,
            "decision_reason": ticket.decision_reason,
            "next_actions": actions,
            "can_approve": APPROVE in actions,
            **self.proof_view(ticket, file),
        }

    def next_actions(self, ticket: Ticket, agent: str, file: AccountFile | None) -> list[str]:
        """The domain's rules for this agent (one on file) and ticket, as the actions would
        check them; ``file``: the ticket's account file, read once for the whole view."""
        if ticket.state not in PENDING:
            return []
        actions = ticket.next_actions(
            agent, policy=self.policy, privileged=bool(file and file.privileged),
            four_eyes=file is not None and self._four_eyes(file),
        )
        if file is None or not file.known:  # approve would answer NotFound
            actions = [a for a in actions if a != APPROVE]
        return actions

    # --- indexes -----------------------------------------------------------------------------
    def backfill_indexes(self) -> int:
        """Index tickets and quarantined mail an older version recorded without indexes."""
        tickets = unlogged(self, self.all_tickets, Ticket.ResetRequested)  # type: ignore[attr-defined]
        mails = unlogged(self, self.all_quarantined, QuarantinedMail.MailQuarantined)  # type: ignore[attr-defined]
        entries: list[Any] = []
        numbered: set[str] = set()
        for ticket_id in tickets:
            number = ticket_number(ticket_id)
            if number in numbered or self._numbered(number):
                continue  # two old tickets shared a number: the first keeps it, as scans did
            numbered.add(number)
            entries.append(TicketNumber(number, ticket_id))
        entries += self.all_tickets.entries(tickets)
        entries += self.all_quarantined.entries(mails)
        return save_backfill(self, entries)

    def _numbered(self, number: str) -> bool:
        return self.find(TicketNumber.create_id(number)) is not None

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
        return self.find(AccountFile.id_for(username))

    def _four_eyes(self, file: AccountFile) -> bool:
        """Whether a reset of this account needs a second agent (REKEY_FOUR_EYES)."""
        mode = self.settings.four_eyes
        return mode in ("all", True) or (mode == "privileged" and file.privileged)

    def _cancel_window_end(self, file: AccountFile) -> datetime | None:
        """When an approval now would take effect, or None for at once (no cancel window)."""
        minutes = (self.settings.cancel_window_privileged_minutes if file.privileged
                   else self.settings.cancel_window_minutes)
        return self.clock.now() + timedelta(minutes=minutes) if minutes > 0 else None

    def _is_agent(self, agent: str) -> bool:
        file = self._file(agent)
        return file is not None and file.role == AGENT_ROLE

    def _acting_agent(self, principal: str) -> str:
        """The authenticated agent behind a command, who must still be an agent on file."""
        agent = self.agent(principal).name
        if not self._is_agent(agent):
            raise NotAllowed(f"{agent!r} is not a help-desk agent.")
        return agent

    def _viewer(self, principal: str | None) -> str | None:
        """Whom ``next_actions`` is for: a genuine agent principal still on file as an agent,
        else nobody. The portal reads tickets only for a signed-in agent: its key alone (a
        compromised portal host) reads none; the operator's command line, on the machine, may
        without a principal."""
        if principal:
            name = self.agent(principal).name
            return name if self._is_agent(name) else None  # read once for a whole list
        caller = context.current()
        if caller is not None and caller.caller == "portal":
            raise AuthenticationFailed("Sign in first: this needs a signed-in agent.")
        return None
