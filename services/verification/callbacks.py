"""Help-desk call-backs: verification calls the phone on file for a ticket's identity proof.

Ticketing records ``ProofStarted`` (kind ``call_back``) with the phone on file sealed for us
(shared/sealed.py): the number comes from credentials' facts on file, never from the caller or
the agent. We place a call that asks the person to press #, through the same Twilio client and
signed webhooks as sign-in calls, and record ``CallBackAnswered`` or ``CallBackFailed``, which
ticketing turns into the proof's outcome.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking

from services.verification import presenter
from services.verification.base import ProofRun, VerificationBase
from services.verification.telephony import Outgoing
from shared.application import REKEY_NAMESPACE
from shared.contracts import EventEnvelope
from shared.contracts.ticketing import ProofStarted
from shared.sealed import open_fact

CALLING, ANSWERED, FAILED = "calling", "answered", "failed"
UNANSWERED = frozenset({"busy", "failed", "no-answer", "canceled"})  # Twilio's CallStatus


class CallBack(ProofRun, Aggregate):
    """One call to the phone on file for one proof (id: ``uuid5`` of the proof id)."""

    @event("CallBackRequested")
    def __init__(self, username: str, ticket_id: str, proof_id: str, to: str,
                 expires_at: datetime) -> None:
        self.username, self.ticket_id, self.proof_id = username, ticket_id, proof_id
        self.to, self.expires_at, self.state = to, expires_at, CALLING  # to: masked

    @staticmethod
    def create_id(proof_id: str) -> UUID:
        return uuid5(REKEY_NAMESPACE, f"call-back:{proof_id}")

    def alive(self, now: datetime) -> bool:
        return self.state == CALLING and now <= self.expires_at

    def answer(self, digits: str, now: datetime) -> bool | None:
        """# answers the proof; another key fails it; None: the call is over or expired."""
        if not self.alive(now):
            return None
        if digits == "#":
            self._answered(ticket_id=self.ticket_id, proof_id=self.proof_id, to=self.to)
            return True
        self._failed(ticket_id=self.ticket_id, proof_id=self.proof_id,
                     reason="the call was answered with another key than #")
        return False

    def fail(self, reason: str, now: datetime) -> None:
        if self.state == CALLING:
            self._failed(ticket_id=self.ticket_id, proof_id=self.proof_id, reason=reason)

    @event("CallBackAnswered")
    def _answered(self, ticket_id: str, proof_id: str, to: str) -> None:
        self.state = ANSWERED

    @event("CallBackFailed")
    def _failed(self, ticket_id: str, proof_id: str, reason: str) -> None:
        self.state = FAILED


class CallBackMethods(VerificationBase):
    def on_method_challenge_started(self, tracking: Tracking, username: str,
                                    body: ProofStarted) -> None:
        """Replaced by the help desk's method challenges (services/verification/method_challenges.py)."""
        self.save_processed(tracking)

    def on_proof_started(self, envelope: EventEnvelope) -> Outgoing | None:
        """A call-back proof: record the call, and return it to place once that is saved."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return None
        body = ProofStarted.model_validate(envelope.body)
        if body.kind == "method_challenge" and body.number_sealed:
            self.on_method_challenge_started(tracking, envelope.subject, body)
            return None
        if body.kind != "call_back" or not body.call_to_sealed:
            self.save_processed(tracking)
            return None
        username = envelope.subject
        e164 = open_fact(self.settings, username, "phone", body.call_to_sealed)
        call = CallBack(username=username, ticket_id=body.ticket_id, proof_id=body.proof_id,
                        to=body.destination, expires_at=body.expires_at)
        if not self.save_processed(tracking, call):
            return None
        base = self.settings.webhook_base_url
        query = f"u={quote(username)}&c={quote(body.proof_id)}"
        return Outgoing(username, body.proof_id, "", "call", e164, body.destination,
                        url=f"{base}/twilio/call-back/voice?{query}",
                        status_callback=f"{base}/twilio/call-back/status?{query}")

    def _call_back(self, proof_id: str, username: str) -> CallBack | None:
        call = self.find(CallBack.create_id(proof_id))
        if call is None or call.username.lower() != username.lower():
            return None
        return call  # type: ignore[no-any-return]

    def call_back_twiml(self, username: str, proof_id: str) -> str:
        call = self._call_back(proof_id, username)
        if call is None or not call.alive(self.clock.now()):
            return presenter.NO_LONGER_VALID_TWIML
        action = (f"{self.settings.webhook_base_url}/twilio/call-back/gather"
                  f"?u={quote(username)}&c={quote(proof_id)}")
        return presenter.call_back_twiml(action, self.settings.organisation_name)

    def call_back_gathered(self, username: str, proof_id: str, digits: str) -> str:
        """The key the person pressed: # proves, another key fails, a stale call changes nothing."""
        call = self._call_back(proof_id, username)
        outcomes = {True: presenter.CALL_BACK_THANKS_TWIML, False: presenter.NOT_POUND_TWIML}
        outcome = call.answer(digits, self.clock.now()) if call else None
        if call is not None and outcome is not None:
            self.save(call)
        return outcomes.get(outcome, presenter.NO_LONGER_VALID_TWIML)  # type: ignore[arg-type]

    def call_back_status(self, username: str, proof_id: str, status: str) -> None:
        """Twilio's status callback: an unanswered call fails the proof."""
        if status in UNANSWERED:
            self.call_back_not_placed(proof_id, username, f"the call was not answered ({status})")

    def call_back_not_placed(self, proof_id: str, username: str, reason: str) -> None:
        call = self._call_back(proof_id, username)
        if call is not None:
            call.fail(reason, self.clock.now())
            self.save(call)
