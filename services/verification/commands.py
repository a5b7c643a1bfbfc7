"""Commands the verification service accepts over the bus."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Authenticated(BaseModel):
    """Every verification command carries the token from the password step."""

    username: str = Field(min_length=1, max_length=254)
    token: str = Field(min_length=1, max_length=2048)


class StartAppRegistration(Authenticated):
    pass


class VerifyCode(Authenticated):
    method_id: str | None = Field(None, max_length=64, description="Default method if omitted")
    code: str = Field(min_length=1, max_length=16)


class Status(Authenticated):
    pass
