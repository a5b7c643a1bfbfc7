"""Reset tickets and the per-account facts ticketing keeps (accounts known, their tickets)."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.ticketing.proofs import (
    EMAIL_CODE,
    ID_CHECK,
    MANAGER_APPROVAL,
    PROOF_LABELS,
    ProofPolicy,
)
from shared.application import REKEY_NAMESPACE, UserAggregate, same_user
from shared.errors import Conflict, NotAllowed
from shared.upcasting import gained

OPEN = "open"
VERIFIED = "identity_verified"
AWAITING_SECOND = "awaiting_second_approval"
APPROVED = "approved"
REJECTED = "rejected"
CLOSED = "closed"
EXPIRED = "expired"
SCHEDULED = "reset_scheduled"
UNDER_REVIEW = "under_review"
UNDECIDED = (OPEN, VERIFIED, AWAITING_SECOND)
# Still needs something: a decision, the end of its cancel window, or an agent's review.
PENDING = (*UNDECIDED, SCHEDULED, UNDER_REVIEW)

# The words people read for each state and identity check: screens take them from replies.
STATE_LABELS = {
    OPEN: "Open",
    VERIFIED: "Identity checked",
    AWAITING_SECOND: "Waiting for a second approval",
    APPROVED: "Approved",
    REJECTED: "Rejected",
    CLOSED: "Closed",
    EXPIRED: "Expired",
    SCHEDULED: "Approved: takes effect when the cancel window ends",
    UNDER_REVIEW: "Cancelled by the person: under review",
}
PROVE, APPROVE, REJECT = "prove", "approve", "reject"
DEFAULT_POLICY = ProofPolicy()  # the product's defaults; the application passes its settings'

CLOSE_REVIEW = "close_review"


class TicketNotOpen(Conflict):
    """The ticket was already decided or closed."""


class SelfApprovalRefused(NotAllowed):
    """An agent may not approve a reset they asked for, or one for their own account."""


class SecondApprovalRequired(NotAllowed):
    """Four eyes: the second approval must come from another agent."""


class ResetNotCancellable(Conflict):
    """Only a reset waiting for its cancel window to end can be cancelled."""


class NotUnderReview(Conflict):
    """Only a cancelled reset, frozen for review, can have its review closed."""


class ProofNotRunning(Conflict):
    """The proof is not waiting for an answer: it succeeded, failed, expired or never was."""


# What the system records about a ticket on its own (a mail sent or retried, a rule's flag):
# none of it is somebody handling the ticket, so none of it keeps an undecided ticket from
# expiring. Every other event is a person's (or a new request's) and restarts that clock.
BOOKKEEPING = frozenset({
    "AcknowledgementIntended", "AcknowledgementSent", "RejectionNoticeIntended",
    "RejectionNoticeSent", "ProofMailed", "DeliveryNoted", "ResetFlagged", "SecurityAlertSent",
})


class Ticket(Aggregate):
    """One request to reset a user's MFA, from filing to closure."""

    class Event(Aggregate.Event):
        def mutate(self, aggregate: Any) -> Any:
            ticket = super().mutate(aggregate)
            if type(self).__name__ not in BOOKKEEPING:
                ticket.handled_on = self.timestamp
            return ticket

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
        client: dict[str, str] | None = None,
    ) -> None:
        """``client``: the web client (address, network, user agent); None by mail or CLI."""
        self.name = name
        self.email = email
        self.username = username
        self.reason = reason
        self.requested_by = requested_by
        self.channel = channel
        self.sender_verified = sender_verified  # the typed address matches: proves nothing
        self.state = OPEN
        self.identity_check: str | None = None  # typed by agents before proofs: counts nothing
        self.proofs: dict[str, dict[str, Any]] = {}
        self.decided_by: str | None = None
        self.decision_reason: str | None = None
        self.approvals: list[str] = []
        self.joined = 0
        self.delivery: str | None = None
        self.pending_acks: dict[str, str] = {}
        self.pending_rejection_notices: dict[str, str] = {}  # intent id -> the address on file
        self.effective_at: datetime | None = None
        self.client = client
        self.flags: list[dict[str, Any]] = []
        self.methods_after_reset: list[str] = []
        self.unsent_alerts: list[str] = []  # rules whose flag is still to be mailed
        # When a person last handled it: every event but the BOOKKEEPING ones sets it, this one
        # included (Event.mutate, right after this method)
        self.handled_on: datetime = self.created_on

    @property
    def subject(self) -> str:
        return self.username

    def check_undecided(self) -> None:
        if self.state not in UNDECIDED:
            raise TicketNotOpen(f"This ticket is already {self.state.replace('_', ' ')}.")

    def check_not_own(self, agent: str) -> None:
        if same_user(agent, self.requested_by):
            raise SelfApprovalRefused("An agent cannot approve a reset they requested.")
        self.check_not_own_account(agent, "approve")

    def check_not_own_account(self, agent: str, what: str = "prove the identity behind") -> None:
        if same_user(agent, self.username):
            raise SelfApprovalRefused(f"An agent cannot {what} a reset of their own account.")

    @event("IdentityVerified")
    def _identity_verified(self, agent: str, method: str, note: str) -> None:
        """An agent's typed note from before proofs: kept in the history, counts for nothing."""
        self.identity_check = method

    # --- identity proofs ---------------------------------------------------------------------
    @property
    def proven_kinds(self) -> set[str]:
        return {p["kind"] for p in self.proofs.values() if p["state"] == "succeeded"}

    def start_proof(
        self, proof_id: str, kind: str, agent: str, destination: str, expires_at: datetime,
        code_hash: str | None = None, call_to_sealed: str | None = None,
        number_sealed: str | None = None,
    ) -> None:
        """The system starts a proof it runs; its evidence is where it went and when."""
        self.check_undecided()
        self.check_not_own_account(agent)
        self._proof_started(
            proof_id=proof_id, kind=kind, agent=agent, destination=destination,
            expires_at=expires_at, code_hash=code_hash, call_to_sealed=call_to_sealed,
            number_sealed=number_sealed,
        )

    @event("ProofStarted")
    def _proof_started(
        self, proof_id: str, kind: str, agent: str, destination: str, expires_at: datetime,
        code_hash: str | None = None, call_to_sealed: str | None = None,
        number_sealed: str | None = None,
    ) -> None:
        # number_sealed: a method challenge's number, sealed (shared/sealed.py) for this proof:
        # the agent reads it to the person, verification checks what the device answers.
        self.proofs[proof_id] = {
            "kind": kind, "state": "started", "agent": agent, "destination": destination,
            "expires_at": expires_at, "code_hash": code_hash, "wrong": 0, "evidence": "",
            "number_sealed": number_sealed,
        }

    def running_proof(self, proof_id: str, now: datetime, kind: str | None = None) -> dict[str, Any]:
        proof = self.proofs.get(proof_id)
        if proof is None or (kind is not None and proof["kind"] != kind):
            raise ProofNotRunning("There is no such proof on this ticket.")
        if proof["state"] != "started":
            raise ProofNotRunning(f"This proof has already {proof['state']}: start a new one.")
        if now > proof["expires_at"]:
            raise ProofNotRunning("This proof has expired: start a new one.")
        self.check_undecided()
        return proof

    def answer_code(
        self, proof_id: str, matches: bool, now: datetime, max_wrong: int, agent: str
    ) -> bool:
        """A code the person read back, as the agent typed it: success, or one more wrong try
        (the ``max_wrong``-th fails the proof)."""
        proof = self.running_proof(proof_id, now)
        if proof["code_hash"] is None:
            raise ProofNotRunning("This proof does not take a code.")
        if matches:
            self._proof_succeeded(
                proof_id=proof_id, kind=proof["kind"], actor=agent,
                evidence=f"the person read back the code sent to {proof['destination']}",
            )
            return True
        wrong = proof["wrong"] + 1
        if wrong >= max_wrong:
            self._proof_failed(proof_id=proof_id, kind=proof["kind"],
                               reason=f"{wrong} wrong codes were typed")
        else:
            self._proof_code_refused(proof_id=proof_id, wrong=wrong)
        return False

    def conclude_proof(self, proof_id: str, kind: str, now: datetime, succeeded: bool,
                       actor: str, evidence: str) -> None:
        """The outcome of a proof the system ran elsewhere (a call, the manager's link)."""
        self.running_proof(proof_id, now, kind)
        if succeeded:
            self._proof_succeeded(proof_id=proof_id, kind=kind, actor=actor, evidence=evidence)
        else:
            self._proof_failed(proof_id=proof_id, kind=kind, reason=evidence)

    def attest_id_check(self, proof_id: str, agent: str, note: str) -> None:
        """The weakest proof: an agent says they checked a photo ID (never counts alone)."""
        self.check_undecided()
        self.check_not_own_account(agent)
        self._proof_succeeded(proof_id=proof_id, kind=ID_CHECK, actor=agent, evidence=note)

    @event("ProofSucceeded")
    def _proof_succeeded(self, proof_id: str, kind: str, actor: str, evidence: str) -> None:
        proof = self.proofs.setdefault(proof_id, {"kind": kind, "destination": "", "wrong": 0})
        proof.update(state="succeeded", evidence=evidence, by=actor)

    @event("ProofFailed")
    def _proof_failed(self, proof_id: str, kind: str, reason: str) -> None:
        self.proofs[proof_id].update(state="failed", evidence=reason)

    def proof_mailed(self, proof_id: str, error: str | None) -> None:
        """The proof's mail left (it waits for the person), or could not be sent (it failed)."""
        if error is None:
            self._proof_mailed(proof_id=proof_id)
        else:
            self._proof_failed(proof_id=proof_id, kind=self.proofs[proof_id]["kind"],
                               reason=f"the mail could not be sent: {error}")

    @event("ProofMailed")
    def _proof_mailed(self, proof_id: str) -> None:
        self.proofs[proof_id]["mailed"] = True

    @event("ProofCodeRefused")
    def _proof_code_refused(self, proof_id: str, wrong: int) -> None:
        self.proofs[proof_id]["wrong"] = wrong

    # --- decisions ---------------------------------------------------------------------------
    def check_approvable(
        self, agent: str, *, policy: ProofPolicy = DEFAULT_POLICY, privileged: bool = False,
        four_eyes: bool = False,
    ) -> None:
        """Every rule an approval by ``agent`` must pass (see :meth:`approve`)."""
        self.check_undecided()
        self.check_not_own(agent)
        policy.check_met(self.proven_kinds, privileged)
        if four_eyes and any(same_user(agent, a) for a in self.approvals):
            raise SecondApprovalRequired(
                "You already approved this ticket: a second agent must approve it too."
            )

    def approve(
        self, agent: str, *, policy: ProofPolicy = DEFAULT_POLICY, privileged: bool = False,
        four_eyes: bool = False, effective_at: datetime | None = None,
    ) -> bool:
        """Approve; returns whether the reset is now decided (False: first of four eyes).

        ``privileged``: the account needs the privileged points of ``policy``.
        ``effective_at``: the end of the cancel window: the reset is scheduled
        (``ResetScheduled``) and approved only then (:meth:`take_effect`), unless cancelled.
        """
        self.check_approvable(agent, policy=policy, privileged=privileged, four_eyes=four_eyes)
        if four_eyes and not self.approvals:
            self._approval_recorded(agent=agent)
            return False
        if effective_at is not None:
            self._scheduled(agent=agent, username=self.username, effective_at=effective_at)
        else:
            self._approved(agent=agent, username=self.username)
        return True

    @event("ResetScheduled")
    def _scheduled(self, agent: str, username: str, effective_at: datetime) -> None:
        self.state = SCHEDULED
        self.decided_by = agent
        self.effective_at = effective_at

    def take_effect(self, now: datetime) -> bool:
        """At the end of the cancel window, the scheduled reset is approved (for consumers,
        the approval they act on); returns whether it was."""
        if self.state != SCHEDULED or self.effective_at is None or now < self.effective_at:
            return False
        self._approved(agent=self.decided_by or "system", username=self.username)
        return True

    def check_cancellable(self) -> None:
        if self.state == UNDER_REVIEW:
            raise ResetNotCancellable(
                "This reset was already cancelled; the help desk is reviewing it."
            )
        if self.state != SCHEDULED:
            raise ResetNotCancellable(
                "This reset can no longer be cancelled here (it has already taken effect or was "
                "decided otherwise). If you did not ask for it, call the help desk now."
            )

    def cancel(self, channel: str, client: dict[str, str] | None = None) -> None:
        """The person cancelled from the link mailed to the address on file: nothing is reset,
        and the ticket is frozen until an agent reviews it."""
        self.check_cancellable()
        self._cancelled(actor=self.username, channel=channel, client=client)

    @event("ResetCancelled")
    def _cancelled(self, actor: str, channel: str, client: dict[str, str] | None) -> None:
        self.state = UNDER_REVIEW

    def close_review(self, agent: str, note: str) -> None:
        if self.state != UNDER_REVIEW:
            raise NotUnderReview("Only a reset the person cancelled, under review, is closed so.")
        self.check_not_own(agent)
        self._review_closed(agent=agent, note=note)

    @event("ReviewClosed")
    def _review_closed(self, agent: str, note: str) -> None:
        self.state = CLOSED
        self.decision_reason = note

    def next_actions(
        self, agent: str, *, policy: ProofPolicy = DEFAULT_POLICY, privileged: bool = False,
        four_eyes: bool = False,
    ) -> list[str]:
        """What ``agent`` (a help-desk agent) may do now, by the same rules the actions check."""
        if self.state == UNDER_REVIEW:
            try:
                self.check_not_own(agent)
            except NotAllowed:
                return []
            return [CLOSE_REVIEW]
        if self.state not in UNDECIDED:
            return []
        actions = []
        with contextlib.suppress(NotAllowed):
            self.check_not_own_account(agent)
            actions.append(PROVE)
        try:
            self.check_approvable(agent, policy=policy, privileged=privileged, four_eyes=four_eyes)
        except (NotAllowed, Conflict):
            pass
        else:
            actions.append(APPROVE)
        return [*actions, REJECT]

    def proof_facts(self, now: datetime) -> list[dict[str, Any]]:
        """The proofs as a screen lists them: kind, state, evidence; never a code or its hash."""
        facts = []
        for proof_id, proof in self.proofs.items():
            state = proof["state"]
            if state == "started" and now > proof["expires_at"]:
                state = "expired"
            facts.append({
                "proof_id": proof_id, "kind": proof["kind"],
                "label": PROOF_LABELS.get(proof["kind"], proof["kind"]), "state": state,
                "destination": proof.get("destination", ""), "evidence": proof.get("evidence", ""),
                "takes_code": state == "started" and proof.get("code_hash") is not None,
            })
        return facts

    @property
    def holds_open_intents(self) -> bool:
        """A mail recorded to send and not yet recorded sent or failed (what the start-up
        sweeps look for: an acknowledgement, a rejection notice, a security alert, a proof's
        code or approval link)."""
        return bool(self.pending_acks or self.pending_rejection_notices or self.unsent_alerts
                    or self.unmailed_proofs)

    @classmethod
    def intent_openers(cls) -> tuple[type, ...]:
        """The events that open what :attr:`holds_open_intents` looks for: a start-up sweep
        loads only tickets with one of them since its checkpoint (``shared.sweeps``)."""
        return (cls.AcknowledgementIntended, cls.RejectionNoticeIntended, cls.ResetFlagged,
                cls.ProofStarted)

    @property
    def unmailed_proofs(self) -> list[str]:
        """Proofs of an undecided ticket started by mail whose mail was never recorded sent."""
        if self.state not in UNDECIDED:
            return []
        return [proof_id for proof_id, proof in self.proofs.items()
                if proof["state"] == "started" and proof["kind"] in (EMAIL_CODE, MANAGER_APPROVAL)
                and not proof.get("mailed")]

    @property
    def state_label(self) -> str:
        return STATE_LABELS.get(self.state, self.state.replace("_", " ").capitalize())

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

    def join(self, name: str, email: str, reason: str, channel: str, sender_verified: bool,
             client: dict[str, str] | None = None) -> None:
        """A further request for the same account while this one is open: kept, not duplicated."""
        self.check_undecided()
        self._joined(
            name=name, email=email, reason=reason, channel=channel, sender_verified=sender_verified,
            client=client,
        )

    @event("RequestJoined")
    def _joined(
        self, name: str, email: str, reason: str, channel: str, sender_verified: bool,
        client: dict[str, str] | None = None,
    ) -> None:
        self.joined += 1

    def is_stale(self, now: datetime, after: timedelta) -> bool:
        """Undecided, and nobody has handled it for ``after`` (the system's own mails and
        flags do not count: :data:`BOOKKEEPING`)."""
        return self.state in UNDECIDED and self.handled_on + after <= now

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

    @event("RejectionNoticeIntended")
    def intend_rejection_notice(self, intent_id: str, to: str) -> None:
        """The person is to be told the reset was not approved (at the address on file)."""
        self.pending_rejection_notices[intent_id] = to

    @event("RejectionNoticeSent")
    def mark_rejection_noticed(self, intent_id: str, error: str | None = None) -> None:
        self.pending_rejection_notices.pop(intent_id, None)

    # --- post-reset detection (services/ticketing/detection.py) ------------------------------
    def flag(self, rule: str, summary: str, evidence: dict[str, str], *, alert: bool) -> bool:
        """Record a rule's flag once per ticket; False when that rule already flagged it.
        ``alert``: the flag is also to be mailed to the security address (the flag is the
        intent; ``alert_sent`` records the outcome)."""
        if any(f["rule"] == rule for f in self.flags):
            return False
        self._flagged(rule=rule, summary=summary, evidence=evidence, alert=alert)
        return True

    @event("ResetFlagged")
    def _flagged(
        self, rule: str, summary: str, evidence: dict[str, str], alert: bool = False
    ) -> None:
        self.flags.append({"rule": rule, "summary": summary, "evidence": dict(evidence)})
        if alert:
            self.unsent_alerts.append(rule)

    @event("NewMethodNoted")
    def note_new_method(
        self, method_id: str, method_type: str, label: str, client: dict[str, str] | None
    ) -> None:
        """A method registered after this ticket's reset (verification's MethodRegistered)."""
        self.methods_after_reset.append(method_id)

    def alert_sent(self, rule: str, error: str | None) -> bool:
        """Record the mail about ``rule``'s flag as sent (or failed); False if already done."""
        if rule not in self.unsent_alerts:
            return False
        self._alert_sent(rule=rule, error=error)
        return True

    @event("SecurityAlertSent")
    def _alert_sent(self, rule: str, error: str | None = None) -> None:
        self.unsent_alerts.remove(rule)


