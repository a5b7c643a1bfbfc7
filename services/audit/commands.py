"""The audit service's queries, as typed commands (what auditors may ask over the bus)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import AwareDatetime, Field, field_validator

from services.audit.projection import Filters
from shared.commands import USERNAME, Command

EVENT_NAME = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$")


class AsOf(Command):
    username: str = USERNAME
    at: AwareDatetime

    @field_validator("at")
    @classmethod
    def in_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)


class EventFilter(Command):
    """Every given field narrows: a user, an agent, a ticket (id or RK- number), a time range
    [since, until) and event names."""

    user: str | None = Field(None, min_length=1, max_length=254)
    agent: str | None = Field(None, min_length=1, max_length=254)
    ticket: str | None = Field(None, min_length=1, max_length=64)
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    types: list[str] = Field(default_factory=list, max_length=50)
    upto: int | None = Field(None, ge=0, description="Only rows recorded up to this position")

    @field_validator("types")
    @classmethod
    def event_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.isalpha() or len(name) > 64:
                raise ValueError(f"{name!r} is not an event name")
        return value

    def filters(self) -> Filters:
        return Filters(user=self.user, agent=self.agent, ticket=self.ticket, since=self.since,
                       until=self.until, types=tuple(self.types))


class EventPage(EventFilter):
    after: int = Field(0, ge=0, description="Rows after this position (the last page's `last`)")
    upto: int = Field(ge=0)  # type: ignore[assignment]
    limit: int = Field(500, ge=1, le=1000)


class BundleManifest(EventFilter):
    upto: int = Field(ge=0)  # type: ignore[assignment]
