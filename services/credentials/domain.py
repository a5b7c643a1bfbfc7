"""A portal account: its password state, its temporary password's delivery, its sign-ins."""

from __future__ import annotations

from datetime import datetime

from eventsourcing.domain import event

from shared.application import UserAggregate
from shared.errors import AuthenticationFailed, Expired, Locked

LOCK_AFTER_FAILURES = 5


class TemporaryPasswordExpired(Expired):
    """The temporary password was not used in time."""


class AccountLockedError(Locked):
    """Too many failed sign-ins."""


class Account(UserAggregate):
    @event("AccountRegistered")
    def __init__(
        self, username: str, email: str, display_name: str, role: str, actor: str
    ) -> None:
        self.username = username
        self.email = email
        self.display_name = display_name
        self.role = role
        self.password_hash: str | None = None
        self.temporary = False
        self.expires_at: datetime | None = None
        self.pending_ticket: str | None = None
        self.delivery_pending = False
        self.failures = 0
        self.locked = False

    def check_not_locked(self) -> None:
        if self.locked:
            raise AccountLockedError(
                "Your account is locked after too many failed sign-ins. Call the help desk."
            )

    def check_temporary_unexpired(self, now: datetime) -> None:
        if self.temporary and self.expires_at is not None and now > self.expires_at:
            raise TemporaryPasswordExpired(
                "Your temporary password has expired. Ask the help desk for a new one."
            )

    @event("PasswordIssued")
    def issue_temporary_password(
        self, password_hash: str, expires_at: datetime, ticket_id: str | None
    ) -> None:
        """A reset: the old password stops working, the temporary one must be changed."""
        self.password_hash = password_hash
        self.temporary = True
        self.expires_at = expires_at
        self.pending_ticket = ticket_id
        self.delivery_pending = True
        self.failures = 0
        self.locked = False

    @event("TemporaryPasswordSent")
    def mark_sent(self, ticket_id: str | None, to: str) -> None:
        self.delivery_pending = False

    @event("TemporaryPasswordDeliveryFailed")
    def mark_delivery_failed(self, ticket_id: str | None, reason: str) -> None:
        self.delivery_pending = False

    @event("SignInSucceeded")
    def record_sign_in(self, temporary: bool, actor: str) -> None:
        self.failures = 0

    def record_failure(self, reason: str) -> None:
        self._sign_in_failed(reason=reason, failures=self.failures + 1, actor=self.username)
        if self.failures >= LOCK_AFTER_FAILURES and not self.locked:
            self._locked(failures=self.failures)

    @event("SignInFailed")
    def _sign_in_failed(self, reason: str, failures: int, actor: str) -> None:
        self.failures = failures

    @event("AccountLocked")
    def _locked(self, failures: int) -> None:
        self.locked = True

    @event("PasswordChanged")
    def change_password(self, password_hash: str, reason: str, actor: str) -> None:
        self.password_hash = password_hash
        self.temporary = False
        self.expires_at = None


def refused() -> AuthenticationFailed:
    """One answer for unknown users and wrong passwords alike."""
    return AuthenticationFailed("The username or password is incorrect.")
