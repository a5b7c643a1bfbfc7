"""The credentials application: accounts, temporary passwords, sign-in, password changes."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking

from services.credentials.agents import AgentFactors, Invitation
from services.credentials.commands import (
    ChangePassword,
    CheckSession,
    RegisterAccount,
    SignIn,
    UnlockAccount,
)
from services.credentials.domain import Account, DelaySchedule, refused
from services.credentials.passwords import (
    check_new_password,
    hash_password,
    min_length,
    new_temporary_password,
    same_password,
    verify_password,
)
from services.credentials.throttle import PhantomDelays
from shared.addresses import address_digest
from shared.application import ServiceApplication, normalise_username, same_user
from shared.clock import Clock
from shared.contracts import EventEnvelope
from shared.contracts.client import ClientContext, client_facts
from shared.contracts.ticketing import ResetApproved, ResetScheduled
from shared.contracts.verification import (
    DefaultMethodChanged,
    MethodRegistered,
    MethodRemoved,
    MethodsRevoked,
)
from shared.errors import Conflict, InvalidRequest, NotAllowed, NotFound, RateLimited
from shared.indexes import AggregateLog, save_backfill, unlogged
from shared.masking import mask_email, mask_phone
from shared.network import limit_key
from shared.phones import PhonePolicy, parse_phone
from shared.principals import PrincipalIssuer, issuer_for
from shared.rate_limits import SlidingWindow
from shared.sealed import seal_fact
from shared.secrets import Vault
from shared.sweeps import Sweeps
from shared.tokens import issue_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """A temporary password to mail. It exists only in memory, between issuing and sending."""

    username: str
    email: str
    display_name: str
    password: str
    expires_at: datetime
    ticket_id: str | None
    intent_id: str  # names this issued password (its hash's digest), not the password

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
    link: str | None = field(default=None, repr=False)  # a cancel link: a secret, never logged


THROTTLED = (
    "Too many sign-in attempts from your network address in a short time. Wait a minute, then "
    "try again."
)


# A method's change upstream (verification) -> the notice mailed to the address on file.
METHOD_NOTICES: dict[str, tuple[str, type[MethodRegistered | MethodRemoved | DefaultMethodChanged]]] = {
    "MethodRegistered": ("method_registered", MethodRegistered),
    "MethodRemoved": ("method_removed", MethodRemoved),
    "DefaultMethodChanged": ("default_method_changed", DefaultMethodChanged),
}
CHANGE_TOKEN_SECONDS = 600
CANCEL_LINK_GRACE_SECONDS = 24 * 3600


def temporary_binding(account: Account) -> str:
    """Names the temporary password in force without revealing anything about it."""
    return hashlib.sha256((account.password_hash or "").encode()).hexdigest()[:32]


class CredentialsApplication(AgentFactors, ServiceApplication):
    service = "credentials"
    # Every sign-in, right or wrong, is an event on the account, so an account's history grows
    # for as long as it is used: loading it replayed all of it (27 ms after 500 sign-ins, more
    # than the argon2 verification). A snapshot every 20 events bounds the replay. Snapshots
    # go through the same mapper as events (bound to their place, sealed with the user's data
    # key, so erasure reaches them); they are a cache, not evidence (docs/architecture.md).
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Account: 20}
    system_events = frozenset(
        {
            "PasswordIssued", "TemporaryPasswordSent", "TemporaryPasswordDeliveryFailed",
            "AccountLocked", "NoticeIntended", "NoticeSent", "NoticeFailed",
            "InvitationMailed", "InvitationDeliveryFailed",
        }
    )

    def __init__(
        self, settings: Any, env: dict[str, str] | None = None, *, clock: Clock | None = None
    ) -> None:
        super().__init__(settings, env, clock=clock)
        self.attempts = SlidingWindow(settings.signin_attempts_per_address, 60.0, clock=self.clock)
        self.phantoms = PhantomDelays(self.clock)
        # Called (from a worker thread) once the intent is saved; the wiring sends it.
        # Unwired, the intent waits for the next start-up sweep.
        self.send_temporary_password: Callable[[Delivery], None] = lambda delivery: None
        self.send_notice: Callable[[Notice], None] = lambda notice: None
        self.send_invitation: Callable[[Invitation], None] = lambda invitation: None
        self.all_accounts = AggregateLog(self, "accounts")
        self.sweeps = Sweeps(self, Account)
        self.vault = Vault(settings, self.service, create=self.creates_tables)  # agents' TOTP seeds

    def close(self) -> None:
        self.vault.close()
        super().close()

    @cached_property
    def vouch(self) -> PrincipalIssuer:
        """Signs agents' principals with credentials' key (read when first needed)."""
        return issuer_for(self.settings, "credentials", self.clock)

    def _recorded(self, account: Account, intent: str) -> None:
        self.send_notice(self._notice(account, intent))

    def register_account(self, cmd: RegisterAccount) -> dict[str, Any]:
        self.principals.verify(cmd.principal, "operator")  # only an operator provisions
        answered = self.idempotency.replay("register_account", cmd)
        if answered is not None:  # a retry: the first answer, nothing provisioned again
            return answered
        if self._account(cmd.username) is not None:
            raise Conflict(f"An account named {cmd.username!r} already exists.")
        phone = None
        if cmd.phone is not None:
            policy = PhonePolicy.from_settings(
                self.settings.phone_regions, self.settings.phone_number_types
            )
            phone = parse_phone(cmd.phone, cmd.phone_country, policy)
        account = Account(
            username=cmd.username,
            email=str(cmd.email),
            display_name=cmd.display_name,
            role=cmd.role,
            actor="operator",
            privileged=cmd.privileged,
            phone=phone,
            manager_email=str(cmd.manager_email) if cmd.manager_email else None,
        )
        if cmd.password:
            self._check_rules(cmd.password, cmd.username)
            account.change_password(
                hash_password(cmd.password), reason="set when the account was provisioned",
                actor="operator",
            )
        answer = {"username": account.username, "role": account.role,
                  "privileged": account.privileged}
        self.save(account, self.all_accounts.entry(account.id),
                  *self.idempotency.record("register_account", cmd, answer))
        return answer

    # --- the reset policy --------------------------------------------------------------------
    def on_reset_approved(self, envelope: EventEnvelope) -> None:
        """Issue a temporary password for an approved reset; mail it after this commits."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return
        account = self._account(envelope.subject)
        if account is None:  # ticketing checks this; nothing to do but remember we saw it
            self.save_processed(tracking)
            return
        delivery = self._issue(account, envelope.correlation_id)
        intent = f"{envelope.source}:{envelope.notification_id}"
        approved = ResetApproved.model_validate(envelope.body)
        account.intend_notice(intent, "reset_approved", envelope.correlation_id, approved.agent)
        # From the new password on, the old sign-ins (tokens, principals) no longer count.
        if self.save_processed(tracking, account, self.reset_mark(account.username)):
            self.send_temporary_password(delivery)
            self._recorded(account, intent)

    def on_reset_scheduled(self, envelope: EventEnvelope) -> None:
        """A reset waits for its cancel window: tell the address on file, with a link to
        cancel it (minted when the mail is made, never stored)."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return
        account = self._account(envelope.subject)
        if account is None:
            self.save_processed(tracking)
            return
        scheduled = ResetScheduled.model_validate(envelope.body)
        intent = f"{envelope.source}:{envelope.notification_id}"
        account.intend_notice(intent, "reset_scheduled", scheduled.ticket_id,
                              scheduled.effective_at.isoformat())
        if self.save_processed(tracking, account):
            self._recorded(account, intent)

    def on_methods_changed(self, envelope: EventEnvelope) -> None:
        """MethodRegistered / MethodsRevoked / MethodRemoved / DefaultMethodChanged upstream:
        tell the user's address on file."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return None
        account = self._account(envelope.subject)
        if envelope.name == "MethodsRevoked":
            revoked = MethodsRevoked.model_validate(envelope.body).revoked
            kind, detail, wanted = "methods_revoked", ", ".join(revoked), bool(revoked)
        else:
            kind, contract = METHOD_NOTICES[envelope.name]
            detail, wanted = contract.model_validate(envelope.body).label, True
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
        for account in self.readable(self.sweeps.touched()):
            if account.delivery_pending:
                log.info("re-issuing an undelivered temporary password for %s", account.username)
                deliveries.append(self._issue(account, account.pending_ticket))
                self.save(account)
        return deliveries

    def unsent_notices(self) -> list[Notice]:
        """Notices whose intent was recorded but whose sending was never recorded."""
        notices = []
        for account in self.readable(self.sweeps.touched()):
            notices += [self._notice(account, intent) for intent in account.pending_notices]
        return notices

    def _notice(self, account: Account, intent: str) -> Notice:
        facts = account.pending_notices[intent]
        ticket_id = facts.get("ticket_id") or None
        link = None
        if facts["kind"] == "reset_scheduled" and ticket_id:
            link = self._cancel_link(account.username, ticket_id, facts.get("detail", ""))
        return Notice(
            intent, account.username, account.email, account.display_name, facts["kind"],
            facts.get("detail", ""), ticket_id, link,
        )

    def _cancel_link(self, username: str, ticket_id: str, effective_at: str) -> str:
        """A signed link bound to the ticket, valid a day past the window's end (so a late
        click is told the reset already took effect rather than that the link is bad)."""
        try:
            ends = datetime.fromisoformat(effective_at)
        except ValueError:
            ends = self.clock.now()
        ttl = max(int((ends - self.clock.now()).total_seconds()), 0) + CANCEL_LINK_GRACE_SECONDS
        token = issue_token(self.token_keys, username, "reset_cancel", ttl, bound_to=ticket_id)
        return f"{self.settings.portal_base_url}/reset/cancel/{token}"

    def mark_notice(self, notice: Notice, error: str | None) -> None:
        account = self._existing(notice.username)
        if notice.intent_id not in account.pending_notices:
            return  # already recorded
        if error is None:
            account.mark_notice_sent(notice.intent_id)
        else:
            account.mark_notice_failed(notice.intent_id, error)
        self.save(account)

    def notice_pending(self, notice: Notice) -> bool:
        return notice.intent_id in self._existing(notice.username).pending_notices

    def _issue(self, account: Account, ticket_id: str | None) -> Delivery:
        password = new_temporary_password()
        expires_at = self.clock.now() + timedelta(hours=self.settings.temp_password_hours)
        account.issue_temporary_password(hash_password(password), expires_at, ticket_id)
        return Delivery(
            account.username, account.email, account.display_name, password, expires_at,
            ticket_id, temporary_binding(account),
        )

    def delivery_pending(self, delivery: Delivery) -> bool:
        """Still this password's delivery to record (not a newer one's, not already done)."""
        account = self._existing(delivery.username)
        return account.delivery_pending and temporary_binding(account) == delivery.intent_id

    def mark_delivered(self, delivery: Delivery, failure: str | None) -> None:
        """TemporaryPasswordSent, or TemporaryPasswordDeliveryFailed with the reason."""
        account = self._existing(delivery.username)
        if failure is None:
            account.mark_sent(delivery.ticket_id, mask_email(delivery.email))
        else:
            account.mark_delivery_failed(delivery.ticket_id, failure)
        self.save(account)

    # --- sign-in -----------------------------------------------------------------------------
    def sign_in(self, cmd: SignIn) -> dict[str, Any]:
        """One answer and the same work for unknown usernames and wrong passwords; the same
        delays for both. An attempt during a delay is answered "wait" and not checked."""
        self._check_address(cmd.client)
        now = self.clock.now()
        account = self._account(cmd.username)
        if account is None:
            key = normalise_username(cmd.username)
            while True:  # as a real account's attempt runs again after a conflict
                seen = self.phantoms.check(key)
                verify_password(None, cmd.password)  # the same work as for a real account
                if self.phantoms.fail(key, self.delay, seen):
                    raise refused()
        account.check_not_delayed(now)
        client = client_facts(cmd.client)
        if not verify_password(account.password_hash, cmd.password):
            self._fail(account, "wrong password", now, client)
            raise refused()
        try:
            account.check_temporary_unexpired(now)
        except Exception:
            self._fail(account, "temporary password expired", now, client)
            raise
        account.record_sign_in(temporary=account.temporary, actor=account.username, client=client)
        self.save(account)
        if account.temporary:
            return {
                "username": account.username,
                "must_change_password": True,
                "change_token": issue_token(
                    self.token_keys, account.username, "password_change",
                    ttl_seconds=CHANGE_TOKEN_SECONDS, bound_to=temporary_binding(account),
                ),
            }
        answer: dict[str, Any] = {
            "username": account.username,
            "must_change_password": False,
            "token": issue_token(self.token_keys, account.username, "password"),
        }
        if account.role == "agent":  # a second factor is due before any principal (agents.py)
            answer["second_factor"] = self.second_factor_due(account, cmd.channel)
        return answer

    @property
    def delay(self) -> DelaySchedule:
        return DelaySchedule.of(self.settings)

    def _check_address(self, client: ClientContext | None) -> None:
        """Attempts per client address per minute, whatever the username (web sign-ins)."""
        if client is not None and not self.attempts.allow(f"address:{limit_key(client.address)}"):
            raise RateLimited(THROTTLED)

    def _fail(self, account: Account, reason: str, now: datetime,
              client: dict[str, str] | None = None) -> None:
        account.record_failure(reason, now=now, delay=self.delay, client=client)
        self.save(account)

    def unlock(self, cmd: UnlockAccount) -> dict[str, Any]:
        """Reset an account's failed sign-ins and delay (recorded as ``AccountUnlocked``)."""
        name = self.agent(cmd.principal).name
        agent = self._account(name)
        if agent is None or agent.role != "agent":
            raise NotAllowed(f"{name!r} is not a help-desk agent.")
        if same_user(name, cmd.username):
            raise NotAllowed("An agent cannot reset their own account's sign-in delay.")
        account = self._existing(cmd.username)
        account.reset_delay(agent.username, cmd.reason)
        self.save(account)
        return self.account_status(account.username)

    def change_password(self, cmd: ChangePassword) -> dict[str, Any]:
        self._check_address(cmd.client)
        account = self._account(cmd.username)
        if account is None:
            verify_password(None, cmd.current_password or "")
            raise refused()
        now = self.clock.now()
        account.check_not_delayed(now)
        if cmd.change_token is not None:
            self._check_change_token(account, cmd.change_token)
        elif not verify_password(account.password_hash, cmd.current_password or ""):
            self._fail(account, "wrong password", now, client_facts(cmd.client))
            raise refused()
        account.check_temporary_unexpired(now)
        self._check_rules(cmd.new_password, account.username)
        # The current password, when the command carries it, was verified above: comparing the
        # two is the same answer without a second argon2id (a fifth per guided reset).
        if (verify_password(account.password_hash, cmd.new_password) if cmd.change_token is not None
                else same_password(cmd.new_password, cmd.current_password or "")):
            raise InvalidRequest("Choose a password different from the current one.")
        reason = "changed at first sign-in" if account.temporary else "changed by the user"
        account.change_password(hash_password(cmd.new_password), reason, actor=account.username)
        intent = f"password:{uuid.uuid4()}"
        account.intend_notice(intent, "password_changed", account.pending_ticket)
        self.save(account)
        self._recorded(account, intent)
        return {
            "username": account.username,
            "token": issue_token(self.token_keys, account.username, "password"),
        }

    def session_check(self, cmd: CheckSession) -> dict[str, Any]:
        """Whether a portal session's sign-in is still current: its first step's token (or an
        agent's principal) is genuine and was issued after the user's last reset. The portal
        asks at every request, so a reset ends the sessions that predate it."""
        if cmd.principal is not None:
            if not same_user(self.agent(cmd.principal).name, cmd.username):
                raise refused()
        else:
            self.signed_in(str(cmd.token), cmd.stage, cmd.username,
                           max_age=self.settings.portal_session_hours * 3600)
        return {"username": cmd.username, "current": True}

    def _check_change_token(self, account: Account, token: str) -> None:
        """Only for the temporary password that the sign-in which issued the token used."""
        if not account.temporary:
            raise refused()
        self.signed_in(token, "password_change", account.username,
                       bound_to=temporary_binding(account))

    def account_status(self, username: str) -> dict[str, Any]:
        account = self._existing(username)
        delayed = account.is_delayed(self.clock.now())
        return {
            "username": account.username,
            "role": account.role,
            "privileged": account.privileged or account.role == "agent",
            "email": mask_email(account.email),
            "phone": mask_phone(account.phone) if account.phone else None,
            "manager_email": mask_email(account.manager_email) if account.manager_email else None,
            "must_change_password": account.temporary,
            "failed_sign_ins": account.failures,
            "delayed_until": account.retry_at.isoformat() if delayed and account.retry_at else None,
            "delivery_pending": account.delivery_pending,
        }

    # --- indexes -----------------------------------------------------------------------------
    def backfill_indexes(self) -> int:
        """Log the accounts an older version registered without the accounts log."""
        accounts = unlogged(self, self.all_accounts, Account.AccountRegistered)  # type: ignore[attr-defined]
        return save_backfill(self, self.all_accounts.entries(accounts))

    # --- contracts ---------------------------------------------------------------------------
    def extra_fields(self, event: Any) -> dict[str, Any]:
        if type(event).__name__ == "AccountRegistered":
            return self._facts_on_file(event)
        return {}

    def _facts_on_file(self, event: Any) -> dict[str, Any]:
        """Masked, digested and sealed (shared/sealed.py): never a clear phone or address."""
        s, user = self.settings, event.username
        phone = getattr(event, "phone", None)
        manager = getattr(event, "manager_email", None)
        return {
            "email": mask_email(event.email),
            "email_digest": address_digest(s, event.email),
            "email_sealed": seal_fact(s, user, "email", event.email),
            "phone": mask_phone(phone) if phone else None,
            "phone_sealed": seal_fact(s, user, "phone", phone) if phone else None,
            "manager_email": mask_email(manager) if manager else None,
            "manager_email_digest": address_digest(s, manager) if manager else None,
            "manager_email_sealed": seal_fact(s, user, "manager_email", manager)
            if manager else None,
        }

    # --- helpers -----------------------------------------------------------------------------
    def _context(self) -> tuple[str, ...]:
        return (self.settings.portal_name, self.settings.organisation_name, "rekey")

    def _check_rules(self, password: str, username: str) -> None:
        check_new_password(
            password, username=username, context=self._context(),
            minimum=min_length(self.settings.mfa_always_required),
        )

    def _account(self, username: str) -> Account | None:
        return self.find(Account.id_for(username))

    def _existing(self, username: str) -> Account:
        account = self._account(username)
        if account is None:
            raise NotFound(f"There is no account named {username!r}.")
        return account

