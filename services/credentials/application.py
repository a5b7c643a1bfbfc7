"""The credentials application: accounts, temporary passwords, sign-in, password changes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import Tracking

from services.credentials.commands import ChangePassword, RegisterAccount, SignIn
from services.credentials.domain import Account, refused
from services.credentials.passwords import (
    check_new_password,
    hash_password,
    new_temporary_password,
    verify_password,
)
from shared.application import ServiceApplication
from shared.contracts import EventEnvelope
from shared.errors import Conflict, InvalidRequest, NotFound
from shared.masking import mask_email
from shared.tokens import issue_token


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


class CredentialsApplication(ServiceApplication):
    service = "credentials"
    system_events = frozenset(
        {"PasswordIssued", "TemporaryPasswordSent", "TemporaryPasswordDeliveryFailed", "AccountLocked"}
    )

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
            check_new_password(cmd.password, username=cmd.username, context=self._context())
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
        return delivery if self.save_processed(tracking, account) else None

    def reissue_undelivered(self) -> list[Delivery]:
        """After a crash between issuing and sending, issue afresh: the old one never left."""
        deliveries = []
        for account_id in self.aggregate_ids(Account.AccountRegistered):  # type: ignore[attr-defined]
            account = self.repository.get(account_id)
            if account.delivery_pending:
                deliveries.append(self._issue(account, account.pending_ticket))
                self.save(account)
        return deliveries

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
        account = self._account(cmd.username)
        if account is None:
            verify_password(None, cmd.password)  # the same work as for a real account
            raise refused()
        account.check_not_locked()
        if not verify_password(account.password_hash, cmd.password):
            account.record_failure("wrong password")
            self.save(account)
            raise refused()
        try:
            account.check_temporary_unexpired(datetime.now(UTC))
        except Exception:
            account.record_failure("temporary password expired")
            self.save(account)
            raise
        account.record_sign_in(temporary=account.temporary, actor=account.username)
        self.save(account)
        if account.temporary:
            return {"username": account.username, "must_change_password": True}
        return {
            "username": account.username,
            "must_change_password": False,
            "token": issue_token(self.settings.token_key_bytes, account.username, "password"),
        }

    def change_password(self, cmd: ChangePassword) -> dict[str, Any]:
        account = self._account(cmd.username)
        if account is None:
            verify_password(None, cmd.current_password)
            raise refused()
        account.check_not_locked()
        if not verify_password(account.password_hash, cmd.current_password):
            account.record_failure("wrong password")
            self.save(account)
            raise refused()
        account.check_temporary_unexpired(datetime.now(UTC))
        check_new_password(cmd.new_password, username=account.username, context=self._context())
        if verify_password(account.password_hash, cmd.new_password):
            raise InvalidRequest("Choose a password different from the temporary one.")
        reason = "changed at first sign-in" if account.temporary else "changed by the user"
        account.change_password(hash_password(cmd.new_password), reason, actor=account.username)
        self.save(account)
        return {
            "username": account.username,
            "token": issue_token(self.settings.token_key_bytes, account.username, "password"),
        }

    def account_status(self, username: str) -> dict[str, Any]:
        account = self._existing(username)
        return {
            "username": account.username,
            "role": account.role,
            "email": mask_email(account.email),
            "must_change_password": account.temporary,
            "locked": account.locked,
            "delivery_pending": account.delivery_pending,
        }

    # --- contracts ---------------------------------------------------------------------------
    def extra_fields(self, event: Any) -> dict[str, Any]:
        if type(event).__name__ == "AccountRegistered":
            return {"email": mask_email(event.email)}
        return {}

    # --- helpers -----------------------------------------------------------------------------
    def _context(self) -> tuple[str, ...]:
        return (self.settings.portal_name, "rekey")

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