class AccountFile(UserAggregate):
    """What ticketing knows of one portal account: that it exists, its role, its tickets."""

    @event("AccountFileOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.known = False
        self.role: str | None = None
        self.email_digest: str | None = None
        self.tickets: list[UUID] = []
        self.flagged_privileged = False
        self.on_file: dict[str, str | None] = {}
        # Verification's authenticator-app methods: registered, and with a device for pushes.
        self.app_methods: dict[str, str] = {}  # method id -> label
        self.push_devices: set[str] = set()  # method ids with an activated device

    @event("AccountNoted")
    def note_account(
        self, role: str, email_digest: str | None = None, privileged: bool = False,
        on_file: dict[str, str | None] | None = None,
    ) -> None:
        """``on_file``: what credentials published of the phone, address and manager on file
        (masked forms, digests and sealed copies: see shared/sealed.py), never clear values."""
        self.known = True
        self.role = role
        self.email_digest = email_digest
        self.flagged_privileged = privileged
        self.on_file = dict(on_file or {})

    @property
    def privileged(self) -> bool:
        """Agents, and accounts the operator flagged: the stricter proof policy applies."""
        return self.flagged_privileged or self.role == "agent"

    @property
    def push_methods(self) -> dict[str, str]:
        """The surviving sign-in methods a push can reach (method id -> label)."""
        return {m: label for m, label in self.app_methods.items() if m in self.push_devices}

    @event("PushDeviceNoted")
    def note_push_device(self, method_id: str) -> None:
        self.push_devices.add(method_id)

    @event("AppMethodNoted")
    def note_app_method(self, method_id: str, label: str) -> None:
        self.app_methods[method_id] = label

    @event("MethodsGone")
    def methods_gone(self, method_ids: list[str]) -> None:
        """Methods removed by the user or revoked by a reset no longer survive."""
        for method_id in method_ids:
            self.app_methods.pop(method_id, None)
            self.push_devices.discard(method_id)

    @event("TicketFiled")
    def file_ticket(self, ticket_id: UUID) -> None:
        self.tickets.append(ticket_id)


class TicketNumber(Aggregate):
    """Index: the number people quote -> the ticket (id: the ``uuid5`` of the number).

    Saved with the ticket, so a second ticket with the same number fails to save and the
    request is tried again with a new ticket id: numbers stay unique.
    """

    @event("TicketNumbered")
    def __init__(self, number: str, ticket_id: UUID) -> None:
        self.number = number
        self.ticket_id = ticket_id

    @staticmethod
    def create_id(number: str) -> UUID:
        return uuid5(REKEY_NAMESPACE, f"ticket-number:{number.strip().upper()}")

    @property
    def subject(self) -> str:
        return ""


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


# Fields added since events were first stored (shared/upcasting.py).
gained(Ticket.ResetRequested, 2, client=None)  # type: ignore[attr-defined]
gained(Ticket.RequestJoined, 2, client=None)  # type: ignore[attr-defined]
gained(AccountFile.AccountNoted, 2, privileged=False, on_file=None)  # type: ignore[attr-defined]
gained(Ticket.ProofStarted, 2, number_sealed=None)  # type: ignore[attr-defined]
