"""The base every Rekey service application builds on.

Each service is an ``eventsourcing`` application with its own store. The store is a process
recorder, so events caused by an upstream event are recorded in one transaction with a tracking
record (upstream service, notification id): a redelivered upstream event changes nothing.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
    Repository,
)
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import (
    IntegrityError,
    MapperDeserialisationError,
    Notification,
    Recording,
    Tracking,
)

from shared import context, principals
from shared.clock import SYSTEM_CLOCK, Clock
from shared.contracts import EventEnvelope, contract_for
from shared.contracts.envelope import ActionContext, agent_of
from shared.errors import Unavailable
from shared.postgres import ensure_postgres_schema
from shared.settings import Settings
from shared.tokens import TokenKeys, check_not_before_reset, token_keys, verify_token

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


class ResetMark(UserAggregate):
    """When a user's last reset took effect, as this service learnt it: sign-ins (tokens,
    principals) issued before it no longer count here (``check_not_before_reset``). Every
    service keeps one per reset user in its own store; it is bookkeeping, never published."""

    @event("ResetMarkOpened")
    def __init__(self, username: str) -> None:
        self.username = username
        self.reset_at: datetime | None = None

    def note(self, at: datetime) -> None:
        """A reset that took effect at ``at`` (only ever moves forward)."""
        if self.reset_at is None or at > self.reset_at:
            self._noted(at=at)

    @event("ResetTookEffect")
    def _noted(self, at: datetime) -> None:
        self.reset_at = at


# The upstream events that tell a service a user's reset took effect: the approval (when the
# cancel window, if any, ended) and the temporary password that replaced the old one.
RESET_EVENTS = (("ticketing", "ResetApproved"), ("credentials", "PasswordIssued"))
# An application opened to read its store only (an auditor's check, history, retention report):
# it creates nothing, so a database role that can only read is enough.
READ_ONLY: dict[str, str] = {"CREATE_TABLE": "n"}
# The upstream events that end an agent's principals where agents act (ticketing), as a reset
# does: a second factor revoked, or the operator ending the agent's sessions.
AGENT_SESSION_ENDS = (("credentials", "AgentFactorRevoked"), ("credentials", "AgentSessionsEnded"))


def batchable(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Marks an upstream-event handler that only records (get, mutate, ``save_processed``; no
    effect after the commit), so a consumer may record it with others in one transaction."""
    handler.batchable = True  # type: ignore[attr-defined]
    return handler


class _Batch:
    """Upstream events being recorded together: their events, aggregates and tracking."""

    def __init__(self) -> None:
        self.processing = ProcessingEvent[UUID]()
        self.trackings: dict[tuple[str, int], Tracking] = {}


