"""The base every Rekey service application builds on.

Each service is an ``eventsourcing`` application with its own store. The store is a process
recorder, so events caused by an upstream event are recorded in one transaction with a tracking
record (upstream service, notification id): a redelivered upstream event changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Notification, Tracking
from eventsourcing.utils import get_topic

from shared.contracts import EventEnvelope, contract_for
from shared.settings import Settings

log = logging.getLogger(__name__)

RELAY_TRACKING_NAME = "__relay__"
REKEY_NAMESPACE = uuid5(NAMESPACE_URL, "https://rekey.dev/")


def normalise_username(username: str) -> str:
    """The one comparison form of a username: lookups and rules must agree on who is who."""
    return username.strip().lower()


def same_user(a: str, b: str) -> bool:
    return normalise_username(a) == normalise_username(b)


def user_aggregate_id(kind: str, username: str) -> UUID:
    """Deterministic id of a per-user aggregate, so a user's state is found without an index."""
    return uuid5(REKEY_NAMESPACE, f"{kind}:{normalise_username(username)}")


class UserAggregate(Aggregate):
    """An aggregate about one portal user, found by username; ``subject`` is that username."""

    @classmethod
    def create_id(cls, username: str) -> UUID:
        return user_aggregate_id(cls.__name__, username)

    @classmethod
    def id_for(cls, username: str) -> UUID:
        return cls.create_id(username)

    @property
    def subject(self) -> str:
        return self.username  # type: ignore[attr-defined,no-any-return]


class ServiceApplication(Application[UUID]):
    """One service's application: its store, its public contract mapping, its tracking."""

    service: ClassVar[str] = ""
    log_section_size = 500

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        store_env = settings.store_env(self.service)
        store_env.update(env or {})
        if settings.store == "postgres":
            ensure_postgres_schema(settings, store_env["POSTGRES_SCHEMA"])
        self._subjects: dict[UUID, str] = {}
        super().__init__(store_env)

    def construct_recorder(self) -> Any:
        return self.factory.process_recorder()

    # --- exactly-once processing of upstream events ----------------------------------------
    def is_processed(self, tracking: Tracking) -> bool:
        """Whether this upstream event was already recorded (multi-row tracking table)."""
        recorder = self.recorder
        if self.settings.store == "sqlite":
            with recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
                c.execute(
                    "SELECT 1 FROM tracking WHERE application_name=? AND notification_id=?",
                    (tracking.application_name, tracking.notification_id),
                )
                return c.fetchone() is not None
        with recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute(
                f"SELECT 1 FROM {self.service}.{recorder.tracking_table_name} "  # type: ignore[attr-defined]  # noqa: S608
                "WHERE application_name=%s AND notification_id=%s",
                (tracking.application_name, tracking.notification_id),
            )
            return c.fetchone() is not None

    def save_processed(self, tracking: Tracking, *aggregates: Aggregate | None) -> bool:
        """Record the aggregates' new events with the tracking record, atomically.

        Returns False when the tracking record already existed (a redelivery): nothing new is
        recorded then.
        """
        processing = ProcessingEvent[UUID](tracking)
        processing.collect_events(*aggregates)
        try:
            recordings = self._record(processing)
        except IntegrityError:
            if self.is_processed(tracking):
                return False
            raise
        self._notify(recordings)
        return True

    # --- public contracts ------------------------------------------------------------------
    def extra_fields(self, event: Any) -> dict[str, Any]:
        """Facts a contract needs that the stored event holds only implicitly (e.g. its id)."""
        return {}

    system_events: ClassVar[frozenset[str]] = frozenset()

    def default_actor(self, name: str, subject: str) -> str:
        """Events the system records on its own say so; the rest were the user's doing."""
        return "system" if name in self.system_events else subject

    def correlation_of(self, event: Any, fields: dict[str, Any]) -> str | None:
        ticket = fields.get("ticket_id")
        return str(ticket) if ticket else None

    def subject_of(self, event: Any) -> str:
        originator_id = event.originator_id
        subject = self._subjects.get(originator_id)
        if subject is None:
            username = getattr(event, "username", None)
            if username is None:
                aggregate = self.repository.get(originator_id, version=event.originator_version)
                username = aggregate.subject
            subject = str(username)
            self._subjects[originator_id] = subject
        return subject

    def envelope_for(self, notification: Notification) -> EventEnvelope | None:
        """The public event for one stored event, or None when it has no public contract."""
        event = self.mapper.to_domain_event(notification)
        name = type(event).__name__
        body_cls = contract_for(name)
        if body_cls is None:
            return None
        fields = {
            k: (str(v) if isinstance(v, UUID) else v)
            for k, v in event.__dict__.items()
            if not k.startswith("_")
        }
        fields.update(self.extra_fields(event))
        body = body_cls.model_validate(fields)
        subject = self.subject_of(event)
        actor = fields.get("actor") or fields.get("agent") or self.default_actor(name, subject)
        return EventEnvelope(
            event_id=uuid5(REKEY_NAMESPACE, f"{event.originator_id}:{event.originator_version}"),
            name=name,
            schema_version=body_cls.schema_version,
            occurred_at=event.timestamp,
            source=self.service,
            notification_id=notification.id,
            subject=subject,
            correlation_id=self.correlation_of(event, fields),
            actor=str(actor),
            body=body.model_dump(mode="json"),
        )

    def envelopes(self, start: int = 1, batch: int = 500) -> Iterator[EventEnvelope]:
        """Every public event of this service, replayed from the store in recorded order."""
        position = start
        while True:
            notifications = self.recorder.select_notifications(start=position, limit=batch)
            if not notifications:
                return
            for notification in notifications:
                envelope = self.envelope_for(notification)
                if envelope is not None:
                    yield envelope
            position = notifications[-1].id + 1

    def aggregate_ids(self, created: type) -> list[UUID]:
        """Ids of every aggregate whose creation event is of the given stored class."""
        topic = get_topic(created)
        ids: list[UUID] = []
        position = 1
        while True:
            batch = self.recorder.select_notifications(position, 500, topics=[topic])
            if not batch:
                return ids
            ids.extend(UUID(str(n.originator_id)) for n in batch)
            position = batch[-1].id + 1

    def history(self, username: str) -> list[EventEnvelope]:
        wanted = username.strip().lower()
        return [e for e in self.envelopes() if e.subject.lower() == wanted]

    # --- relay position --------------------------------------------------------------------
    def relay_position(self) -> int:
        return self.recorder.max_tracking_id(RELAY_TRACKING_NAME) or 0  # type: ignore[attr-defined]

    def save_relay_position(self, notification_id: int) -> None:
        try:
            self.recorder.insert_tracking(  # type: ignore[attr-defined]
                Tracking(RELAY_TRACKING_NAME, notification_id)
            )
        except IntegrityError:
            log.debug("relay position %s was already saved", notification_id)

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0


def ensure_postgres_schema(settings: Settings, schema: str) -> None:
    """Create the service's schema (and nothing else) if it is missing."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
