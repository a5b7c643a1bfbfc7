"""Commands the consent service accepts over the bus."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Authenticated(BaseModel):
    """Consent is asked for after MFA: every command carries the MFA token."""

    username: str = Field(min_length=1, max_length=254)
    token: str = Field(min_length=1, max_length=2048)


class Present(Authenticated):
    pass


class Accept(Authenticated):
    version: int
    content_hash: str = Field(min_length=1, max_length=100)
    accepted: bool = Field(description='The "I Accept" box was ticked')
    confirmed: bool = Field(description='"Confirm" was chosen')


class Decline(Authenticated):
    version: int


class StatusQuery(BaseModel):
    username: str = Field(min_length=1, max_length=254)