class _BatchRepository(Repository[UUID]):
    """Inside a batch, a handler sees what the batch's earlier handlers did (not yet stored)."""

    def __init__(self, pending: threading.local, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pending = pending

    def get(self, aggregate_id: UUID, *, version: int | None = None, **kwargs: Any) -> Any:
        batch: _Batch | None = getattr(self._pending, "batch", None)
        if batch is not None and version is None and aggregate_id in batch.processing.aggregates:
            return batch.processing.aggregates[aggregate_id]
        kwargs.setdefault("projector_func", replay)
        return super().get(aggregate_id, version=version, **kwargs)


def snapshot_fingerprint(classes: Iterable[type[Any]]) -> str | None:
    """A digest of the source of every Rekey module that defines the classes or their bases:
    the state a snapshot holds is only as valid as the code that took it. None (no snapshots)
    when a source cannot be read."""
    modules = sorted({base.__module__ for cls in classes for base in cls.__mro__
                      if base.__module__.split(".")[0] in ("services", "shared")})
    if not modules:
        return None
    digest = hashlib.sha256()
    for name in modules:
        try:
            digest.update(inspect.getsource(sys.modules[name]).encode())
        except (OSError, TypeError, KeyError):
            return None
    return digest.hexdigest()[:12]


def replay(aggregate: Any, domain_events: Iterable[Any]) -> Any:
    """An aggregate from its events: ``eventsourcing``'s ``project_aggregate`` without its
    ``assert isinstance(event, CanMutateProtocol)``, a runtime Protocol check that cost 23 us an
    event, which was most of a replay (every request replays its aggregate: docs/benchmarks.md).
    Our events are the aggregates' own ``@event`` classes, all with ``mutate``."""
    for domain_event in domain_events:
        aggregate = domain_event.mutate(aggregate)
    return aggregate


class ServiceApplication(Application[UUID]):
    """One service's application: its store, its public contract mapping, its tracking."""

    service: ClassVar[str] = ""
    log_section_size = 500

    def __init__(
        self, settings: Settings, env: dict[str, str] | None = None, *, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SYSTEM_CLOCK
        self.principals = principals.check_for(settings, self.clock)
        store_env = settings.store_env(self.service)
        store_env.update(env or {})
        # READ_ONLY (an auditor's reading): nothing is created, no schema, table or function,
        # so a role that can only read the stores is enough (and nothing can change them).
        self.creates_tables = store_env.get("CREATE_TABLE", "y") != "n"
        if settings.store == "postgres" and self.creates_tables:
            ensure_postgres_schema(settings, store_env["POSTGRES_SCHEMA"])
        self._subjects: dict[UUID, str] = {}
        # Told (in the saving thread) after each save: the runtime wakes its outbox relay.
        self.on_saved: list[Callable[[], None]] = []
        self._pending = threading.local()  # the batch a worker thread is recording, if any
        super().__init__(store_env)

    @cached_property
    def token_keys(self) -> TokenKeys:
        """Signs the sign-in steps this service runs; trusts every issuer's public keys."""
        return token_keys(self.settings, self.service, self.clock)

    @cached_property
    def idempotency(self) -> Any:
        """Replays the first answer to a retried command (:mod:`shared.idempotency`)."""
        from shared.idempotency import Idempotency

        return Idempotency(self)

    def agent(self, token: str | None) -> principals.Principal:
        """The signed-in agent a command acts for (credentials signed it); else a refusal.
        A principal issued before the agent's own account was last reset is refused too."""
        principal = self.principals.verify(token, "agent")
        check_not_before_reset(principal.issued_at, self.last_reset(principal.name))
        return principal

    def signed_in(self, token: str, stage: str, username: str, **checks: Any) -> str:
        """The username a sign-in token vouches for; one from before the user's last reset
        does not count (``checks``: ``verify_token``'s ``bound_to`` or ``max_age``, or the
        ``issued_after`` a caller already read: :meth:`last_reset` by default)."""
        if "issued_after" not in checks:
            checks["issued_after"] = self.last_reset(username)
        return verify_token(self.token_keys, token, stage, username, **checks)

    # --- resets: when a user's last reset took effect ---------------------------------------
    def last_reset(self, username: str) -> datetime | None:
        mark = self.find(ResetMark.id_for(username))
        return mark.reset_at if mark is not None else None

    def reset_mark(self, username: str, at: datetime | None = None) -> ResetMark:
        """The user's mark, moved to ``at`` (default: now on this service's clock); save it
        with whatever recorded or learnt of the reset."""
        mark = self.find(ResetMark.id_for(username)) or ResetMark(username=username)
        mark.note(at or self.clock.now())
        return mark

    @batchable
    def on_reset(self, envelope: EventEnvelope) -> bool:
        """An upstream ``RESET_EVENTS`` event: the user's sign-ins from before it no longer
        count here."""
        tracking = Tracking(envelope.source, envelope.notification_id)
        if self.is_processed(tracking):
            return False
        return self.save_processed(tracking, self.reset_mark_for(envelope))

    def reset_mark_for(self, envelope: EventEnvelope) -> ResetMark:
        """The mark for an upstream reset event: when it occurred (a late or replayed event
        keeps its own time), never later than this service's clock (a test's manual clock
        may stand behind the stores' timestamps)."""
        return self.reset_mark(envelope.subject, min(envelope.occurred_at, self.clock.now()))

    def construct_repository(self) -> Repository[UUID]:
        """Rekey's stores use no aggregate cache; the repository also sees a batch's pending
        aggregates (record_batch)."""
        return _BatchRepository(self._pending, event_store=self.events,
                                snapshot_store=self.snapshots)

    def construct_snapshot_store(self) -> Any:
        """Snapshots (only for the aggregates in ``snapshotting_intervals``) go through the
        same mapper as events: bound to their place, sealed with the user's data key. They
        are a cache: kept in a table named after the code that took them
        (:func:`snapshot_fingerprint`), so a snapshot of an aggregate whose class has changed
        since is never read (the new code starts an empty table; old ones may be dropped).
        A read-only opening (an auditor) replays events only."""
        fingerprint = snapshot_fingerprint(self.snapshotting_intervals)
        if not self.creates_tables or fingerprint is None:
            return None
        recorder = self.factory.aggregate_recorder(purpose=f"snapshots_{fingerprint}")
        return self.factory.event_store(mapper=self.mapper, recorder=recorder)

    def construct_recorder(self) -> Any:
        recorder = self.factory.process_recorder()
        if hasattr(recorder, "data_keys"):  # shared.recorders: writes new keys with the events
            recorder.data_keys = self.data_keys
        return recorder

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        """Every event saved carries the context of the action that made it (shared.context);
        a data key or owner row its sealing made is written in the same transaction."""
        for recorded in processing_event.events:
            context.stamp(recorded)
        if self.data_keys is None:
            return super()._record(processing_event)
        with self.data_keys.staging():
            return super()._record(processing_event)

    def construct_mapper(self) -> Any:
        """Rows bound to their place (:mod:`shared.binding`) when the service has its evidence
        key; the plain mapper on a system without bus keys."""
        from shared.binding import BindingMapper
        from shared.evidence_keys import service_row_key

        key = service_row_key(self.settings, self.service)
        if key is None:
            return super().construct_mapper()
        return BindingMapper(
            self.construct_transcoder(), compressor=self.factory.compressor(),
            cipher=self.factory.cipher(), key=key,
            accept_unbound=self.settings.unbound_rows == "accept", data_keys=self.data_keys)

    @cached_property
    def data_keys(self) -> Any:
        """This service's per-user data keys (shared.data_keys), or None without a vault key."""
        if not self.settings.vault_key.get_secret_value():
            return None
        from shared.data_keys import DataKeys

        return DataKeys(self.settings, self.service, lambda: self.recorder.datastore,
                        create=self.creates_tables)

    def close(self) -> None:
        if self.__dict__.get("data_keys") is not None:
            self.data_keys.close()
        super().close()

    def erase_user(self, username: str, actor: str) -> dict[str, Any]:
        """Destroy the user's data key here (their stored events become unreadable for good)
        and record the erasure (no personal data in it)."""
        from shared.erasure import ErasureRecord

        if self.data_keys is None:
            raise Unavailable(f"{self.service} has no vault key: no data keys to erase")
        key_id = self.data_keys.erase(username, self.clock.now())
        record = self.find(ErasureRecord.id_for(key_id)) or ErasureRecord(key_id=str(key_id))
        record.record(actor=actor)
        self.save(record)
        return {"service": self.service, "key_id": str(key_id), "erased_at": str(record.erased_at)}

    def readable(self, aggregate_ids: Iterable[UUID]) -> Iterator[Any]:
        """Each of these aggregates that reads; one whose stored rows fail their check
        (:mod:`shared.binding`) is logged and skipped, so a tampered row stops only the requests
        that need it, never a sweep over everyone (`rekey audit verify` names the row)."""
        for aggregate_id in aggregate_ids:
            try:
                yield self.repository.get(aggregate_id)
            except MapperDeserialisationError as exc:
                level = logging.INFO if type(exc).__name__ == "Erased" else logging.ERROR
                log.log(level, "skipped an unreadable aggregate: %s", exc)

    def find(self, aggregate_id: UUID) -> Any | None:
        """The aggregate, or None when it was never created (an account not registered yet)."""
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    # --- exactly-once processing of upstream events ----------------------------------------
    def is_processed(self, tracking: Tracking) -> bool:
        """Whether this upstream event was already recorded (multi-row tracking table)."""
        batch: _Batch | None = getattr(self._pending, "batch", None)
        if batch is not None and _key(tracking) in batch.trackings:
            return True
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
        batch: _Batch | None = getattr(self._pending, "batch", None)
        if batch is not None:  # recorded with the rest of the batch (record_batch)
            if _key(tracking) in batch.trackings:
                return False
            first = len(batch.processing.events)
            batch.processing.collect_events(*aggregates)
            for recorded in batch.processing.events[first:]:
                context.stamp(recorded)  # this upstream event's context, not the batch's
            batch.trackings[_key(tracking)] = tracking
            return True
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

    def record_batch(self, handlers: list[Callable[[], Any]]) -> None:
        """Run ``batchable`` handlers, then record all they saved in one transaction: their
        events and every tracking record together, so all of them count or none does.

        A conflict (``IntegrityError``) or any error records nothing: ``in_thread`` runs the
        whole batch again from the store, or the consumer falls back to one at a time."""
        batch = _Batch()
        self._pending.batch = batch
        try:
            for handle in handlers:
                handle()
        finally:
            self._pending.batch = None
        if not batch.trackings:
            return
        *more, last = batch.trackings.values()
        batch.processing.tracking = last
        batch.processing.saved_kwargs["more_tracking"] = more
        self._notify(self._record(batch.processing))

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        """After a commit: whoever waits for new events (the relay) hears of it at once."""
        super()._notify(recordings)
        if recordings:
            for listener in self.on_saved:
                listener()

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
        stamped = event.__dict__.get("_context")
        action = ActionContext.model_validate(stamped) if stamped else None
        return EventEnvelope(
            event_id=uuid5(REKEY_NAMESPACE, f"{event.originator_id}:{event.originator_version}"),
            name=name,
            schema_version=body_cls.schema_version,
            occurred_at=event.timestamp,
            source=self.service,
            notification_id=notification.id,
            subject=subject,
            correlation_id=self.correlation_of(event, fields),
            causation_id=action.causation_id if action else None,
            actor=str(actor),
            context=action,
            body=body.model_dump(mode="json"),
        )

    def envelope_to_publish(self, notification: Notification) -> EventEnvelope | None:
        """What the relay and a republish put on the stream for one stored event: its public
        event, or None when it has none or its user was erased (never published again)."""
        from shared.data_keys import Erased

        try:
            return self.envelope_for(notification)
        except Erased:
            log.info("%s notification %s: its user was erased, not published", self.service,
                     notification.id)
            return None

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

    def history(self, username: str) -> list[EventEnvelope]:
        """The events about the user, and those the user did as an agent (approvals...)."""
        wanted = normalise_username(username)
        return [e for e in self.envelopes() if e.subject.lower() == wanted or agent_of(e) == wanted]

    # --- positions over this application's own log (the relay's, the sweeps') --------------
    def position(self, name: str) -> int:
        """How far ``name`` has got through this application's notifications (0: not begun);
        kept as tracking records, as a follower of another application keeps its own."""
        return self.recorder.max_tracking_id(name) or 0  # type: ignore[attr-defined]

    def save_position(self, name: str, notification_id: int) -> None:
        try:
            self.recorder.insert_tracking(  # type: ignore[attr-defined]
                Tracking(name, notification_id)
            )
        except IntegrityError:  # saved already (another process, or a batch sent again)
            log.debug("%s position %s was already saved", name, notification_id)

    def relay_position(self) -> int:
        return self.position(RELAY_TRACKING_NAME)

    def save_relay_position(self, notification_id: int) -> None:
        self.save_position(RELAY_TRACKING_NAME, notification_id)

    def max_notification_id(self) -> int:
        return self.recorder.max_notification_id() or 0


def _key(tracking: Tracking) -> tuple[str, int]:
    return tracking.application_name, tracking.notification_id
