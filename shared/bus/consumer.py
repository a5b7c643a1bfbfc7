"""Durable pull consumers: upstream events in, with explicit ack after the effect is recorded.

The handler records its effect together with a tracking record, so acknowledging afterwards
gives an exactly-once effect: if the process dies after recording and before the ack, the
redelivered message finds its tracking record and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from shared.contracts import EventEnvelope
from shared.contracts.envelope import STREAM_NAME, subject_for

log = logging.getLogger(__name__)

EventHandler = Callable[[EventEnvelope], Awaitable[None]]


class EventConsumer:
    def __init__(
        self,
        js: JetStreamContext,
        durable: str,
        handlers: dict[tuple[str, str], EventHandler],
        *,
        ack_wait: float = 30.0,
        batch: int = 50,
        before_ack: Callable[[EventEnvelope], Awaitable[None]] | None = None,
    ) -> None:
        self.js = js
        self.durable = durable
        self.handlers = handlers
        self.ack_wait = ack_wait
        self.batch = batch
        self.processed = 0
        self._before_ack = before_ack  # a test seam: crash between commit and ack

    @property
    def subjects(self) -> list[str]:
        return [subject_for(source, name) for source, name in self.handlers]

    async def subscribe(self):
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            filter_subjects=self.subjects,
            max_ack_pending=1000,
        )
        try:
            await self.js.add_consumer(STREAM_NAME, config)
        except Exception:  # exists with the same config, or raced: fine
            log.debug("consumer %s already exists", self.durable)
        return await self.js.pull_subscribe_bind(self.durable, stream=STREAM_NAME)

    async def run(self, stopping: asyncio.Event) -> None:
        if not self.handlers:
            return
        subscription = await self.subscribe()
        try:
            await self._pull(subscription, stopping)
        finally:
            # A pull subscription left open would hold up the connection's drain.
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _pull(self, subscription, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                messages = await subscription.fetch(self.batch, timeout=1)
            except (NatsTimeoutError, TimeoutError):
                continue
            except Exception:
                if stopping.is_set():
                    return
                log.exception("fetch failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for message in messages:
                await self.handle(message)

    async def handle(self, message) -> None:
        try:
            envelope = EventEnvelope.model_validate_json(message.data)
        except ValidationError:
            log.error("dropping a malformed event on %s", message.subject)
            await message.term()
            return
        handler = self.handlers.get((envelope.source, envelope.name))
        if handler is None:
            await message.ack()
            return
        try:
            await handler(envelope)
        except Exception:
            log.exception("handling %s failed; it will be redelivered", envelope.msg_id)
            await message.nak(delay=1)
            return
        if self._before_ack is not None:
            await self._before_ack(envelope)
        await message.ack()
        self.processed += 1
