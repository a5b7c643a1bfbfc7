"""The credentials application: accounts, temporary passwords, sign-in, password changes."""

from __future__ import annotations

import hashlib
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.credentials.commands import ChangePassword, RegisterAccount, SignIn, UnlockAccount
from services.credentials.domain import LOCKED_MESSAGE, Account, AccountLockedError, refused
from services.credentials.passwords import (
    check_new_password,
    hash_password,
    min_length,
    new_temporary_password,
    verify_password,
)
from services.credentials.throttle import AttemptWindow, PhantomLocks
from shared.addresses import address_digest
from shared.application import ServiceApplication, normalise_username, same_user
from shared.contracts import EventEnvelope
from shared.errors import Conflict, InvalidRequest, Locked, NotAllowed, NotFound
from shared.masking import mask_email
from shared.tokens import issue_token, verify_token


@dataclass(frozen=True)
class Delivery:
    """A temporary password to mail. It exists only in memory, between issuing and sending."""

    username: str
    email: str
    display_name: str
    password: str
    expires_at: datetime
    ticket_id: str | None

    def __repr__(self) -> str:  # never print the password
        return f"Delivery(username={self.username!r}, ticket_id={self.ticket_id!r})"


@dataclass(frozen=True)
class Notice:
    """A notification mail to send: what happened to the account, to its address on file."""

    intent_id: str
    username: str
    email: str
    display_name: str
    kind: str
    detail: str
    ticket_id: str | None


THROTTLED = "Too many sign-in attempts. Wait a minute and try again."


CHANGE_TOKEN_SECONDS = 600


def temporary_binding(account: Account) -> str:
    """Names the temporary password in force without revealing anything about it."""
    return hashlib.sha256((account.password_hash or "").encode()).hexdigest()[:32]


