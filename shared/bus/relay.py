"""The outbox relay: a service's notification log, in order, onto JetStream.

The store is the source of truth and the notification log is the outbox. The relay publishes
each stored event with ``Nats-Msg-Id = <service>:<notification id>`` and waits for JetStream's
acknowledgements before it saves its position. A crash between the two re-publishes, and the
stream's duplicate window drops the copy.

A batch is pipelined: every publish of the batch is sent, in log order, before any ack is awaited
(``publish_async``), so a batch costs one round trip rather than one per event; the position is
saved only once every ack of the batch has come back. The relay is woken when its application
saves (``ServiceApplication.on_saved``); the poll is only a fallback for a save it was not told of
(another process writing the same store).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from eventsourcing.persistence import Notification
from nats.js import JetStreamContext

from shared import metrics
from shared.application import ServiceApplication
from shared.bus.signing import NkeySigner
from shared.concurrency import in_thread
from shared.contracts import EventEnvelope
from shared.health import Heartbeat
from shared.logs import Outage

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        app: ServiceApplication,
        js: JetStreamContext,
        *,
        batch: int = 200,
        poll_seconds: float = 2.0,
        ack_seconds: float = 5.0,
        after_publish: Callable[[int], Awaitable[None]] | None = None,
        signer: NkeySigner | None = None,
    ) -> None:
        self.app = app
        self.signer = signer
        self.js = js
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.ack_seconds = ack_seconds
        self.wake = asyncio.Event()
        self.published = 0
        self.read = 0  # notifications taken from the log to publish (an operator's/test's view)
        self._after_publish = after_publish  # a test seam: crash between publish and save
        # each pass, published or idle: readiness reads its age
        self.heartbeat = Heartbeat(metrics.LOOP_PROGRESS.labels(service=app.service, loop="relay"))
        self.outage = Outage(log, f"{app.service} relay")
        self._labels = {"service": app.service}

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            # Cleared before reading: a save committed while this pass reads sets it again,
            # so it is never missed until the next poll.
            self.wake.clear()
            try:
                sent = await self.relay_once()
            except Exception as exc:  # NATS or the store away: logged once, and once back
                self.outage.failed(exc)
                sent = 0
            else:
                self.outage.succeeded()
                self.heartbeat.beat()
            if sent == 0:
                if stopping.is_set():  # a stop sets ``stopping`` before it wakes the relay
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    async def relay_once(self) -> int:
        """Publish everything after the saved position; returns how many were read."""
        notifications, envelopes = await in_thread(self._read)
        if not notifications:
            metrics.RELAY_LAG.labels(**self._labels).set(0)
            return 0
        self.read += len(notifications)
        await self.publish_all([e for e in envelopes if e is not None])
        last = notifications[-1].id
        if self._after_publish is not None:
            await self._after_publish(last)
        await in_thread(self.app.save_relay_position, last)
        lag = 0 if len(notifications) < self.batch else await in_thread(self.app.max_notification_id) - last
        metrics.RELAY_LAG.labels(**self._labels).set(lag)
        return len(notifications)

    def _read(self) -> tuple[list[Notification], list[EventEnvelope | None]]:
        """The notifications after the saved position and their envelopes, in one call: each
        hop into a worker thread and back costs CPU (a relay pass once made three of them here;
        docs/benchmarks.md, "Where a guided reset's CPU goes")."""
        position = self.app.relay_position()
        notifications = self.app.recorder.select_notifications(position + 1, self.batch)
        return notifications, [self.app.envelope_to_publish(n) for n in notifications]

    async def publish_all(self, envelopes: list[EventEnvelope], *, republish_run: str | None = None) -> None:
        """Send them all in order, then wait for every ack; any failure fails the batch (its
        position is not saved, so it is published again and the duplicate window drops the
        copies of those that were stored). ``republish_run``: a repair run's copies, with
        message ids of their own (:mod:`shared.bus.republish`)."""
        acks = []
        try:
            for envelope in envelopes:
                subject, data = envelope.bus_subject, envelope.model_dump_json().encode()
                msg_id = envelope.msg_id + (f":republish:{republish_run}" if republish_run else "")
                headers = {"Nats-Msg-Id": msg_id}
                if self.signer is not None:
                    headers.update(self.signer.headers(subject, data))
                acks.append(await self.js.publish_async(subject, data, headers=headers))
            done = await asyncio.wait_for(asyncio.gather(*acks), self.ack_seconds)
        finally:
            for ack in acks:  # a failed batch leaves no future waiting (each holds a slot)
                ack.cancel()
        fresh = sum(1 for ack in done if not ack.duplicate)
        self.published += fresh
        metrics.RELAY_PUBLISHED.labels(**self._labels).inc(fresh)
