"""A portal account: its password state, its temporary password's delivery, its sign-ins."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid5

from eventsourcing.domain import Aggregate, event

from shared.application import REKEY_NAMESPACE, UserAggregate
from shared.errors import AuthenticationFailed, Conflict, Expired, NotAllowed, NotFound, RateLimited
from shared.upcasting import gained


@dataclass(frozen=True)
class DelaySchedule:
    """How long the next sign-in attempt waits after failures in a row: nothing before
    ``after`` failures, then ``first`` seconds, doubling with each further failure, at most
    ``cap``. A delay slows guessing down; it never refuses the right password once it passed."""

    after: int = 5
    first: float = 1.0
    cap: float = 60.0

    def seconds(self, failures: int) -> float:
        if failures < self.after:
            return 0.0
        return min(self.first * 2 ** min(failures - self.after, 64), self.cap)

    def retry_at(self, failures: int, now: datetime) -> datetime | None:
        wait = self.seconds(failures)
        return now + timedelta(seconds=wait) if wait else None

    @classmethod
    def of(cls, settings: object) -> DelaySchedule:
        return cls(
            settings.signin_delay_after,  # type: ignore[attr-defined]
            settings.signin_delay_first_seconds,  # type: ignore[attr-defined]
            settings.signin_delay_max_seconds,  # type: ignore[attr-defined]
        )


class TemporaryPasswordExpired(Expired):
    """The temporary password was not used in time."""


class SignInDelayed(RateLimited):
    """Too many failed sign-ins in a row: the next attempt waits (it is not checked before)."""

    def __init__(self, wait_seconds: float) -> None:
        seconds = max(1, math.ceil(wait_seconds))
        unit = "second" if seconds == 1 else "seconds"
        super().__init__(
            f"Too many failed sign-ins for this username: wait {seconds} {unit}, then try again. "
            "Your password was not checked this time."
        )
        self.wait_seconds = seconds


def wait_until(retry_at: datetime | None, now: datetime) -> None:
    """Refuse an attempt made before ``retry_at`` with how long there is left to wait."""
    if retry_at is not None and now < retry_at:
        raise SignInDelayed((retry_at - now).total_seconds())


# --- an agent's invitation and second factors ------------------------------------------------
PASSKEY, TOTP = "passkey", "totp"
AMR = {PASSKEY: "hwk", TOTP: "otp"}  # RFC 8176: hardware-bound key, one-time password
RECENT_CHALLENGES = 20


class InvitationNotValid(AuthenticationFailed):
    """A forged or replaced invitation link."""


class InvitationSpent(Conflict):
    """The invitation was redeemed already."""


class InvitationExpired(Expired):
    """The invitation was not redeemed in time."""


class NotAnAgent(NotAllowed):
    """Invitations and second factors are for help-desk agents."""


class FactorNotFound(NotFound):
    """No such second factor on this agent."""


class SecondFactorRefused(AuthenticationFailed):
    """A wrong, replayed or unknown passkey assertion or authenticator code."""


NOT_VALID = ("This invitation link is not valid. Ask the operator who invited you for a new "
             "invitation.")
SPENT = "This invitation has already been used. Sign in, or ask an operator for a new invitation."
EXPIRED_INVITATION = "This invitation has expired. Ask an operator for a new invitation."
CODE_REFUSED = "The authenticator code is not correct, or was already used. Wait for the next code."
PASSKEY_REFUSED = "The passkey or security key was not accepted. Try again, or use an authenticator code."


class Account(UserAggregate):
    @event("AccountRegistered")
    def __init__(
        self, username: str, email: str, display_name: str, role: str, actor: str,
        privileged: bool = False, phone: str | None = None, manager_email: str | None = None,
    ) -> None:
        self.username = username
        self.email = email
        self.display_name = display_name
        self.role = role
        self.privileged = privileged
        self.phone = phone  # E.164, on file for call-backs; never published in clear
        self.manager_email = manager_email
        self.password_hash: str | None = None
        self.temporary = False
        self.expires_at: datetime | None = None
        self.pending_ticket: str | None = None
        self.delivery_pending = False
        self.failures = 0
        self.retry_at: datetime | None = None  # no attempt is checked before (the delay)
        self.pending_notices: dict[str, dict[str, str]] = {}
        # An agent's second factors (factor id -> facts; a TOTP seed is in the vault only),
        # the invitation in force (its secret's digest only) and the digests it replaced.
        self.factors: dict[str, dict[str, Any]] = {}
        self.invitation: dict[str, Any] | None = None
        self.spent_invitations: list[str] = []
        self.recent_challenges: list[str] = []

    @property
    def holds_open_intents(self) -> bool:
        """A mail recorded to send and not yet recorded sent or failed (what the start-up
        sweeps look for: a temporary password, a notice, an agent's invitation)."""
        return self.delivery_pending or bool(self.pending_notices) or bool(
            self.invitation and self.invitation["delivery_pending"])

    @classmethod
    def intent_openers(cls) -> tuple[type, ...]:
        """The events that open what :attr:`holds_open_intents` looks for: a start-up sweep
        loads only accounts with one of them since its checkpoint (``shared.sweeps``)."""
        return (cls.PasswordIssued, cls.NoticeIntended, cls.AgentInvited)

    def is_delayed(self, now: datetime) -> bool:
        return self.retry_at is not None and now < self.retry_at

    def check_not_delayed(self, now: datetime) -> None:
        wait_until(self.retry_at, now)

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
        self.retry_at = None

    @event("TemporaryPasswordSent")
    def mark_sent(self, ticket_id: str | None, to: str) -> None:
        self.delivery_pending = False

    @event("TemporaryPasswordDeliveryFailed")
    def mark_delivery_failed(self, ticket_id: str | None, reason: str) -> None:
        self.delivery_pending = False

    @event("SignInSucceeded")
    def record_sign_in(
        self, temporary: bool, actor: str, client: dict[str, str] | None = None
    ) -> None:
        """``client``: the web client it came from (address, network, user agent), if any."""
        self.failures = 0
        self.retry_at = None

    def record_failure(
        self, reason: str, *, now: datetime, delay: DelaySchedule,
        client: dict[str, str] | None = None,
    ) -> None:
        """Count a failed sign-in; from ``delay.after`` failures in a row on, the next attempt
        waits as ``delay`` says (recorded on the event as ``retry_at``)."""
        failures = self.failures + 1
        self._sign_in_failed(
            reason=reason, failures=failures, actor=self.username,
            retry_at=delay.retry_at(failures, now), client=client,
        )

    @event("SignInFailed")
    def _sign_in_failed(
        self, reason: str, failures: int, actor: str, retry_at: datetime | None = None,
        client: dict[str, str] | None = None,
    ) -> None:
        self.failures = failures
        self.retry_at = retry_at

    @event("AccountLocked")
    def _locked(self, failures: int, until: datetime | None = None) -> None:
        """Recorded by earlier versions (locks): replayed as a delay until the lock's end."""
        self.retry_at = until

    def reset_delay(self, agent: str, reason: str) -> None:
        """The help desk clears the failures and the delay (``rekey accounts unlock``)."""
        if not self.failures and self.retry_at is None:
            raise Conflict(f"The account {self.username!r} has no failed sign-ins or delay to reset.")
        self._unlocked(agent=agent, reason=reason)

    @event("AccountUnlocked")
    def _unlocked(self, agent: str, reason: str) -> None:
        self.retry_at = None
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

    # --- an agent: invitation, second factors ------------------------------------------------
    def check_agent(self) -> None:
        if self.role != "agent":
            raise NotAnAgent(f"{self.username!r} is not a help-desk agent.")

    def check_invitation(self, digest: str, now: datetime) -> None:
        """The invitation named by ``digest`` is this account's, unspent and unexpired."""
        if digest in self.spent_invitations:
            raise InvitationSpent(SPENT)
        if self.invitation is None or self.invitation["digest"] != digest:
            raise InvitationNotValid(NOT_VALID)
        if now >= self.invitation["expires_at"]:
            raise InvitationExpired(EXPIRED_INVITATION)

    @event("AgentInvited")
    def invite(self, digest: str, expires_at: datetime, actor: str) -> None:
        """A new invitation replaces any earlier one (which then no longer works)."""
        self.invitation = {"digest": digest, "expires_at": expires_at, "delivery_pending": True}

    @event("InvitationMailed")
    def mark_invitation_sent(self, to: str) -> None:
        if self.invitation is not None:
            self.invitation["delivery_pending"] = False

    @event("InvitationDeliveryFailed")
    def mark_invitation_failed(self, reason: str) -> None:
        if self.invitation is not None:
            self.invitation["delivery_pending"] = False

    @event("InvitationRedeemed")
    def redeem(self, digest: str, factor_type: str) -> None:
        self.spent_invitations.append(digest)
        self.invitation = None

    @event("AgentFactorEnrolled")
    def enrol_factor(self, factor_id: str, factor_type: str, label: str,
                     credential_id: str = "", public_key: str = "", sign_count: int = 0) -> None:
        """A passkey's credential id and public key (not secrets), or a TOTP factor whose seed
        is in the vault under ``factor_id``."""
        self.factors[factor_id] = {
            "factor_type": factor_type, "label": label, "credential_id": credential_id,
            "public_key": public_key, "sign_count": sign_count, "last_step": -1,
        }

    def factor_types(self) -> list[str]:
        return sorted({f["factor_type"] for f in self.factors.values()})

    def factors_of(self, factor_type: str) -> dict[str, dict[str, Any]]:
        return {i: f for i, f in self.factors.items() if f["factor_type"] == factor_type}

    def passkey_for(self, credential_id: str) -> str:
        for factor_id, facts in self.factors_of(PASSKEY).items():
            if facts["credential_id"] == credential_id:
                return factor_id
        raise SecondFactorRefused(PASSKEY_REFUSED)

    def check_challenge_unused(self, challenge_digest: str) -> None:
        if challenge_digest in self.recent_challenges:
            raise SecondFactorRefused(PASSKEY_REFUSED)

    def check_sign_count(self, factor_id: str, sign_count: int) -> None:
        """A counter that does not move forward means a cloned key (both zero: no counter)."""
        last = int(self.factors[factor_id]["sign_count"])
        if (sign_count or last) and sign_count <= last:
            raise SecondFactorRefused(PASSKEY_REFUSED)

    @event("PasskeyUsed")
    def use_passkey(self, factor_id: str, sign_count: int, challenge_digest: str) -> None:
        self.factors[factor_id]["sign_count"] = sign_count
        self.recent_challenges = [*self.recent_challenges, challenge_digest][-RECENT_CHALLENGES:]

    def check_step_unused(self, factor_id: str, step: int) -> None:
        """Each time step's code is accepted once (a code seen over a shoulder is spent)."""
        if step <= int(self.factors[factor_id]["last_step"]):
            raise SecondFactorRefused(CODE_REFUSED)

    @event("AuthenticatorCodeUsed")
    def use_code(self, factor_id: str, step: int) -> None:
        self.factors[factor_id]["last_step"] = step

    def check_factor(self, factor_id: str) -> None:
        if factor_id not in self.factors:
            raise FactorNotFound(f"{self.username!r} has no second factor {factor_id!r}.")

    @event("AgentFactorRevoked")
    def revoke_factor(self, factor_id: str, actor: str, reason: str) -> None:
        self.factors.pop(factor_id, None)

    @event("AgentSessionsEnded")
    def end_sessions(self, actor: str, reason: str) -> None:
        """Every principal issued before now stops counting (each service keeps the time)."""


class AgentInvitation(Aggregate):
    """Index: an invitation secret's digest -> the agent (id: ``uuid5`` of the digest), saved
    with the ``AgentInvited`` that it indexes."""

    create_id = staticmethod(lambda digest: uuid5(REKEY_NAMESPACE, f"agent-invitation:{digest}"))
    subject = property(lambda self: self.username)  # the agent's; the index has no public event

    @event("InvitationIndexed")
    def __init__(self, digest: str, username: str) -> None:
        self.digest, self.username = digest, username


def refused() -> AuthenticationFailed:
    """One answer for unknown users and wrong passwords alike."""
    return AuthenticationFailed("The username or password is incorrect.")


# Fields added since events were first stored (shared/upcasting.py).
gained(Account.AccountRegistered, 2, privileged=False, phone=None, manager_email=None)  # type: ignore[attr-defined]
gained(Account.SignInFailed, 2, retry_at=None, client=None)  # type: ignore[attr-defined]
gained(Account.SignInSucceeded, 2, client=None)  # type: ignore[attr-defined]
