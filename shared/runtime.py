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
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from nats.micro.service import Service
from pydantic import Field

from shared import context, metrics
from shared.application import ServiceApplication
from shared.bus import republish
from shared.bus.callers import caller_check_for
from shared.bus.connection import connect
from shared.bus.consumer import BatchHandler, Delivered, EventConsumer
from shared.bus.identities import ERASE_COMMAND, TREE_HEAD_COMMAND
from shared.bus.relay import OutboxRelay
from shared.bus.rpc import Endpoint, InFlight, serve_endpoints
from shared.bus.signing import check_for, signer_for
from shared.bus.stream import ensure_stream
from shared.commands import Command
from shared.concurrency import in_thread, on_the_loop, threads_settled
from shared.contracts.envelope import STREAM_NAME, ActionContext
from shared.duties import Duties
from shared.errors import Unavailable
from shared.evidence.heads import heads_subject
from shared.evidence.publishing import TreeHeadRefused, TreeHeads, tree_heads_for
from shared.health import (
    CHECK_SECONDS,
    Check,
    CheckFn,
    HealthServer,
    SingleFlight,
    loop_check,
    nats_check,
    run_checks,
)
from shared.logs import describe
from shared.settings import Settings
from shared.snapshot_tables import drop_old_snapshot_tables, old_snapshot_tables

log = logging.getLogger(__name__)

__all__ = ["ServiceRuntime", "Wiring", "in_thread", "serve_forever"]

BackgroundTask = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class Wiring:
    """Everything one service runs: its application and what the bus may ask of it."""

    name: str
    app: ServiceApplication
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # (source, event name) -> a synchronous application method or an async edge function
    handlers: dict[tuple[str, str], Callable[..., Any]] = field(default_factory=dict)
    background: list[BackgroundTask] = field(default_factory=list)
    # Run to completion before the consumer and endpoints start (e.g. sweeps that must not
    # race fresh work).
    startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_close: list[Callable[[], None]] = field(default_factory=list)
    # Told the bus connection once it is up (e.g. the audit service's live feed publishes on it).
    connected: list[Callable[[Any], None]] = field(default_factory=list)
    # Outside dependencies `rekey status` reports (SMTP, Twilio): not part of readiness, since
    # the service records a failed send and retries; a provider's outage is no reason to stop
    # sending it traffic.
    dependencies: list[tuple[str, CheckFn]] = field(default_factory=list)
    # Records a fetched run of any of its handlers' events in one transaction (the audit
    # service); without it, runs of ``batchable`` handlers go through ``record_batch``.
    record_together: BatchHandler | None = None


class NoArguments(Command):
    pass


class HistoryQuery(Command):
    username: str


class EraseUser(Command):
    username: str
    principal: str  # the operator's, signed by the CLI with the operator's key


class DropOldSnapshots(Command):
    """Drop this service's snapshot tables of code that no longer runs (``dry_run``: only
    name them); :mod:`shared.snapshot_tables`."""

    dry_run: bool = False


class Republish(Command):
    """Put the store's events from notification ``start`` (``limit`` read) on the stream again;
    ``run`` names the repair run (one run retried publishes nothing twice)."""

    start: int = Field(1, ge=1)
    limit: int = Field(500, ge=1, le=5000)
    run: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


STORE_NAMES = {"postgres": "PostgreSQL", "sqlite": "SQLite"}
STORE_CHECK_SECONDS = 1.2
STALE_LOOP_SECONDS = 60.0  # the relay passes at least every 0.5 s, the consumer every 1 s


