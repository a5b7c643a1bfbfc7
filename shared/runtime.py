"""Runs one service process: bus connection, stream, relay, consumer, endpoints, shutdown.

Each service's ``bootstrap.build(settings)`` returns a :class:`Wiring`; this module is the only
place that turns it into a running process, so every service starts and stops the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import retry
from pydantic import BaseModel

from shared.application import ServiceApplication
from shared.bus.consumer import EventConsumer, EventHandler
from shared.bus.relay import OutboxRelay
from shared.bus.rpc import Endpoint, serve_endpoints
from shared.bus.stream import connect, ensure_stream
from shared.contracts.envelope import STREAM_NAME
from shared.settings import Settings

log = logging.getLogger(__name__)

BackgroundTask = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class Wiring:
    """Everything one service runs: its application and what the bus may ask of it."""

    name: str
    app: ServiceApplication
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    handlers: dict[tuple[str, str], EventHandler] = field(default_factory=dict)
    background: list[BackgroundTask] = field(default_factory=list)
    # Run to completion before the consumer and endpoints start (e.g. sweeps that must not
    # race fresh work).
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_close: list[Callable[[], None]] = field(default_factory=list)


CONFLICT_ATTEMPTS = 10


def in_thread(method: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """Adapt a synchronous application method (``eventsourcing`` is synchronous) to the loop.

    Every method is get-mutate-save, so when another writer saved the same aggregate first
    (optimistic concurrency: ``IntegrityError``), running it again from the start is correct.
    """
    retrying = retry(IntegrityError, max_attempts=CONFLICT_ATTEMPTS, wait=0.01)(method)

    async def handler(argument: Any) -> Any:
        return await asyncio.to_thread(retrying, argument)

    return handler


class NoArguments(BaseModel):
    pass


class HistoryQuery(BaseModel):
    username: str


class ServiceRuntime:
    def __init__(
        self,
        wiring: Wiring,
        settings: Settings,
        *,
        consumer_ack_wait: float = 30.0,
        relay_hook: Callable[[int], Awaitable[None]] | None = None,
        consumer_hook: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.wiring = wiring
        self.settings = settings
        self.stopping = asyncio.Event()
        self.consumer_ack_wait = consumer_ack_wait
        self._relay_hook = relay_hook
        self._consumer_hook = consumer_hook
        self.tasks: list[asyncio.Task[None]] = []
        self.nc: Any = None
        self.relay: OutboxRelay | None = None
        self.consumer: EventConsumer | None = None

    async def start(self) -> None:
        wiring = self.wiring
        self.nc = await connect(self.settings.nats_url, f"rekey-{wiring.name}")
        js = self.nc.jetstream()
        await ensure_stream(js, self.settings.stream_replicas)
        self.relay = OutboxRelay(wiring.app, js, after_publish=self._relay_hook)
        endpoints = {name: self._waking(ep) for name, ep in wiring.endpoints.items()}
        endpoints["history"] = Endpoint(HistoryQuery, self._history)
        endpoints["health"] = Endpoint(NoArguments, self._health)
        handlers = {key: self._waking_handler(h) for key, h in wiring.handlers.items()}
        self.consumer = EventConsumer(
            js,
            wiring.name,
            handlers,
            ack_wait=self.consumer_ack_wait,
            before_ack=self._consumer_hook,
        )
        for step in wiring.startup:
            await step()
        await serve_endpoints(self.nc, wiring.name, endpoints)
        await self.nc.flush()  # the server has our subscriptions before we say we are up
        runners: list[BackgroundTask] = [self.relay.run, self.consumer.run, *wiring.background]
        self.tasks = [asyncio.create_task(run(self.stopping)) for run in runners]
        log.info("%s service started", wiring.name)

    def _waking(self, endpoint: Endpoint) -> Endpoint:
        async def handler(command: Any) -> Any:
            try:
                return await endpoint.handler(command)
            finally:
                if self.relay is not None:
                    self.relay.wake.set()

        return Endpoint(endpoint.command, handler)

    def _waking_handler(self, handler: EventHandler) -> EventHandler:
        async def wrapped(envelope: Any) -> None:
            try:
                await handler(envelope)
            finally:
                if self.relay is not None:
                    self.relay.wake.set()

        return wrapped

    async def _history(self, query: HistoryQuery) -> list[dict[str, Any]]:
        events = await asyncio.to_thread(self.wiring.app.history, query.username)
        return [e.model_dump(mode="json") for e in events]

    async def _health(self, _: NoArguments) -> dict[str, Any]:
        """What an operator compares to find gaps: the log's end, the relay, the consumer."""
        app = self.wiring.app
        last = await asyncio.to_thread(app.max_notification_id)
        relayed = await asyncio.to_thread(app.relay_position)
        health: dict[str, Any] = {
            "service": self.wiring.name,
            "store": self.settings.store,
            "max_notification_id": last,
            "relay_position": relayed,
            "relay_lag": last - relayed,
            "consumer_pending": None,
            "consumer_unacked": None,
        }
        if self.wiring.handlers:
            with contextlib.suppress(Exception):
                info = await self.nc.jetstream().consumer_info(STREAM_NAME, self.wiring.name)
                health["consumer_pending"] = info.num_pending
                health["consumer_unacked"] = info.num_ack_pending
        return health

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Graceful: stop taking work, let in-flight work finish, then close the store.

        The loops see ``stopping`` within a second and return after their current step; a
        store call already running in a worker thread is waited for, never cut off, because
        closing a store under a running query is undefined behaviour in the drivers.
        """
        self.stopping.set()
        if self.relay is not None:
            self.relay.wake.set()
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        for close in self.wiring.on_close:
            close()
        self.wiring.app.close()
        log.info("%s service stopped", self.wiring.name)


async def serve_forever(wiring: Wiring, settings: Settings) -> None:
    runtime = ServiceRuntime(wiring, settings)
    await runtime.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await runtime.stop()
