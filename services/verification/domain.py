"""A user's MFA enrolment: registered methods, pending registrations, challenges, default."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eventsourcing.domain import event

from shared.application import UserAggregate
from shared.errors import InvalidRequest, Locked, NotFound

APP = "authenticator_app"
METHOD_LABELS = {APP: "Microsoft Authenticator", "phone": "Phone"}
LOCK_AFTER_FAILURES = 5


class MethodLockedError(Locked):
    """Too many wrong codes in a row for this method."""


class UnknownMethod(NotFound):
    """No such method for this user."""


class CodeRejected(InvalidRequest):
    """The code was wrong, expired or already used."""


@dataclass
class Method:
    method_id: str
    method_type: str
    label: str
    secret_ref: str
    started_at: datetime
    registered: bool = False
    failures: int = 0
    locked: bool = False
    last_step: int = -1
    challenges: list[str] = field(default_factory=list)


class Enrollment(UserAggregate):
    @event("EnrollmentOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.methods: dict[str, Method] = {}
        self.default_method: str | None = None

    @property
    def registered(self) -> list[Method]:
        return [m for m in self.methods.values() if m.registered]

    def method(self, method_id: str) -> Method:
        found = self.methods.get(method_id)
        if found is None:
            raise UnknownMethod("That sign-in method is not set up for this account.")
        return found

    def check_usable(self, method: Method) -> None:
        if method.locked:
            raise MethodLockedError(
                "This method is locked after too many wrong codes. Call the help desk."
            )

    def revoke_before(self, approved_at: datetime, ticket_id: str | None) -> list[Method]:
        """Revoke every method set up before the reset was approved; returns them.

        Methods started after the approval are the user's new ones: the approval may reach
        this service after the user has already begun to set up a method.
        """
        old = [m for m in self.methods.values() if m.started_at <= approved_at]
        self._revoked(ticket_id=ticket_id, revoked=sorted(m.method_id for m in old))
        return old

    @event("MethodsRevoked")
    def _revoked(self, ticket_id: str | None, revoked: list[str]) -> None:
        for method_id in revoked:
            self.methods.pop(method_id, None)
        if self.default_method in revoked:
            self.default_method = None

    @event("MethodRegistrationStarted")
    def start_registration(
        self, method_id: str, method_type: str, secret_ref: str, started_at: datetime
    ) -> None:
        label = METHOD_LABELS.get(method_type, method_type)
        self.methods[method_id] = Method(method_id, method_type, label, secret_ref, started_at)

    @event("ChallengeIssued")
    def issue_challenge(
        self, challenge_id: str, method_id: str, method_type: str, purpose: str
    ) -> None:
        self.methods[method_id].challenges.append(challenge_id)

    def verify(self, method_id: str, challenge_id: str, step: int | None) -> bool:
        """Record the outcome of a code check (the matching time step, if any)."""
        method = self.method(method_id)
        self.check_usable(method)
        if step is None or step <= method.last_step:
            reason = "wrong code" if step is None else "code already used"
            self._challenge_failed(
                challenge_id=challenge_id, method_id=method_id, method_type=method.method_type,
                reason=reason, failures=method.failures + 1,
            )
            if self.methods[method_id].failures >= LOCK_AFTER_FAILURES:
                self._method_locked(method_id=method_id, method_type=method.method_type)
            return False
        self._challenge_verified(
            challenge_id=challenge_id, method_id=method_id, method_type=method.method_type,
            step=step,
        )
        if not method.registered:
            self._method_registered(
                method_id=method_id, method_type=method.method_type, label=method.label
            )
        if self.default_method is None:
            self._default_set(
                method_id=method_id, method_type=method.method_type, label=method.label
            )
        return True

    @event("ChallengeVerified")
    def _challenge_verified(
        self, challenge_id: str, method_id: str, method_type: str, step: int
    ) -> None:
        method = self.methods[method_id]
        method.failures = 0
        method.last_step = step

    @event("ChallengeFailed")
    def _challenge_failed(
        self, challenge_id: str, method_id: str, method_type: str, reason: str, failures: int
    ) -> None:
        self.methods[method_id].failures = failures

    @event("MethodLocked")
    def _method_locked(self, method_id: str, method_type: str) -> None:
        self.methods[method_id].locked = True

    @event("MethodRegistered")
    def _method_registered(self, method_id: str, method_type: str, label: str) -> None:
        self.methods[method_id].registered = True

    @event("DefaultMethodSet")
    def _default_set(self, method_id: str, method_type: str, label: str) -> None:
        self.default_method = method_id
