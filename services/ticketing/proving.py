"""Identity proofs the system runs for a ticket: started by an agent, run by the system.

- a code mailed to the address on file (the person reads it back, the agent types it in);
- a signed, single-use link mailed to the manager on file (the manager approves or declines);
- a call-back to the phone on file, placed by verification (the person presses #);
- a push to an authenticator app the user still has, sent by verification: the agent reads the
  number the console shows, the person types it on the device and approves;
- an ID check an agent attests (the weakest: never counts alone by default).

Where a proof goes comes from the facts on file credentials published (sealed, opened here only
to send), never from the request or the agent. Codes exist in memory between issuing and
mailing; the ticket keeps a keyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Tracking

from services.ticketing.commands import (
    AnswerProofCode,
    AttestIdCheck,
    ManagerDecision,
    ManagerLinkRef,
    StartProof,
)
from services.ticketing.domain import UNDECIDED, AccountFile, Ticket
from services.ticketing.manager_links import REFUSED, ManagerLink, ManagerLinks
from services.ticketing.proofs import (
    CALL_BACK,
    EMAIL_CODE,
    MANAGER_APPROVAL,
    METHOD_CHALLENGE,
    PROOF_LABELS,
    ProofPolicy,
)
from shared.application import ServiceApplication
from shared.contracts import EventEnvelope
from shared.contracts.ticketing import ticket_number
from shared.contracts.verification import (
    CallBackAnswered,
    CallBackFailed,
    DeviceActivated,
    MethodChallengeAnswered,
    MethodChallengeFailed,
    MethodRemoved,
    MethodsRevoked,
)
from shared.errors import AuthenticationFailed, InvalidRequest, NotAllowed, NotFound
from shared.masking import mask_email
from shared.sealed import open_fact, seal_fact
from shared.secrets import keyed_hash, matching_number

CODE_DIGITS = 6
APP_METHOD = "authenticator_app"  # verification's method type that can take pushes
NO_SURVIVING_METHOD = ("No sign-in method with push notifications survives on this account "
                       "(an authenticator app with an activated device). Choose another proof.")
# Which fact on file each kind needs, and what to say when the account has none.
NEEDS = {
    EMAIL_CODE: ("email_sealed", "There is no address on file for this account."),
    MANAGER_APPROVAL: ("manager_email_sealed", "There is no manager on file for this account."),
    CALL_BACK: ("phone_sealed", "There is no phone number on file for this account."),
}


@dataclass(frozen=True)
class ProofMail:
    """A proof's mail to send: a code to the address on file, or the manager's link. The code
    and the link exist only in memory, between issuing and sending."""

    ticket_id: UUID
    proof_id: str
    kind: str
    to: str
    ticket_number: str
    username: str
    secret: str  # the code, or the manager's link

    @property
    def intent_id(self) -> str:
        return self.proof_id

    def __repr__(self) -> str:  # never print the code, the link or the address
        return f"ProofMail({self.kind}, ticket={self.ticket_number}, proof={self.proof_id})"


class ProofMethods(ServiceApplication):
    """The proof commands and policies of the ticketing application (mixed into it)."""

    def _file(self, username: str) -> AccountFile | None:
        raise NotImplementedError

    def _acting_agent(self, principal: str) -> str:
        raise NotImplementedError

    def ticket(self, ref: str) -> Ticket:
        raise NotImplementedError

    def describe(self, ticket: Ticket, agent: str | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def send_proof_mail(self, mail: ProofMail) -> None:
        """Replaced by the wiring (shared.effects); unwired, the proof waits and expires."""

    @cached_property
    def policy(self) -> ProofPolicy:
        return ProofPolicy.from_settings(self.settings)

    @cached_property
    def proof_key(self) -> bytes:
        return hmac.new(self.settings.vault_key_bytes, b"rekey proof codes", hashlib.sha256).digest()

    @cached_property
    def manager_links(self) -> ManagerLinks:
        return ManagerLinks(self.settings, self.clock)

    # --- commands ----------------------------------------------------------------------------
    def start_proof(self, cmd: StartProof) -> dict[str, Any]:
        agent = self._acting_agent(cmd.principal)
        ticket = self.ticket(cmd.ticket)
        file = self._known_file(ticket)
        if cmd.kind == METHOD_CHALLENGE:
            return self._start_method_challenge(ticket, file, agent)
        field, missing = NEEDS[cmd.kind]
        sealed = file.on_file.get(field)
        if not sealed:
            raise NotAllowed(f"{missing} Choose another proof.")
        proof_id = f"p-{secrets.token_hex(6)}"
        now = self.clock.now()
        if cmd.kind == MANAGER_APPROVAL:
            expires = now + timedelta(hours=self.settings.manager_link_hours)
        else:
            expires = now + timedelta(minutes=self.settings.proof_code_minutes)
        mail = None
        if cmd.kind == CALL_BACK:
            ticket.start_proof(proof_id, CALL_BACK, agent, str(file.on_file.get("phone") or ""),
                               expires, call_to_sealed=sealed)
        else:
            to = open_fact(self.settings, ticket.username, field.removesuffix("_sealed"), sealed)
            code_hash = None
            if cmd.kind == EMAIL_CODE:
                secret = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
                code_hash = keyed_hash(self.proof_key, f"{proof_id}:{secret}")
            else:
                link = ManagerLink(ticket.username, str(ticket.id), proof_id)
                ttl = int(self.settings.manager_link_hours * 3600)
                secret = f"{self.settings.portal_base_url}/manager/{self.manager_links.issue(link, ttl)}"
            ticket.start_proof(proof_id, cmd.kind, agent, mask_email(to), expires,
                               code_hash=code_hash)
            mail = ProofMail(ticket.id, proof_id, cmd.kind, to, ticket_number(ticket.id),
                             ticket.username, secret)
        self.save(ticket)
        if mail is not None:
            self.send_proof_mail(mail)
        return {**self.describe(ticket, agent), "proof_id": proof_id}

    def _start_method_challenge(self, ticket: Ticket, file: AccountFile,
                                agent: str) -> dict[str, Any]:
        """A push to a method the user still has. The number is shown to the agent (who reads
        it to the person) and sealed for verification, which checks what the device answers:
        an impostor on the phone has no device to type it on."""
        methods = file.push_methods
        if not methods:
            raise NotAllowed(NO_SURVIVING_METHOD)
        proof_id = f"p-{secrets.token_hex(6)}"
        number = matching_number(self.settings.push_number_digits)
        expires = self.clock.now() + timedelta(minutes=self.settings.proof_code_minutes)
        ticket.start_proof(
            proof_id, METHOD_CHALLENGE, agent, ", ".join(sorted(methods.values())), expires,
            number_sealed=seal_fact(self.settings, ticket.username, number_context(proof_id),
                                    number),
        )
        self.save(ticket)
        return {**self.describe(ticket, agent), "proof_id": proof_id}

    def answer_proof_code(self, cmd: AnswerProofCode) -> dict[str, Any]:
        agent = self._acting_agent(cmd.principal)
        ticket = self.ticket(cmd.ticket)
        proof = ticket.running_proof(cmd.proof_id, self.clock.now())
        expected = proof.get("code_hash") or ""
        matches = hmac.compare_digest(
            keyed_hash(self.proof_key, f"{cmd.proof_id}:{cmd.code}"), expected
        )
        ok = ticket.answer_code(cmd.proof_id, matches, self.clock.now(),
                                self.settings.proof_code_attempts, agent)
        self.save(ticket)
        if not ok:
            left = self.settings.proof_code_attempts - ticket.proofs[cmd.proof_id]["wrong"]
            failed = ticket.proofs[cmd.proof_id]["state"] == "failed"
            raise InvalidRequest(
                "That code is not the one we sent. "
                + ("Too many wrong codes: this proof failed; start a new one." if failed
                   else f"{left} tries left.")
            )
        return self.describe(ticket, agent)

    def attest_id_check(self, cmd: AttestIdCheck) -> dict[str, Any]:
        agent = self._acting_agent(cmd.principal)
        ticket = self.ticket(cmd.ticket)
        self._known_file(ticket)
        ticket.attest_id_check(f"p-{secrets.token_hex(6)}", agent, cmd.note)
        self.save(ticket)
        return self.describe(ticket, agent)

    # --- the manager's page ------------------------------------------------------------------
    def _manager_proof(self, token: str) -> tuple[Ticket, ManagerLink]:
        link = self.manager_links.verify(token)
        ticket = self.find(UUID(link.ticket_id))
        if ticket is None or ticket.username != link.username:
            raise AuthenticationFailed(REFUSED)
        try:
            ticket.running_proof(link.proof_id, self.clock.now(), MANAGER_APPROVAL)
        except Exception:
            raise AuthenticationFailed(REFUSED) from None
        return ticket, link

    def manager_request(self, cmd: ManagerLinkRef) -> dict[str, Any]:
        """What the manager's page shows: who asked for what, nothing secret."""
        ticket, _ = self._manager_proof(cmd.token)
        return {
            "ticket_number": ticket_number(ticket.id), "name": ticket.name,
            "username": ticket.username, "reason": ticket.reason,
            "requested_at": ticket.created_on.isoformat(),
        }

    def manager_decide(self, cmd: ManagerDecision) -> dict[str, Any]:
        ticket, link = self._manager_proof(cmd.token)
        destination = ticket.proofs[link.proof_id]["destination"]
        verdict = "approved" if cmd.approve else "declined"
        ticket.conclude_proof(
            link.proof_id, MANAGER_APPROVAL, self.clock.now(), cmd.approve,
            actor=f"manager on file ({destination})",
            evidence=f"the manager on file ({destination}) {verdict} through the signed link",
        )
        self.save(ticket)
        return {"ticket_number": ticket_number(ticket.id), "approved": cmd.approve}

    # --- proof mails (shared.effects: intent recorded as ProofStarted, sent, outcome) --------
    def proof_mail_pending(self, mail: ProofMail) -> bool:
        proof = self.repository.get(mail.ticket_id).proofs.get(mail.proof_id, {})
        return proof.get("state") == "started" and not proof.get("mailed")

    def mark_proof_mailed(self, mail: ProofMail, error: str | None) -> None:
        ticket: Ticket = self.repository.get(mail.ticket_id)
        if not self.proof_mail_pending(mail):
            return
        ticket.proof_mailed(mail.proof_id, error)
        self.save(ticket)

    def fail_unmailed_proofs(self) -> int:
        """At start-up: a proof whose mail never left cannot be resent (its code or link
        existed only in memory), so it fails and the agent starts a new one."""
        failed = 0
        for ticket in self.readable(self.sweeps.touched()):  # type: ignore[attr-defined]
            unmailed = ticket.unmailed_proofs
            for proof_id in unmailed:
                ticket.proof_mailed(proof_id, "not sent before the service stopped")
            if unmailed:
                self.save(ticket)
                failed += len(unmailed)
        return failed

    # --- call-backs: verification calls, its outcome arrives as an event ---------------------
    def on_call_back(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        answered = envelope.name == "CallBackAnswered"
        body = (CallBackAnswered if answered else CallBackFailed).model_validate(envelope.body)
        ticket = self.find(UUID(body.ticket_id))
        try:
            if ticket is None or ticket.username.lower() != envelope.subject.lower():
                raise NotFound("no such ticket")
            evidence = (f"the person answered the call to {body.to} and pressed #"
                        if isinstance(body, CallBackAnswered) else body.reason)
            ticket.conclude_proof(body.proof_id, CALL_BACK, self.clock.now(), answered,
                                  actor="system", evidence=evidence)
        except Exception:  # expired, already concluded, ticket decided: nothing to record
            return self.save_processed(tracking)
        return self.save_processed(tracking, ticket)

    # --- method challenges: verification pushes, its outcome arrives as an event ------------
    def on_method_challenge(self, envelope: EventEnvelope) -> bool:
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        answered = envelope.name == "MethodChallengeAnswered"
        body = (MethodChallengeAnswered if answered
                else MethodChallengeFailed).model_validate(envelope.body)
        ticket = self.find(UUID(body.ticket_id))
        try:
            if ticket is None or ticket.username.lower() != envelope.subject.lower():
                raise NotFound("no such ticket")
            evidence = (f"the person approved the push on {body.method} with the number the "
                        "agent read" if isinstance(body, MethodChallengeAnswered) else body.reason)
            ticket.conclude_proof(body.proof_id, METHOD_CHALLENGE, self.clock.now(), answered,
                                  actor="system", evidence=evidence)
        except Exception:  # expired, already concluded, ticket decided: nothing to record
            return self.save_processed(tracking)
        return self.save_processed(tracking, ticket)

    # --- which sign-in methods survive (verification's public events) -----------------------
    def note_surviving_method(self, username: str, method_id: str, method_type: str,
                              label: str) -> list[AccountFile]:
        """A registered authenticator app, noted on the account's file (to save with the
        caller's tracking)."""
        if method_type != APP_METHOD:
            return []
        file = self._file(username) or AccountFile(username=username)
        file.note_app_method(method_id, label)
        return [file]

    def on_method_change(self, envelope: EventEnvelope) -> bool:
        """DeviceActivated (an app can take pushes), MethodRemoved and MethodsRevoked (methods
        that no longer survive)."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        file = self._file(envelope.subject) or AccountFile(username=envelope.subject)
        if envelope.name == "DeviceActivated":
            file.note_push_device(DeviceActivated.model_validate(envelope.body).method_id)
        elif envelope.name == "MethodRemoved":
            file.methods_gone([MethodRemoved.model_validate(envelope.body).method_id])
        else:
            file.methods_gone(MethodsRevoked.model_validate(envelope.body).revoked)
        return self.save_processed(tracking, file)

    # --- what the console needs --------------------------------------------------------------
    def proof_view(self, ticket: Ticket, file: AccountFile | None) -> dict[str, Any]:
        privileged = bool(file and file.privileged)
        startable = [
            {"kind": kind, "label": PROOF_LABELS[kind], "points": self.policy.points.get(kind, 0)}
            for kind in (*NEEDS, METHOD_CHALLENGE)
            if self._startable(kind, file) and ticket.state in UNDECIDED
        ]
        return {
            "privileged": privileged,
            "policy": self.policy.describe(ticket.proven_kinds, privileged),
            "proofs": [self._with_number(ticket, fact) for fact in ticket.proof_facts(self.clock.now())],
            "startable_proofs": startable,
        }

    @staticmethod
    def _startable(kind: str, file: AccountFile | None) -> bool:
        if file is None:
            return False
        if kind == METHOD_CHALLENGE:
            return bool(file.push_methods)
        return kind in NEEDS and bool(file.on_file.get(NEEDS[kind][0]))

    def _with_number(self, ticket: Ticket, fact: dict[str, Any]) -> dict[str, Any]:
        """A running method challenge shows the agent the number to read to the person."""
        sealed = ticket.proofs[fact["proof_id"]].get("number_sealed")
        number = None
        if sealed and fact["state"] == "started":
            number = open_fact(self.settings, ticket.username, number_context(fact["proof_id"]),
                               sealed)
        return {**fact, "number": number}

    def _known_file(self, ticket: Ticket) -> AccountFile:
        file = self._file(ticket.username)
        if file is None or not file.known:
            raise NotFound(
                f"There is no portal account named {ticket.username!r}: "
                "check the username with the requester, or reject the ticket."
            )
        return file


def number_context(proof_id: str) -> str:
    """What a method challenge's number is sealed for: this proof of this account only."""
    return f"method-challenge:{proof_id}"
