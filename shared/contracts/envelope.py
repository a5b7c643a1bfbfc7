"""The envelope every published event travels in (schema version 1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

STREAM_NAME = "REKEY_EVENTS"
SUBJECT_PREFIX = "rekey.events"


def subject_for(source: str, name: str) -> str:
    """The JetStream subject of one event: ``rekey.events.<service>.<EventName>``."""
    return f"{SUBJECT_PREFIX}.{source}.{name}"


class EventEnvelope(BaseModel):
    """Metadata common to all events; ``body`` holds the event's own versioned contract."""

    model_config = ConfigDict(frozen=True)

    envelope_version: int = 1
    event_id: UUID
    name: str
    schema_version: int
    occurred_at: datetime
    source: str = Field(description="Service whose event store recorded the event")
    notification_id: int = Field(description="Position in the source service's notification log")
    subject: str = Field(description="Portal username the event is about")
    correlation_id: str | None = Field(None, description="The reset ticket the event belongs to")
    causation_id: UUID | None = Field(None, description="Event that caused this one, if any")
    actor: str | None = Field(None, description="Who acted: a username, an agent or 'system'")
    body: dict[str, Any]

    @property
    def bus_subject(self) -> str:
        return subject_for(self.source, self.name)

    @property
    def msg_id(self) -> str:
        """JetStream de-duplication id: one per stored event, stable across re-publishing."""
        return f"{self.source}:{self.notification_id}"
