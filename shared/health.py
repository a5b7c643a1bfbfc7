"""Liveness, readiness and metrics over HTTP, for every process (services and portal).

``REKEY_HEALTH_PORT`` (0: none) on ``REKEY_HEALTH_HOST`` (loopback by default) serves:

- ``/livez``: 200 while the process's own loops are alive (a loop that ended by itself means
  a restart is the cure); 503 otherwise.
- ``/readyz``: 200 when every check passes (NATS connected, the store answers a query, the
  loops made progress recently); 503 otherwise. The JSON body names each check and, for a
  failing one, the cause ("PostgreSQL unreachable from credentials: connection refused").
- ``/metrics``: Prometheus text (:mod:`shared.metrics`).

Checks are small async functions returning a :class:`Check`; each runs with a short timeout,
all side by side, so a dead dependency makes ``/readyz`` answer "no" quickly, never hang.

The server is a few lines of HTTP/1.1 on asyncio's streams (three GET routes, one request per
connection, bounded in size and time), not a web framework: aiohttp and its parsers were about
16 MB of every process for these three pages (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.logs import describe

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.5  # one check's budget; `rekey status` asks with about twice that in all
REQUEST_BYTES = 8192  # a probe's request line and headers; longer ones are not read
REQUEST_SECONDS = 5.0  # to send them
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


@dataclass(frozen=True)
class Check:
    name: str  # the dependency: nats, store, smtp, twilio, relay, consumer, ...
    ok: bool
    detail: str = ""


CheckFn = Callable[[], Awaitable[Check]]


async def run_checks(checks: list[tuple[str, CheckFn]], timeout: float = CHECK_SECONDS) -> list[Check]:
    """Every check at once, each within ``timeout``: a check that hangs fails, naming why."""

    async def one(name: str, fn: CheckFn) -> Check:
        try:
            return await asyncio.wait_for(fn(), timeout)
        except TimeoutError:
            return Check(name, False, f"no answer within {timeout:g} s")
        except Exception as exc:
            return Check(name, False, describe(exc))

    return list(await asyncio.gather(*(one(n, f) for n, f in checks)))


class SingleFlight:
    """A blocking probe (a store query in a worker thread) run at most once at a time: while one
    is still waiting on a dead database, the next check reports that instead of queueing
    another thread behind it."""

    def __init__(self, probe: Callable[[], Awaitable[Any]]) -> None:
        self.probe = probe
        self._running: asyncio.Future[Any] | None = None

    async def __call__(self) -> Any:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self.probe())
        return await asyncio.shield(self._running)


def nats_check(nc: Any) -> CheckFn:
    async def check() -> Check:
        if nc is None or not nc.is_connected:
            state = "reconnecting" if nc is not None and nc.is_reconnecting else "not connected"
            return Check("nats", False, f"NATS connection lost ({state})")
        return Check("nats", True, str(nc.connected_url.netloc if nc.connected_url else ""))

    return check


class Heartbeat:
    """When a loop last completed a step (monotonic), for "alive and making progress";
    ``gauge`` (a labelled prometheus Gauge) gets the wall-clock time of each step."""

    def __init__(self, gauge: Any = None) -> None:
        self.last = time.monotonic()
        self.gauge = gauge

    def beat(self) -> None:
        self.last = time.monotonic()
        if self.gauge is not None:
            self.gauge.set_to_current_time()

    def age(self) -> float:
        return time.monotonic() - self.last


def loop_check(name: str, task: asyncio.Task[Any] | None, heartbeat: Heartbeat | None,
               stale_after: float) -> CheckFn:
    async def check() -> Check:
        if task is not None and task.done():
            why = "stopped"
            if not task.cancelled() and task.exception() is not None:
                why = f"crashed: {describe(task.exception())}"  # type: ignore[arg-type]
            return Check(name, False, f"the {name} loop {why}")
        if heartbeat is not None and heartbeat.age() > stale_after:
            return Check(name, False, f"the {name} loop made no progress for {heartbeat.age():.0f} s")
        return Check(name, True)

    return check


def report(checks: list[Check]) -> dict[str, Any]:
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) for c in checks]}


class HealthServer:
    """``/livez``, ``/readyz`` and ``/metrics`` on one port, on the process's loop."""

    def __init__(self, host: str, port: int, *, ready: Callable[[], list[tuple[str, CheckFn]]],
                 live: Callable[[], list[tuple[str, CheckFn]]]) -> None:
        self.host, self.port = host, port
        self._ready, self._live = ready, live
        self._server: asyncio.Server | None = None

    async def _checked(self, checks: list[tuple[str, CheckFn]]) -> tuple[int, bytes, str]:
        body = report(await run_checks(checks))
        return 200 if body["ok"] else 503, json.dumps(body).encode(), "application/json"

    async def answer(self, method: str, target: str) -> tuple[int, bytes, str]:
        """The status, body and content type for one request."""
        routes = {"/livez": lambda: self._checked(self._live()),
                  "/readyz": lambda: self._checked(self._ready()),
                  "/metrics": self._metrics}
        route = routes.get(target.partition("?")[0])
        if route is None:
            return 404, b"404: Not Found", "text/plain; charset=utf-8"
        if method not in ("GET", "HEAD"):
            return 405, b"405: Method Not Allowed", "text/plain; charset=utf-8"
        return await route()

    async def _metrics(self) -> tuple[int, bytes, str]:
        return 200, generate_latest(), CONTENT_TYPE_LATEST

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(REQUEST_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
                return  # nothing, too much or too slow: closed without an answer
            method, target, *_ = [*head.split(b"\r\n", 1)[0].decode("latin-1").split(" "), "", ""]
            if not target.startswith("/"):
                status, body, kind = 400, b"400: Bad Request", "text/plain; charset=utf-8"
            else:
                status, body, kind = await self.answer(method, target)
            writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {kind}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            if method != "HEAD":
                writer.write(body)
            with contextlib.suppress(OSError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=REQUEST_BYTES)
        log.info("health on http://%s:%s/readyz (/livez, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None


def tcp_check(name: str, host: str, port: int, what: str) -> CheckFn:
    """A dependency reached over TCP (mail server, provider): does it accept a connection?"""

    async def check() -> Check:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            return Check(name, False, f"{what} at {host}:{port} unreachable: {describe(exc)}")
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return Check(name, True, f"{what} at {host}:{port} accepts connections")

    return check


def smtp_check(settings: Any) -> tuple[str, CheckFn]:
    return "smtp", tcp_check("smtp", settings.smtp_host, settings.smtp_port, "the mail server")


def twilio_check(settings: Any) -> tuple[str, CheckFn]:
    from urllib.parse import urlparse

    if not settings.twilio_auth_token.get_secret_value():
        async def off() -> Check:
            return Check("twilio", True, "not configured: texts and calls are off")
        return "twilio", off
    url = urlparse(settings.twilio_api_url or "https://api.twilio.com")
    port = url.port or (443 if url.scheme == "https" else 80)
    return "twilio", tcp_check("twilio", url.hostname or "api.twilio.com", port, "Twilio")
