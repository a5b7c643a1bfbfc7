"""What the services' commands share: their base, the shape of a username and of a token."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

USERNAME = Field(min_length=1, max_length=254)
TOKEN = Field(min_length=1, max_length=2048)


class Command(BaseModel):
    """A command a service accepts over the bus, validated at the edge.

    Its validator is built when the first such command arrives, not at import: a process
    builds only the commands it is sent, and starts sooner (docs/benchmarks.md, "Start-up").
    """

    model_config = ConfigDict(defer_build=True)


class Authenticated(Command):
    """A command from a person part-way through the guide: who, and the token a service issued."""

    username: str = USERNAME
    token: str = TOKEN
