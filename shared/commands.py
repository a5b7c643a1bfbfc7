"""What the services' commands share: the shape of a username and of a bearer token."""

from __future__ import annotations

from pydantic import BaseModel, Field

USERNAME = Field(min_length=1, max_length=254)
TOKEN = Field(min_length=1, max_length=2048)


class Authenticated(BaseModel):
    """A command from a person part-way through the guide: who, and the token a service issued."""

    username: str = USERNAME
    token: str = TOKEN
