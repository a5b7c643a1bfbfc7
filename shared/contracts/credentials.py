"""Public events of the credentials service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from datetime import datetime

from shared.contracts.base import EventBody
from shared.contracts.client import ClientFacts


class AccountRegistered(EventBody):
    username: str
    email: str  # masked
    email_digest: str | None = None  # keyed hash of the normalised address on file
    display_name: str
    role: str
    # Facts on file (issue 10), absent from accounts registered before them. Clear values stay
    # in credentials' store; the bus sees masked forms, digests and sealed copies
    # (shared/sealed.py) that only the services holding REKEY_VAULT_KEY can open.
    privileged: bool = False  # flagged by the operator (agents count as privileged too)
    email_sealed: str | None = None
    phone: str | None = None  # masked
    phone_sealed: str | None = None
    manager_email: str | None = None  # masked
    manager_email_digest: str | None = None
    manager_email_sealed: str | None = None


class PasswordIssued(EventBody):
    ticket_id: str | None = None
    expires_at: datetime


class TemporaryPasswordSent(EventBody):
    ticket_id: str | None = None
    to: str  # masked


class TemporaryPasswordDeliveryFailed(EventBody):
    ticket_id: str | None = None
    reason: str


class PasswordChanged(EventBody):
    reason: str


class SignInSucceeded(EventBody):
    temporary: bool
    client: ClientFacts | None = None  # the web client (address, network, user agent), if any


class SignInFailed(EventBody):
    reason: str
    failures: int
    retry_at: datetime | None = None  # the next attempt is not checked before (the delay)
    client: ClientFacts | None = None


class AccountLocked(EventBody):
    """Recorded by versions that locked accounts; now replayed as a delay until ``until``."""

    failures: int
    until: datetime | None = None


class AccountUnlocked(EventBody):
    """The help desk reset the account's failed sign-ins and delay (``rekey accounts unlock``)."""

    agent: str
    reason: str


class NoticeIntended(EventBody):
    """A mail to the address on file telling the user what changed (kind: reset_approved,
    methods_revoked, method_registered, password_changed)."""

    intent_id: str
    kind: str
    detail: str = ""


class NoticeSent(EventBody):
    intent_id: str


class NoticeFailed(EventBody):
    intent_id: str
    reason: str


# --- help-desk agents: invitations and second factors (no secret, no digest of one) ----------
class AgentInvited(EventBody):
    """An operator invited an agent to set a password and enrol a second factor."""

    expires_at: datetime
    actor: str


class InvitationMailed(EventBody):
    to: str  # masked


class InvitationDeliveryFailed(EventBody):
    reason: str


class InvitationRedeemed(EventBody):
    factor_type: str  # passkey or totp


class AgentFactorEnrolled(EventBody):
    factor_id: str
    factor_type: str
    label: str


class PasskeyUsed(EventBody):
    """An agent's sign-in passed a passkey or security key (its signature counter)."""

    factor_id: str
    sign_count: int


class AuthenticatorCodeUsed(EventBody):
    """An agent's sign-in passed an authenticator code (that time step is now spent)."""

    factor_id: str


class AgentFactorRevoked(EventBody):
    """A second factor removed; the agent's principals from before it no longer count."""

    factor_id: str
    actor: str
    reason: str


class AgentSessionsEnded(EventBody):
    """The operator ended the agent's sign-ins; principals from before it no longer count."""

    actor: str
    reason: str
