"""The outbox relay: a service's notification log, in order, onto JetStream.

The store is the source of truth and the notification log is the outbox. The relay publishes
each stored event with ``Nats-Msg-Id = <service>:<notification id>`` and waits for JetStream's
acknowledgement before it saves its position. A crash between the two re-publishes, and the
stream's duplicate window drops the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.js import JetStreamContext

from shared.application import ServiceApplication
from shared.contracts import EventEnvelope

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(
        self,
        app: ServiceApplication,
        js: JetStreamContext,
        *,
        batch: int = 200,
        poll_seconds: float = 0.5,
        after_publish: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.js = js
        self.batch = batch
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        self.published = 0
        self._after_publish = after_publish  # a test seam: crash between publish and save

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                sent = await self.relay_once()
            except Exception:
                log.exception("relay failed; retrying")
                sent = 0
            if sent == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.poll_seconds)

    async def relay_once(self) -> int:
        """Publish everything after the saved position; returns how many were read."""
        position = await asyncio.to_thread(self.app.relay_position)
        notifications = await asyncio.to_thread(
            self.app.recorder.select_notifications, position + 1, self.batch
        )
        if not notifications:
            return 0
        envelopes = await asyncio.to_thread(
            lambda: [(n.id, self.app.envelope_for(n)) for n in notifications]
        )
        for _, envelope in envelopes:
            if envelope is not None:
                await self.publish(envelope)
        last = notifications[-1].id
        if self._after_publish is not None:
            await self._after_publish(last)
        await asyncio.to_thread(self.app.save_relay_position, last)
        return len(notifications)

    async def publish(self, envelope: EventEnvelope) -> None:
        ack = await self.js.publish(
            envelope.bus_subject,
            envelope.model_dump_json().encode(),
            headers={"Nats-Msg-Id": envelope.msg_id},
            timeout=5,
        )
        if not ack.duplicate:
            self.published += 1
