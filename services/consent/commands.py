"""Commands the consent service accepts over the bus."""

from __future__ import annotations

from pydantic import Field

import shared.commands


class Authenticated(shared.commands.Authenticated):
    """Consent is asked for after MFA: every command carries the MFA token."""


class Present(Authenticated):
    pass


class Accept(Authenticated):
    version: int
    content_hash: str = Field(min_length=1, max_length=100)
    accepted: bool = Field(description='The "I Accept" box was ticked')
    confirmed: bool = Field(description='"Confirm" was chosen')


class Decline(Authenticated):
    version: int


class StatusQuery(Authenticated):
    """Whether the user accepted the current agreement: asked with their MFA token, so the
    portal's key alone does not learn it (nor, from it, that an account exists)."""
