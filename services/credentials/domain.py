"""A portal account: its password state, its temporary password's delivery, its sign-ins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from eventsourcing.domain import event

from shared.application import UserAggregate
from shared.errors import AuthenticationFailed, Conflict, Expired, Locked

LOCK_AFTER_FAILURES = 5
LOCK_MINUTES = 15.0


LOCKED_MESSAGE = (
    "Too many failed sign-ins: sign-in is locked for a while. Try later or call the help desk."
)


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
        self.locked_until: datetime | None = None
        self.pending_notices: dict[str, dict[str, str]] = {}

    def is_locked(self, now: datetime | None = None) -> bool:
        """Locked, and the lock has not yet run out (a lock ends by itself at ``locked_until``)."""
        if not self.locked:
            return False
        return self.locked_until is None or (now or datetime.now(UTC)) < self.locked_until

    def check_not_locked(self, now: datetime | None = None) -> None:
        if self.is_locked(now):
            raise AccountLockedError(LOCKED_MESSAGE)

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
        self.locked_until = None

    @event("TemporaryPasswordSent")
    def mark_sent(self, ticket_id: str | None, to: str) -> None:
        self.delivery_pending = False

    @event("TemporaryPasswordDeliveryFailed")
    def mark_delivery_failed(self, ticket_id: str | None, reason: str) -> None:
        self.delivery_pending = False

    @event("SignInSucceeded")
    def record_sign_in(self, temporary: bool, actor: str) -> None:
        self.failures = 0

    def record_failure(
        self,
        reason: str,
        *,
        now: datetime | None = None,
        lock_after: int = LOCK_AFTER_FAILURES,
        lock_minutes: float = LOCK_MINUTES,
    ) -> None:
        """Count a failed sign-in; the ``lock_after``-th in a row locks for ``lock_minutes``.

        After a lock ran out by itself, counting starts again from zero.
        """
        now = now or datetime.now(UTC)
        lapsed = self.locked and not self.is_locked(now)
        self._sign_in_failed(
            reason=reason, failures=(0 if lapsed else self.failures) + 1, actor=self.username
        )
        if self.failures >= lock_after and (lapsed or not self.locked):
            self._locked(failures=self.failures, until=now + timedelta(minutes=lock_minutes))

    @event("SignInFailed")
    def _sign_in_failed(self, reason: str, failures: int, actor: str) -> None:
        self.failures = failures

    @event("AccountLocked")
    def _locked(self, failures: int, until: datetime | None = None) -> None:
        self.locked = True
        self.locked_until = until

    def unlock(self, agent: str, reason: str) -> None:
        if not self.locked:
            raise Conflict(f"The account {self.username!r} is not locked.")
        self._unlocked(agent=agent, reason=reason)

    @event("AccountUnlocked")
    def _unlocked(self, agent: str, reason: str) -> None:
        self.locked = False
        self.locked_until = None
        self.failures = 0

    # --- notifications: intent recorded, then sent (or failed) -----------------------------
    @event("NoticeIntended")
    def intend_notice(
        self, intent_id: str, kind: str, ticket_id: str | None = None, detail: str = ""
    ) -> None:
        self.pending_notices[intent_id] = {
            "kind": kind, "ticket_id": ticket_id or "", "detail": detail
        }

    @event("NoticeSent")
    def mark_notice_sent(self, intent_id: str) -> None:
        self.pending_notices.pop(intent_id, None)

    @event("NoticeFailed")
    def mark_notice_failed(self, intent_id: str, reason: str) -> None:
        self.pending_notices.pop(intent_id, None)

    @event("PasswordChanged")
    def change_password(self, password_hash: str, reason: str, actor: str) -> None:
        self.password_hash = password_hash
        self.temporary = False
        self.expires_at = None


def refused() -> AuthenticationFailed:
    """One answer for unknown users and wrong passwords alike."""
    return AuthenticationFailed("The username or password is incorrect.")
