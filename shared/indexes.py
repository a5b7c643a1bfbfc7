"""Indexes instead of log scans, the ``eventsourcing`` way.

- :class:`AggregateLog`: an ``EventSourcedLog`` of the ids of every aggregate of one kind
  ("all tickets", "all accounts"), appended in the transaction that creates the aggregate, and
  read page by page without touching the rest of the notification log.
- A lookup by a natural key (a ticket's number) is an index aggregate whose id is the ``uuid5``
  of the key, as the library's content-management example indexes page slugs; see
  ``services/ticketing/domain.py: TicketNumber``.
- Stores written by an older version have no entries for their aggregates. At start-up,
  before anything else runs, the service asks :func:`unlogged` (read-only, cheap when nothing
  is missing) and saves what is missing with an :class:`IndexesBackfilled` record in one
  transaction (:func:`save_backfill`). Two processes starting at once: one saves, the other's
  save conflicts on the log and, run again, finds nothing missing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.application import Application, EventSourcedLog
from eventsourcing.domain import Aggregate, DomainEvent, event
from eventsourcing.utils import get_topic

from shared.application import REKEY_NAMESPACE
from shared.concurrency import in_thread

log = logging.getLogger(__name__)

PAGE = 500


class AggregateLogged(DomainEvent):
    """One entry of an :class:`AggregateLog` (private bookkeeping: no public contract)."""

    aggregate_id: UUID


class AggregateLog:
    """The ids of every aggregate of one kind, in the order they were created."""

    def __init__(self, app: Application[UUID], name: str) -> None:
        self.log = EventSourcedLog(app.events, uuid5(REKEY_NAMESPACE, f"log:{name}"), AggregateLogged)

    def entry(self, aggregate_id: UUID) -> AggregateLogged:
        """The next entry, to save with the aggregate (two at once conflict; the retry orders them)."""
        return self.log.trigger_event(aggregate_id=aggregate_id)

    def entries(self, aggregate_ids: Iterable[UUID]) -> list[AggregateLogged]:
        """Consecutive entries for several ids, to save together."""
        last = self.log.get_last()
        version = (last.originator_version + 1) if last else Aggregate.INITIAL_VERSION
        return [
            self.log.trigger_event(next_originator_version=version + i, aggregate_id=aggregate_id)
            for i, aggregate_id in enumerate(aggregate_ids)
        ]

    def ids(self) -> Iterator[UUID]:
        return (aggregate_id for _, aggregate_id in self.since(0))

    def since(self, position: int) -> Iterator[tuple[int, UUID]]:
        """``(position, id)`` of the entries after ``position``, in order."""
        while True:
            page = list(self.log.get(gt=position, limit=PAGE))
            if not page:
                return
            for logged in page:
                yield logged.originator_version, logged.aggregate_id
            position = page[-1].originator_version


class IndexesBackfilled(Aggregate):
    """Records that a start-up indexed what an older version of the service had recorded."""

    @event("IndexesBackfilled")
    def __init__(self, service: str, entries: int) -> None:
        self.service = service
        self.entries = entries

    @property
    def subject(self) -> str:
        return ""


def unlogged(app: Application[UUID], log: AggregateLog, created: type) -> list[UUID]:
    """Aggregates created by ``created`` events that ``log`` lacks, in creation order.

    Read-only and cheap when none are missing: the log is appended with each creation from the
    first one on, or filled in creation order by a backfill before anything else runs, so it
    lacks nothing exactly when its first entry is the first such aggregate.
    """
    topic = get_topic(created)
    first = app.recorder.select_notifications(1, 1, topics=[topic])
    if not first:
        return []
    logged_first = log.log.get_first()
    if logged_first is not None and logged_first.aggregate_id == UUID(str(first[0].originator_id)):
        return []
    logged = set(log.ids())
    return [i for i in _created_ids(app, topic) if i not in logged]


def _created_ids(app: Application[UUID], topic: str) -> list[UUID]:
    """A whole-log scan: only a backfill, once per store, reads the log like this."""
    ids: list[UUID] = []
    position = 1
    while True:
        batch = app.recorder.select_notifications(position, PAGE, topics=[topic])
        if not batch:
            return ids
        ids.extend(UUID(str(n.originator_id)) for n in batch)
        position = batch[-1].id + 1


def save_backfill(app: Any, entries: Sequence[DomainEvent | Aggregate]) -> int:
    """Save the missing entries with an :class:`IndexesBackfilled` record, in one transaction."""
    if not entries:
        return 0
    app.save(*entries, IndexesBackfilled(service=app.service, entries=len(entries)))
    log.info("%s: indexed %s entries recorded before the indexes existed", app.service, len(entries))
    return len(entries)


def backfill(run: Callable[[], int]) -> Callable[[], Awaitable[None]]:
    """A start-up step running an application's ``backfill_indexes`` before any other work."""

    async def step() -> None:
        await in_thread(run)

    return step
