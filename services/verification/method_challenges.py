"""Help-desk method challenges: a push to an authenticator app the user still has.

Ticketing records ``ProofStarted`` (kind ``method_challenge``) with the number its agent reads
to the person, sealed for that proof (shared/sealed.py). We push to the user's surviving
authenticator app with an activated device (the default method first), and the device must be
answered with that number: an impostor on the phone has no device to type it on, and the
person cannot approve without hearing the number from the agent. The outcome is recorded as
``MethodChallengeAnswered`` or ``MethodChallengeFailed`` (denied, a wrong number, or no push
could be sent), which ticketing turns into the proof's outcome. A push left unanswered expires
with the proof (ticketing shows it expired); nothing is recorded here for it.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import Tracking

from services.verification.base import ProofRun, new_id
from services.verification.domain import APP, Challenge, Enrollment, Method
from services.verification.methods_push import IDENTITY_PROOF, PushMethods
from shared.application import REKEY_NAMESPACE
from shared.contracts.ticketing import ProofStarted
from shared.errors import RekeyError
from shared.sealed import open_fact

PUSHED, ANSWERED, FAILED = "pushed", "answered", "failed"
OUTCOME_REASONS = {
    "denied": "the person denied the push on their device",
    "wrong": "the push was answered with a wrong number",
}


class MethodChallenge(ProofRun, Aggregate):
    """One push for one proof (id: ``uuid5`` of the push's challenge id)."""

    @event("MethodChallengeSent")
    def __init__(self, username: str, ticket_id: str, proof_id: str, challenge_id: str,
                 method_id: str | None, method: str) -> None:
        self.username, self.ticket_id, self.proof_id = username, ticket_id, proof_id
        self.challenge_id, self.method_id, self.method = challenge_id, method_id, method
        self.state = PUSHED

    @staticmethod
    def create_id(challenge_id: str) -> UUID:
        return uuid5(REKEY_NAMESPACE, f"method-challenge:{challenge_id}")

    @event("MethodChallengeFailed")
    def _failed(self, ticket_id: str, proof_id: str, reason: str) -> None:
        self.state = FAILED

    def conclude(self, outcome: str) -> None:
        """``approved`` answers the proof; ``denied``, ``wrong`` or a reason fails it."""
        if self.state != PUSHED:
            return
        if outcome == "approved":
            self._answered(ticket_id=self.ticket_id, proof_id=self.proof_id, method=self.method)
        else:
            self._failed(ticket_id=self.ticket_id, proof_id=self.proof_id,
                         reason=OUTCOME_REASONS.get(outcome, outcome))

    @event("MethodChallengeAnswered")
    def _answered(self, ticket_id: str, proof_id: str, method: str) -> None:
        self.state = ANSWERED


def surviving_push_method(enrollment: Enrollment) -> Method | None:
    """The user's authenticator app that can take a push: registered, not locked, with an
    activated device; the default method first."""
    usable = [m for m in enrollment.registered
              if m.method_type == APP and m.devices and not m.locked]
    usable.sort(key=lambda m: m.method_id != enrollment.default_method)
    return usable[0] if usable else None


class MethodChallengeMethods(PushMethods):
    def on_method_challenge_started(self, tracking: Tracking, username: str,
                                    body: ProofStarted) -> None:
        """Push to the surviving method with the proof's number; or fail the proof at once,
        saying why."""
        enrollment = self._enrollment(username)
        method = surviving_push_method(enrollment)
        challenge_id = new_id("c")
        challenge = MethodChallenge(
            username=username, ticket_id=body.ticket_id, proof_id=body.proof_id,
            challenge_id=challenge_id, method_id=method.method_id if method else None,
            method=method.label if method else "",
        )
        if method is None:
            challenge.conclude("no authenticator app with notifications survives on this account")
            self.save_processed(tracking, challenge)
            return
        number = open_fact(self.settings, username, f"method-challenge:{body.proof_id}",
                           body.number_sealed or "")
        try:
            self._push_challenge(
                enrollment, method, challenge_id, number, body.expires_at, purpose=IDENTITY_PROOF,
                application=f"{self.settings.organisation_name} help desk (identity check)",
                location="the help desk, on the phone with you",
            )
        except RekeyError as exc:  # too many pushes: the proof fails, saying why
            challenge.conclude(f"no push was sent: {exc}")
            self.save_processed(tracking, challenge)
            return
        self.save_processed(tracking, enrollment, challenge)

    def proof_outcome(self, challenge: Challenge, outcome: str) -> list[Any]:
        if challenge.purpose != IDENTITY_PROOF:
            return []
        found: MethodChallenge | None = self.find(MethodChallenge.create_id(challenge.challenge_id))
        if found is None:
            return []
        found.conclude(outcome)
        return [found]
