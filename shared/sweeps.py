"""Start-up sweeps that read what changed since the last one, not every aggregate ever saved.

A sweep finds intents recorded and never sent (a crash between "record the intent" and
"record sent", :mod:`shared.effects`). Each one loaded every aggregate of its kind at every
start: three sweeps over all accounts in credentials, four over all tickets in ticketing, so
a service's start (it answers nothing until its sweeps are done) grew with its whole history.

A checkpoint keeps a notification id ``C``: every intent recorded at or before ``C`` was closed
(sent, or its failure recorded) when a sweep last looked. It is a tracking record named
``__sweeps__`` over the application's own log, as the relay keeps its position (``__relay__``):
a position, not an event, so a start-up records nothing in the store. A sweep reads the
notifications after ``C`` (ids and topics only: nothing is decrypted), loads only the
aggregates of its kind those touched, and after the start-up's sweeps :meth:`Sweeps.advance`
moves ``C`` up to just before the first event since ``C`` of the first aggregate that still
holds an open intent, or to the end when none does; a running service moves it every few
minutes too (:meth:`Sweeps.keep_up`), so a start reads what changed since then. An intent
found open stays after ``C`` until a later sweep sees it closed, so a crash at any point
leaves it to be found again. The first start on a store without a checkpoint reads the whole
log once.

Only events that open an intent count as touches (the aggregate's ``intent_openers()``): an
intent open now was opened after ``C``, since every one opened at or before it was closed, so
an aggregate whose events since ``C`` opened none holds none and is not loaded. A first start
over 2000 accounts that were only registered loaded all 2000 once per sweep (0.75 s on SQLite,
3 s on PostgreSQL: docs/benchmarks.md); it now loads none.

This is a processing position over the application's own notification log (the library's
way to follow an application), not a lookup: lookups by key use index aggregates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from functools import cache
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.utils import resolve_topic

from shared.concurrency import in_thread

log = logging.getLogger(__name__)

PAGE = 1000
CHECKPOINT_NAME = "__sweeps__"  # the tracking records' application name
KEEP_UP_SECONDS = 300.0


@cache
def _event_class(topic: str) -> type | None:
    try:
        found = resolve_topic(topic)
    except Exception:  # a topic of a class this version no longer has: not ours to sweep
        return None
    return found if isinstance(found, type) else None


class Sweeps:
    """The aggregates of ``kind`` a service's sweeps must look at. ``kind`` says which of them
    still hold an intent not yet closed, of any sweep's kind (``holds_open_intents``), and which
    of its events open one (``intent_openers()``; without it, every event of the kind)."""

    def __init__(self, app: Any, kind: type[Aggregate]) -> None:
        self.app = app
        self.kind = kind
        openers = getattr(kind, "intent_openers", None)
        self.openers: tuple[type, ...] = openers() if openers else (kind.Event,)
        self.looked_at = 0  # aggregates the last sweep loaded (an operator's and a test's view)

    def touched(self) -> list[UUID]:
        """Aggregates of the kind that opened an intent after the checkpoint, in the order of
        the first such event."""
        ids = list(self._first_touches(self._position()))
        self.looked_at = len(ids)
        return [aggregate_id for aggregate_id, _ in ids]

    def advance(self) -> int:
        """Move the checkpoint past every aggregate now closed; the new position."""
        position = self._position()
        # The end first: an event saved while this runs (a standby taking over sweeps beside
        # a running consumer) is after it, and the checkpoint never passes what was not read.
        end = self.app.recorder.max_notification_id() or 0
        first = dict(self._first_touches(position, end))
        still_open = [first[a.id] for a in self.app.readable(first) if a.holds_open_intents]
        target = min(still_open) - 1 if still_open else end
        if target > position:
            self.app.save_position(CHECKPOINT_NAME, target)
            log.debug("%s: sweeps start after notification %s", self.app.service, target)
        return max(target, position)

    async def keep_up(self, stopping: asyncio.Event) -> None:
        """A background task: move the checkpoint every few minutes while the service runs."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), KEEP_UP_SECONDS)
                return
            try:
                await in_thread(self.advance)
            except Exception:  # the store away: the next start reads a little more
                log.warning("moving the sweep checkpoint failed; trying again later",
                            exc_info=True)

    def _position(self) -> int:
        return int(self.app.position(CHECKPOINT_NAME))

    def _first_touches(self, after: int, upto: int | None = None) -> Iterator[tuple[UUID, int]]:
        """``(aggregate id, its first intent-opening notification id after ``after``)``, in that
        order, up to notification ``upto`` (inclusive; None: the end)."""
        seen: set[UUID] = set()
        start = after + 1
        while upto is None or start <= upto:
            page = self.app.recorder.select_notifications(start, PAGE, stop=upto)
            if not page:
                return
            for notification in page:
                cls = _event_class(notification.topic)
                if cls is None or not issubclass(cls, self.openers):
                    continue
                aggregate_id = UUID(str(notification.originator_id))
                if aggregate_id not in seen:
                    seen.add(aggregate_id)
                    yield aggregate_id, notification.id
            start = page[-1].id + 1


def advanced(sweeps: Sweeps) -> Callable[[], Awaitable[None]]:
    """The start-up step after a service's sweeps: move its checkpoint."""

    async def step() -> None:
        await in_thread(sweeps.advance)

    return step
