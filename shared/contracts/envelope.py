"""The envelope every published event travels in (schema version 1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

STREAM_NAME = "REKEY_EVENTS"
HEADS_STREAM = "REKEY_HEADS"  # the services' signed tree heads (rekey.heads.>), for the audit service
SUBJECT_PREFIX = "rekey.events"
AUDIT_FEED_PREFIX = "rekey.audit.feed"  # the audit service's live feed for a SIEM


def subject_for(source: str, name: str) -> str:
    """The JetStream subject of one event: ``rekey.events.<service>.<EventName>``."""
    return f"{SUBJECT_PREFIX}.{source}.{name}"


class ActionContext(BaseModel):
    """How the action behind an event reached the service (docs/audit.md, "Context")."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    channel: str | None = Field(None, description="portal, console, cli, mail, api, app or system")
    caller: str | None = Field(None, description="The bus identity that sent the command")
    principal: str | None = Field(None, description="Who was authenticated (a verified principal or token)")
    principal_kind: str | None = Field(None, description="agent, operator or user")
    session_id: str | None = Field(None, description="The agent's or portal session's reference")
    causation_id: UUID | None = Field(None, description="The upstream event a consumer acted on")


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
    context: ActionContext | None = Field(None, description="Channel, principal, session, cause")
    body: dict[str, Any]

    @property
    def bus_subject(self) -> str:
        return subject_for(self.source, self.name)

    @property
    def msg_id(self) -> str:
        """JetStream de-duplication id: one per stored event, stable across re-publishing."""
        return f"{self.source}:{self.notification_id}"


SYSTEM_ACTORS = frozenset({"system", "operator"})


def agent_of(envelope: EventEnvelope) -> str | None:
    """The person who acted on someone else's account: the agent who verified, approved,
    rejected or unlocked (or filed a request for a user); never the user or the system. An
    agent's own history lists these events beside the ones about their own account."""
    body_agent = envelope.body.get("agent")
    if body_agent:
        return str(body_agent).lower()
    actor = (envelope.actor or "").lower()
    if actor and actor not in SYSTEM_ACTORS and actor != envelope.subject.lower():
        return actor
    return None
