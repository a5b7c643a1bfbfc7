"""Durable pull consumers: upstream events in, with explicit ack after the effect is recorded.

The handler records its effect together with a tracking record, so acknowledging afterwards
gives an exactly-once effect: if the process dies after recording and before the ack, the
redelivered message finds its tracking record and changes nothing.

A fetch takes up to ``batch`` messages. Consecutive ones whose handlers only record
(``shared.application.batchable``, or every handler of a wiring that records runs itself:
``Wiring.record_together``) are recorded together in one transaction, one tracking record
each, then acked one by one; a handler with an effect after its own
commit (a mail, a text) runs alone, in log order. If a batch fails, each of its messages is
handled alone, so one bad message is redelivered without holding up the rest. The fetch's wait
is off the critical path: a pull returns as soon as a message arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from pydantic import ValidationError

from shared import metrics
from shared.bus.pulling import fetch_or_stop, stop_signal
from shared.bus.signing import ForgedEvent, SignatureCheck
from shared.contracts import EventEnvelope
from shared.contracts.envelope import STREAM_NAME, subject_for
from shared.health import Heartbeat
from shared.logs import Outage

log = logging.getLogger(__name__)

EventHandler = Callable[[EventEnvelope], Awaitable[None]]
# A run of messages recorded in one transaction: each envelope with its stream sequence.
Delivered = tuple[EventEnvelope, int | None]
BatchHandler = Callable[[list[Delivered]], Awaitable[None]]

FETCH_SECONDS = 1.0  # one pull request's wait; a stop cancels it rather than waiting it out

# The stream sequence of the message a handler is handling alone (``_dispatch``; a batch
# handler gets each message's with it; None for a message without JetStream metadata): the
# audit service keeps it to erase a user's messages later.
_STREAM_SEQUENCE: ContextVar[int | None] = ContextVar("stream_sequence", default=None)


def stream_sequence() -> int | None:
    """The stream sequence of the message being handled (inside a handler)."""
    return _STREAM_SEQUENCE.get()


def _sequence_of(message: Any) -> int | None:
    try:
        return int(message.metadata.sequence.stream)
    except Exception:  # a message without JetStream metadata
        return None


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
        check: SignatureCheck | None = None,
        batch_handler: BatchHandler | None = None,
        batchable: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.js = js
        self.batch_handler = batch_handler
        self.batchable = batchable if batch_handler is not None else frozenset()
        self.batches = 0  # transactions that recorded several messages (an operator's view)
        self.check = check
        self.refused = 0  # events refused as forged (an operator's/test's view)
        self.durable = durable
        self.handlers = handlers
        self.ack_wait = ack_wait
        self.batch = batch
        self.processed = 0
        self._before_ack = before_ack  # a test seam: crash between commit and ack
        # each fetch answered (events or none): readiness reads it
        self.heartbeat = Heartbeat(metrics.LOOP_PROGRESS.labels(service=durable, loop="consumer"))
        self.outage = Outage(log, f"{durable} consumer")
        self._labels = {"service": durable}

    def _check_origin(self, envelope: EventEnvelope, message: Any) -> None:
        """The subject names the owning service, and that service signed these bytes."""
        if message.subject != envelope.bus_subject:
            raise ForgedEvent(f"claims to be {envelope.bus_subject}")
        if self.check is not None:
            self.check.check(envelope.source, message.subject, message.data, message.headers)

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
        with stop_signal(stopping) as stopped:
            while not stopping.is_set():
                try:
                    messages = await fetch_or_stop(subscription, self.batch, FETCH_SECONDS,
                                                   stopped)
                except (NatsTimeoutError, TimeoutError):
                    if not self.js._nc.is_connected:  # no answer because NATS is away
                        self.outage.failed(ConnectionError("no connection to NATS"))
                        continue
                    self._fetched()
                    continue
                except Exception as exc:  # NATS away: logged once, and once when back
                    if stopping.is_set():
                        return
                    self.outage.failed(exc)
                    await asyncio.sleep(0.5)
                    continue
                if messages is None:  # stopping
                    return
                self._fetched()
                await self.handle_all(messages)

    async def handle_all(self, messages: list[Any]) -> None:
        together: list[tuple[Any, EventEnvelope]] = []
        for message in messages:
            envelope = await self._checked(message)
            if envelope is None:
                continue
            if (envelope.source, envelope.name) in self.batchable:
                together.append((message, envelope))
                continue
            await self._record_together(together)
            together = []
            await self._dispatch(message, envelope)
        await self._record_together(together)

    async def handle(self, message: Any) -> None:
        envelope = await self._checked(message)
        if envelope is not None:
            await self._dispatch(message, envelope)

    def _fetched(self) -> None:
        self.outage.succeeded()
        self.heartbeat.beat()

    def _observe(self, message: Any) -> None:
        with contextlib.suppress(Exception):  # a message without JetStream metadata: nothing
            meta = message.metadata
            metrics.CONSUMER_PENDING.labels(**self._labels).set(meta.num_pending)
            if meta.num_delivered > 1:
                metrics.CONSUMER_REDELIVERIES.labels(**self._labels).inc()

    async def _checked(self, message: Any) -> EventEnvelope | None:
        """The envelope, or None when the message was refused (and terminated)."""
        self._observe(message)
        try:
            envelope = EventEnvelope.model_validate_json(message.data)
            self._check_origin(envelope, message)
        except ValidationError:
            log.error("dropping a malformed event on %s", message.subject)
            await message.term()
            return None
        except ForgedEvent as exc:
            log.error("refused an event on %s that its service did not publish (%s)",
                      message.subject, exc)
            await message.term()
            self.refused += 1
            return None
        return envelope

    async def _record_together(self, together: list[tuple[Any, EventEnvelope]]) -> None:
        if len(together) < 2 or self.batch_handler is None:
            for message, envelope in together:
                await self._dispatch(message, envelope)
            return
        try:
            await self.batch_handler([(envelope, _sequence_of(message))
                                      for message, envelope in together])
        except Exception:
            log.warning("recording %d events together failed; one at a time", len(together),
                        exc_info=True)
            for message, envelope in together:
                await self._dispatch(message, envelope)
            return
        self.batches += 1
        for message, envelope in together:
            await self._acked(message, envelope)

    async def _dispatch(self, message: Any, envelope: EventEnvelope) -> None:
        handler = self.handlers.get((envelope.source, envelope.name))
        if handler is None:
            await message.ack()
            return
        token = _STREAM_SEQUENCE.set(_sequence_of(message))
        try:
            await handler(envelope)
        except Exception:
            log.exception("handling %s failed; it will be redelivered", envelope.msg_id)
            metrics.CONSUMER_FAILURES.labels(**self._labels).inc()
            await message.nak(delay=1)
            return
        finally:
            _STREAM_SEQUENCE.reset(token)
        await self._acked(message, envelope)

    async def _acked(self, message: Any, envelope: EventEnvelope) -> None:
        if self._before_ack is not None:
            await self._before_ack(envelope)
        await message.ack()
        self.processed += 1
        metrics.CONSUMER_HANDLED.labels(**self._labels).inc()
