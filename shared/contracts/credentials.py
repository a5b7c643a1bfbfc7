"""Public events of the credentials service (schema version 1 unless a class says otherwise)."""

from __future__ import annotations

from datetime import datetime

from shared.contracts.base import EventBody


class AccountRegistered(EventBody):
    username: str
    email: str  # masked
    email_digest: str | None = None  # keyed hash of the normalised address on file
    display_name: str
    role: str


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


class SignInFailed(EventBody):
    reason: str
    failures: int


class AccountLocked(EventBody):
    failures: int
    until: datetime | None = None


class AccountUnlocked(EventBody):
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