class ServiceRuntime:
    def __init__(
        self,
        wiring: Wiring,
        settings: Settings,
        *,
        consumer_ack_wait: float = 30.0,
        relay_hook: Callable[[int], Awaitable[None]] | None = None,
        consumer_hook: Callable[[Any], Awaitable[None]] | None = None,
        duty_poll_seconds: float = 2.0,
    ) -> None:
        self.wiring = wiring
        self.settings = settings
        self.stopping = asyncio.Event()
        self.consumer_ack_wait = consumer_ack_wait
        self._relay_hook = relay_hook
        self._consumer_hook = consumer_hook
        self.tasks: list[asyncio.Task[None]] = []
        self.in_flight = InFlight()  # requests being answered (stop waits for them)
        # The relay, the start-up sweeps and the tree heads: one process of the service at a
        # time (shared/duties.py); the others serve and consume on standby.
        self.duties = Duties(settings, wiring.name)
        self.duty_poll_seconds = duty_poll_seconds
        self.duty_tasks: list[asyncio.Task[None]] = []
        self._duty_stopping = asyncio.Event()
        self.nc: Any = None
        self.relay: OutboxRelay | None = None
        self.consumer: EventConsumer | None = None
        self.service: Service | None = None  # the NATS micro service of the endpoints
        self.heads: TreeHeads | None = None  # signs this service's Merkle tree heads
        self.health: HealthServer | None = None
        self._store_probe = SingleFlight(lambda: in_thread(self.wiring.app.max_notification_id))
        self._relay_facts = SingleFlight(self._read_relay_facts)

    async def start(self) -> None:
        wiring = self.wiring
        if self.settings.health_port:  # first: /livez answers while NATS is awaited
            self.health = HealthServer(self.settings.health_host, self.settings.health_port,
                                       ready=self.ready_checks, live=self.live_checks)
            await self.health.start()
        self.nc = await connect(self.settings, wiring.name)
        for hook in wiring.connected:
            hook(self.nc)
        js = self.nc.jetstream()
        await ensure_stream(js, self.settings.stream_replicas)
        self.relay = OutboxRelay(wiring.app, js, after_publish=self._relay_hook,
                                 signer=signer_for(self.settings, wiring.name))
        wiring.app.on_saved.append(_waker(self.relay.wake))
        endpoints = {name: self._serving(ep) for name, ep in wiring.endpoints.items()}
        endpoints.setdefault("history", Endpoint(HistoryQuery, self._history))
        endpoints["health"] = Endpoint(NoArguments, self._health)
        endpoints[TREE_HEAD_COMMAND] = Endpoint(NoArguments, self._tree_head)
        endpoints[ERASE_COMMAND] = Endpoint(EraseUser, self._erase_user)
        endpoints["republish"] = Endpoint(Republish, self._republish)
        endpoints["drop_old_snapshots"] = Endpoint(DropOldSnapshots, self._drop_old_snapshots)
        handlers = {key: _caused(self._waking(h)) for key, h in wiring.handlers.items()}
        self.consumer = EventConsumer(
            js,
            wiring.name,
            handlers,
            ack_wait=self.consumer_ack_wait,
            before_ack=self._consumer_hook,
            check=check_for(self.settings),
            batch_handler=wiring.record_together or self._record_batch,
            batchable=frozenset(key for key, h in wiring.handlers.items()
                                if wiring.record_together or getattr(h, "batchable", False)),
        )
        holding = await asyncio.to_thread(self.duties.try_acquire)
        if holding:
            for step in wiring.startup:
                await step()
        self.service = await serve_endpoints(self.nc, wiring.name, endpoints, self.in_flight,
                                             caller_check_for(self.settings))
        await self.nc.flush()  # the server has our subscriptions before we say we are up
        runners: list[BackgroundTask] = [self.consumer.run, *wiring.background, self._keep_duties]
        self.tasks = [asyncio.create_task(run(self.stopping)) for run in runners]
        if holding:
            await self._take_up_duties()
        else:
            log.info("%s: another process of it relays and sweeps; this one serves and "
                     "consumes on standby", wiring.name)
        log.info("%s service started", wiring.name)

    async def _take_up_duties(self) -> None:
        """The relay and the tree heads, in this process (the start-up sweeps ran before)."""
        assert self.relay is not None
        self._duty_stopping = asyncio.Event()
        duties: list[BackgroundTask] = [self.relay.run]
        self.heads = tree_heads_for(self.wiring.app)  # read now: another process may have signed
        if self.heads is not None:
            # The store as it is at start, before any new work; a store changed while the
            # service was down is logged and gets no head (the service still serves).
            with contextlib.suppress(TreeHeadRefused):
                await self.publish_head()
            duties.append(self._publish_heads)
        self.duty_tasks = [asyncio.create_task(run(self._duty_stopping)) for run in duties]

    async def _give_up_duties(self) -> None:
        self._duty_stopping.set()
        if self.relay is not None:
            self.relay.wake.set()
        await asyncio.gather(*self.duty_tasks, return_exceptions=True)
        self.duty_tasks, self.heads = [], None

    async def _keep_duties(self, stopping: asyncio.Event) -> None:
        """Standby: take the duties when their holder is gone (a killed process's lock goes
        with it), running the start-up sweeps first. Holder: let them go if the lock was lost
        (its database connection ended), so two processes never relay side by side for long."""
        name = self.wiring.name
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.duty_poll_seconds)
                return
            try:
                if self.duties.held:
                    if not await asyncio.to_thread(self.duties.still_held):
                        log.warning("%s: lost the duties' lock; relaying stops here", name)
                        await self._give_up_duties()
                elif await asyncio.to_thread(self.duties.try_acquire):
                    log.warning("%s: took over the relay and the start-up sweeps", name)
                    for step in self.wiring.startup:
                        await step()
                    await self._take_up_duties()
            except Exception as exc:  # the store away: asked again at the next poll
                log.debug("%s: duties not checked: %s", name, describe(exc))

    def _serving(self, endpoint: Endpoint) -> Endpoint:
        return replace(endpoint, handler=self._waking(endpoint.handler))

    def _waking(self, method: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """Through ``in_thread`` if synchronous; then the relay publishes what it saved."""
        call = on_the_loop(method)

        async def wrapped(*args: Any) -> Any:
            try:
                return await call(*args)
            finally:
                if self.relay is not None:
                    self.relay.wake.set()

        return wrapped

    async def _record_batch(self, delivered: list[Delivered]) -> None:
        """Several upstream events recorded in one transaction (``record_batch``), each
        handled in its own cause's context."""
        handlers = self.wiring.handlers
        calls = [partial(_handle_caused, handlers[(e.source, e.name)], e) for e, _ in delivered]
        try:
            await in_thread(self.wiring.app.record_batch, calls)
        finally:
            if self.relay is not None:
                self.relay.wake.set()

    async def _history(self, query: HistoryQuery) -> list[dict[str, Any]]:
        events = await in_thread(self.wiring.app.history, query.username)
        return [e.model_dump(mode="json") for e in events]

    async def publish_head(self) -> dict[str, Any]:
        """Sign a tree head over the store now, append it to the heads file, publish it."""
        if self.heads is None:
            raise Unavailable(f"{self.wiring.name} has no evidence key: no tree heads here")
        record = await in_thread(self.heads.next)
        data = record.model_dump_json().encode()
        # Into the heads stream (the audit service's durable copy) and to live subscribers.
        msg_id = f"{self.wiring.name}:{record.head.tree_size}:{record.head.timestamp.isoformat()}"
        await self.nc.jetstream().publish(heads_subject(self.wiring.name), data,
                                          headers={"Nats-Msg-Id": msg_id})
        metrics.TREE_HEAD_TIME.labels(service=self.wiring.name).set_to_current_time()
        return record.head.model_dump(mode="json")

    async def _publish_heads(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.tree_head_seconds)
                return
            try:
                await self.publish_head()
            except Exception:  # refused (logged) or the bus away: the next interval tries again
                log.exception("%s: no tree head this time", self.wiring.name)

    async def _erase_user(self, command: EraseUser) -> dict[str, Any]:
        """Only the operator (a principal signed with the operator's key) erases a user."""
        app = self.wiring.app
        operator = app.principals.verify(command.principal, "operator")
        return await in_thread(app.erase_user, command.username, f"operator:{operator.name}")

    async def _tree_head(self, _: NoArguments) -> dict[str, Any]:
        if not self.duties.held:
            raise Unavailable(f"This {self.wiring.name} process is on standby; the one that "
                              "relays signs the tree heads. Ask again.")
        return await self.publish_head()

    # --- health: readiness checks, /readyz, and the `health` endpoint `rekey status` asks ----
    def live_checks(self) -> list[tuple[str, CheckFn]]:
        """Alive: the loops that were started have not ended on their own."""
        return [(f"loop {i}", loop_check(f"background {i}", task, None, 0))
                for i, task in enumerate([*self.tasks, *self.duty_tasks])]

    def ready_checks(self) -> list[tuple[str, CheckFn]]:
        """Ready: connected to NATS, the store answers, relay and consumer made recent progress."""
        checks: list[tuple[str, CheckFn]] = [("nats", nats_check(self.nc)), ("store", self._check_store)]
        if self.relay is None:
            return [*checks, ("started", self._starting)]
        if self.duty_tasks:
            checks.append(("relay", loop_check("relay", self.duty_tasks[0], self.relay.heartbeat,
                                               STALE_LOOP_SECONDS)))
        else:
            checks.append(("relay", self._on_standby))
        if self.wiring.handlers and self.consumer is not None:
            checks.append(("consumer", loop_check("consumer", self.tasks[0] if self.tasks else None,
                                                  self.consumer.heartbeat, STALE_LOOP_SECONDS)))
        return checks

    async def _on_standby(self) -> Check:
        return Check("relay", True, "standby: another process of this service relays")

    async def _starting(self) -> Check:
        return Check("started", False, f"{self.wiring.name} is starting")

    async def _check_store(self) -> Check:
        store = STORE_NAMES[self.settings.store]
        try:
            last = await asyncio.wait_for(self._store_probe(), STORE_CHECK_SECONDS)
        except TimeoutError:
            return Check("store", False, f"{store} unreachable from {self.wiring.name}: "
                                         f"no answer within {STORE_CHECK_SECONDS:g} s")
        except Exception as exc:
            return Check("store", False, f"{store} unreachable from {self.wiring.name}: {describe(exc)}")
        return Check("store", True, f"{store} answers (last event #{last})")

    async def _read_relay_facts(self) -> dict[str, Any]:
        app = self.wiring.app
        last = await in_thread(app.max_notification_id)
        relayed = await in_thread(app.relay_position)
        public = await in_thread(republish.relayed_public_events, app, relayed)
        return {"max_notification_id": last, "relay_position": relayed, "relay_lag": last - relayed,
                "relayed_events": public}

    async def _health(self, _: NoArguments) -> dict[str, Any]:
        """What an operator compares to find faults and gaps: each dependency with its cause,
        the log's end, the relay, the consumer, and what the stream really holds."""
        ready = self.ready_checks()
        checks, facts, stream, info = await asyncio.gather(  # side by side: about 1.5 s at most
            run_checks([*ready, *self.wiring.dependencies]),
            asyncio.wait_for(self._relay_facts(), CHECK_SECONDS), self._stream_count(),
            self._consumer_info(), return_exceptions=True,
        )
        assert isinstance(checks, list)
        health: dict[str, Any] = {
            "service": self.wiring.name,
            "store": self.settings.store,
            "ready": all(c.ok for c in checks[: len(ready)]),
            "checks": [c.__dict__ for c in checks],
            "max_notification_id": None, "relay_position": None, "relay_lag": None,
            "relayed_events": None, "stream_events": None, "gap": None,
            "consumer_pending": None, "consumer_unacked": None,
        }
        if isinstance(facts, dict):
            health.update(facts)
            metrics.RELAY_LAG.labels(service=self.wiring.name).set(facts["relay_lag"])
        if isinstance(stream, int):
            health["stream_events"] = stream
            if isinstance(facts, dict):
                health["gap"] = max(0, facts["relayed_events"] - stream)
        if info is not None and not isinstance(info, BaseException):
            health["consumer_pending"] = info.num_pending
            health["consumer_unacked"] = info.num_ack_pending
            metrics.CONSUMER_PENDING.labels(service=self.wiring.name).set(info.num_pending)
            metrics.CONSUMER_UNACKED.labels(service=self.wiring.name).set(info.num_ack_pending)
        return health

    async def _stream_count(self) -> int:
        return await asyncio.wait_for(
            republish.stream_event_count(self.nc.jetstream(), self.wiring.name), CHECK_SECONDS)

    async def _consumer_info(self) -> Any:
        if not self.wiring.handlers:
            return None
        return await asyncio.wait_for(
            self.nc.jetstream().consumer_info(STREAM_NAME, self.wiring.name), CHECK_SECONDS)

    async def _republish(self, command: Republish) -> dict[str, int]:
        assert self.relay is not None
        return await republish.republish(self.relay, self.wiring.app, command.start, command.limit,
                                         command.run)

    async def _drop_old_snapshots(self, command: DropOldSnapshots) -> dict[str, Any]:
        work = old_snapshot_tables if command.dry_run else drop_old_snapshot_tables
        tables = await in_thread(work, self.wiring.app)
        if tables and not command.dry_run:
            log.warning("%s: dropped %d snapshot table(s) of earlier code: %s", self.wiring.name,
                        len(tables), ", ".join(tables))
        return {"tables": tables, "dropped": not command.dry_run}

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Graceful: stop taking work, let in-flight work finish, then close the store.

        The loops see ``stopping`` at once and return after their current step; a
        store call already running in a worker thread is waited for, never cut off, because
        closing a store under a running query is undefined behaviour in the drivers.
        """
        self.stopping.set()
        self._duty_stopping.set()
        if self.relay is not None:
            self.relay.wake.set()
        loops = [*self.tasks, *self.duty_tasks]
        if loops:
            _, late = await asyncio.wait(loops, timeout=grace_seconds)
            for task in late:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        # Requests under way are answered before the connection drains (and those still
        # queued are answered during the drain, one at a time).
        if not await self.in_flight.settle(grace_seconds):
            log.warning("%s: requests still being answered after %ss", self.wiring.name,
                        grace_seconds)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        # A cancelled send may still be running its store call in a worker thread.
        if not await asyncio.to_thread(threads_settled, grace_seconds):
            log.warning("%s: store calls still running after %ss; closing anyway",
                        self.wiring.name, grace_seconds)
        for close in self.wiring.on_close:
            close()
        self.wiring.app.close()
        self.duties.close()
        if self.health is not None:
            await self.health.stop()
        log.info("%s service stopped", self.wiring.name)


def _waker(wake: asyncio.Event) -> Callable[[], None]:
    """Sets ``wake`` from any thread (a save runs in a worker thread): the relay publishes
    what was just committed instead of waiting for its next poll."""
    loop = asyncio.get_running_loop()

    def saved() -> None:
        with contextlib.suppress(RuntimeError):  # the loop already closed: nothing to wake
            loop.call_soon_threadsafe(wake.set)

    return saved


def _cause_of(envelope: Any) -> ActionContext:
    return ActionContext(channel="system", caller=envelope.source, causation_id=envelope.event_id)


def _handle_caused(handler: Callable[[Any], Any], envelope: Any) -> Any:
    with context.acting(_cause_of(envelope)):
        return handler(envelope)


def _caused(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """A consumer's handler: what it records was caused by the upstream event, by the system."""

    async def handle(envelope: Any) -> Any:
        with context.acting(_cause_of(envelope)):
            return await handler(envelope)

    return handle


async def serve_forever(wiring: Wiring, settings: Settings) -> None:
    runtime = ServiceRuntime(wiring, settings)
    await runtime.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    await done.wait()
    await runtime.stop()