class CredentialsApplication(ServiceApplication):
    service = "credentials"
    system_events = frozenset(
        {
            "PasswordIssued", "TemporaryPasswordSent", "TemporaryPasswordDeliveryFailed",
            "AccountLocked", "NoticeIntended", "NoticeSent", "NoticeFailed",
        }
    )

    def __init__(self, settings: Any, env: dict[str, str] | None = None) -> None:
        super().__init__(settings, env)
        self.attempts = AttemptWindow(settings.signin_attempts_per_minute)
        self.phantoms = PhantomLocks()
        self._fresh: list[Notice] = []
        self._fresh_lock = threading.Lock()

    def take_fresh_notices(self) -> list[Notice]:
        """Notices whose intent this process recorded since the last call (each given once)."""
        with self._fresh_lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def _recorded(self, account: Account, *intents: str) -> None:
        with self._fresh_lock:
            self._fresh += [self._notice(account, i) for i in intents if i in account.pending_notices]

    def register_account(self, cmd: RegisterAccount) -> dict[str, Any]:
        if self._account(cmd.username) is not None:
            raise Conflict(f"An account named {cmd.username!r} already exists.")
        account = Account(
            username=cmd.username,
            email=str(cmd.email),
            display_name=cmd.display_name,
            role=cmd.role,
            actor="operator",
        )
        if cmd.password:
            self._check_rules(cmd.password, cmd.username)
            account.change_password(
                hash_password(cmd.password), reason="set when the account was provisioned",
                actor="operator",
            )
        self.save(account)
        return {"username": account.username, "role": account.role}

    # --- the reset policy --------------------------------------------------------------------
    def on_reset_approved(self, envelope: EventEnvelope) -> Delivery | None:
        """Issue a temporary password for an approved reset; mail it after this commits."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return None
        account = self._account(envelope.subject)
        if account is None:  # ticketing checks this; nothing to do but remember we saw it
            self.save_processed(tracking)
            return None
        delivery = self._issue(account, envelope.correlation_id)
        intent = f"{envelope.source}:{envelope.notification_id}"
        account.intend_notice(
            intent, "reset_approved", envelope.correlation_id, str(envelope.body.get("agent", ""))
        )
        if not self.save_processed(tracking, account):
            return None
        self._recorded(account, intent)
        return delivery

    def on_methods_changed(self, envelope: EventEnvelope) -> None:
        """MethodRegistered / MethodsRevoked upstream: tell the user's address on file."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return None
        account = self._account(envelope.subject)
        if envelope.name == "MethodsRevoked":
            kind, detail = "methods_revoked", ", ".join(envelope.body.get("revoked") or [])
            wanted = bool(envelope.body.get("revoked"))
        else:
            kind, detail = "method_registered", str(envelope.body.get("label", ""))
            wanted = True
        if account is None or not wanted:
            self.save_processed(tracking)
            return None
        intent = f"{envelope.source}:{envelope.notification_id}"
        account.intend_notice(intent, kind, envelope.correlation_id, detail)
        if self.save_processed(tracking, account):
            self._recorded(account, intent)

    def reissue_undelivered(self) -> list[Delivery]:
        """After a crash between issuing and sending, issue afresh: the old one never left."""
        deliveries = []
        for account_id in self.aggregate_ids(Account.AccountRegistered):  # type: ignore[attr-defined]
            account = self.repository.get(account_id)
            if account.delivery_pending:
                deliveries.append(self._issue(account, account.pending_ticket))
                self.save(account)
        return deliveries

    def unsent_notices(self) -> list[Notice]:
        """Notices whose intent was recorded but whose sending was never recorded."""
        notices = []
        for account_id in self.aggregate_ids(Account.AccountRegistered):  # type: ignore[attr-defined]
            account = self.repository.get(account_id)
            notices += [self._notice(account, intent) for intent in account.pending_notices]
        return notices

    def _notice(self, account: Account, intent: str) -> Notice:
        facts = account.pending_notices[intent]
        return Notice(
            intent, account.username, account.email, account.display_name, facts["kind"],
            facts.get("detail", ""), facts.get("ticket_id") or None,
        )

    def mark_notice(self, notice: Notice, error: str | None) -> None:
        account = self._existing(notice.username)
        if notice.intent_id not in account.pending_notices:
            return  # already recorded
        if error is None:
            account.mark_notice_sent(notice.intent_id)
        else:
            account.mark_notice_failed(notice.intent_id, error)
        self.save(account)

    def _issue(self, account: Account, ticket_id: str | None) -> Delivery:
        password = new_temporary_password()
        expires_at = datetime.now(UTC) + timedelta(hours=self.settings.temp_password_hours)
        account.issue_temporary_password(hash_password(password), expires_at, ticket_id)
        return Delivery(
            account.username, account.email, account.display_name, password, expires_at,
            ticket_id,
        )

    def mark_sent(self, delivery: Delivery) -> None:
        account = self._existing(delivery.username)
        account.mark_sent(delivery.ticket_id, mask_email(delivery.email))
        self.save(account)

    def mark_delivery_failed(self, delivery: Delivery, reason: str) -> None:
        account = self._existing(delivery.username)
        account.mark_delivery_failed(delivery.ticket_id, reason)
        self.save(account)

    # --- sign-in -----------------------------------------------------------------------------
    def sign_in(self, cmd: SignIn) -> dict[str, Any]:
        """One answer and the same work for unknown usernames, wrong passwords and locks."""
        s = self.settings
        key = normalise_username(cmd.username)
        if not self.attempts.allow(key):
            raise Locked(THROTTLED)
        now = datetime.now(UTC)
        account = self._account(cmd.username)
        if account is None:
            verify_password(None, cmd.password)  # the same work as for a real account
            if self.phantoms.locked(key, s.signin_lock_after):
                raise AccountLockedError(LOCKED_MESSAGE)
            self.phantoms.fail(key, s.signin_lock_after, s.signin_lock_minutes * 60)
            raise refused()
        if account.is_locked(now):
            verify_password(None, cmd.password)
            raise AccountLockedError(LOCKED_MESSAGE)
        if not verify_password(account.password_hash, cmd.password):
            self._fail(account, "wrong password", now)
            raise refused()
        try:
            account.check_temporary_unexpired(now)
        except Exception:
            self._fail(account, "temporary password expired", now)
            raise
        account.record_sign_in(temporary=account.temporary, actor=account.username)
        self.save(account)
        if account.temporary:
            return {
                "username": account.username,
                "must_change_password": True,
                "change_token": issue_token(
                    self.settings.token_key_bytes, account.username, "password_change",
                    ttl_seconds=CHANGE_TOKEN_SECONDS, bound_to=temporary_binding(account),
                ),
            }
        return {
            "username": account.username,
            "must_change_password": False,
            "token": issue_token(self.settings.token_key_bytes, account.username, "password"),
        }

    def _fail(self, account: Account, reason: str, now: datetime) -> None:
        account.record_failure(
            reason, now=now, lock_after=self.settings.signin_lock_after,
            lock_minutes=self.settings.signin_lock_minutes,
        )
        self.save(account)

    def unlock(self, cmd: UnlockAccount) -> dict[str, Any]:
        agent = self._account(cmd.agent)
        if agent is None or agent.role != "agent":
            raise NotAllowed(f"{cmd.agent!r} is not a help-desk agent.")
        if same_user(cmd.agent, cmd.username):
            raise NotAllowed("An agent cannot unlock their own account.")
        account = self._existing(cmd.username)
        account.unlock(agent.username, cmd.reason)
        self.save(account)
        return self.account_status(account.username)

    def change_password(self, cmd: ChangePassword) -> dict[str, Any]:
        if not self.attempts.allow(normalise_username(cmd.username)):
            raise Locked(THROTTLED)
        account = self._account(cmd.username)
        if account is None:
            verify_password(None, cmd.current_password or "")
            raise refused()
        now = datetime.now(UTC)
        if account.is_locked(now):
            verify_password(None, cmd.current_password or "")
            raise AccountLockedError(LOCKED_MESSAGE)
        if cmd.change_token is not None:
            self._check_change_token(account, cmd.change_token)
        elif not verify_password(account.password_hash, cmd.current_password or ""):
            self._fail(account, "wrong password", now)
            raise refused()
        account.check_temporary_unexpired(now)
        self._check_rules(cmd.new_password, account.username)
        if verify_password(account.password_hash, cmd.new_password):
            raise InvalidRequest("Choose a password different from the current one.")
        reason = "changed at first sign-in" if account.temporary else "changed by the user"
        account.change_password(hash_password(cmd.new_password), reason, actor=account.username)
        intent = f"password:{uuid.uuid4()}"
        account.intend_notice(intent, "password_changed", account.pending_ticket)
        self.save(account)
        self._recorded(account, intent)
        return {
            "username": account.username,
            "token": issue_token(self.settings.token_key_bytes, account.username, "password"),
        }

    def _check_change_token(self, account: Account, token: str) -> None:
        """Only for the temporary password that the sign-in which issued the token used."""
        if not account.temporary:
            raise refused()
        verify_token(
            self.settings.token_key_bytes, token, "password_change", account.username,
            bound_to=temporary_binding(account),
        )

    def account_status(self, username: str) -> dict[str, Any]:
        account = self._existing(username)
        return {
            "username": account.username,
            "role": account.role,
            "email": mask_email(account.email),
            "must_change_password": account.temporary,
            "locked": account.is_locked(),
            "locked_until": account.locked_until.isoformat()
            if account.is_locked() and account.locked_until else None,
            "delivery_pending": account.delivery_pending,
        }

    # --- contracts ---------------------------------------------------------------------------
    def extra_fields(self, event: Any) -> dict[str, Any]:
        if type(event).__name__ == "AccountRegistered":
            return {
                "email": mask_email(event.email),
                "email_digest": address_digest(self.settings, event.email),
            }
        return {}

    # --- helpers -----------------------------------------------------------------------------
    def _context(self) -> tuple[str, ...]:
        return (self.settings.portal_name, self.settings.organisation_name, "rekey")

    def _check_rules(self, password: str, username: str) -> None:
        check_new_password(
            password, username=username, context=self._context(),
            minimum=min_length(self.settings.mfa_always_required),
        )

    def _account(self, username: str) -> Account | None:
        try:
            return self.repository.get(Account.id_for(username))
        except AggregateNotFoundError:
            return None

    def _existing(self, username: str) -> Account:
        account = self._account(username)
        if account is None:
            raise NotFound(f"There is no account named {username!r}.")
        return account

