"""Connecting to NATS as one identity: its NKEY, its own reply inbox, TLS with the right CA.

Every process connects through :func:`connect` with the identity the bus policy
(:mod:`shared.bus.identities`) knows it by, and signs its requests with the same key
(:mod:`shared.bus.callers`). A refused identity fails at once with a clear
message (retrying a wrong key does not make it right); an unreachable server is retried while
it starts. Once connected, the client reconnects forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from pathlib import Path
from urllib.parse import urlparse

import nats
from nats.aio.client import Client

from shared import metrics
from shared.bus.callers import sign_requests
from shared.bus.identities import inbox_prefix
from shared.bus.signing import NkeySigner
from shared.logs import TRANSITION
from shared.settings import Settings

log = logging.getLogger(__name__)


class _TlsCloseNoise(logging.Filter):
    """nats-py's protocol returns True from ``eof_received``; over TLS asyncio then warns on
    every closed connection. The warning says nothing an operator can act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "eof_received()" not in record.getMessage()


logging.getLogger("asyncio").addFilter(_TlsCloseNoise())


class BusRefused(ConnectionError):
    """The server refused this identity (no key, a wrong key, or a key it does not know)."""


def seed_path(settings: Settings, identity: str) -> Path | None:
    folder = settings.nats_keys_dir
    return Path(folder) / f"{identity}.nk" if folder else None


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """TLS for ``tls://`` URLs (or whenever a CA is configured), the host name always checked."""
    wants_tls = any(u.strip().startswith("tls://") for u in settings.nats_url.split(","))
    if not wants_tls and not settings.nats_ca_file:
        return None
    context = ssl.create_default_context(cafile=settings.nats_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _credentials(settings: Settings, identity: str) -> dict[str, object]:
    path = seed_path(settings, identity)
    if path is None:
        return {}
    try:
        seed = path.read_text().strip()
    except OSError as exc:
        raise BusRefused(
            f"cannot read the bus key of identity {identity!r} at {path}: {exc.strerror}"
        ) from None
    return {"nkeys_seed_str": seed}


async def connect(settings: Settings, identity: str, *, name: str | None = None,
                  attempts: int = 60) -> Client:
    """Connect as ``identity``, retrying while the server starts.

    nats-py applies its reconnect policy to the first connection too, so with unlimited
    reconnects it would wait forever for a server that is not there. The server is first
    probed with a plain TCP connection, and only a reachable one gets the lasting client.
    """
    url = settings.nats_url
    options = {
        **_credentials(settings, identity),
        "tls": tls_context(settings),
        "inbox_prefix": inbox_prefix(identity),
    }
    last: Exception | None = None
    watch = _ConnectionWatch(identity)
    for attempt in range(attempts):
        try:
            await _probe(url)
            nc = await nats.connect(
                servers(url),  # nats-py takes a cluster's nodes as a list, not "a,b,c"
                name=name or f"rekey-{identity}",
                reconnect_time_wait=0.5,
                connect_timeout=2,
                drain_timeout=5,
                allow_reconnect=False,  # the first attempt reports a refusal instead of looping
                error_cb=watch.error,
                disconnected_cb=watch.lost,
                reconnected_cb=watch.restored,
                **options,  # type: ignore[arg-type]
            )
            nc.options["allow_reconnect"] = True  # from now on: reconnect forever
            nc.options["max_reconnect_attempts"] = -1
            if "nkeys_seed_str" in options:  # its requests are signed with the same key
                sign_requests(nc, NkeySigner.from_seed(str(options["nkeys_seed_str"]).encode()))
            watch.connected(nc)
            return nc
        except Exception as exc:  # the server may not be up yet
            if "authorization violation" in str(exc).lower():
                raise BusRefused(
                    f"NATS at {url} refused identity {identity!r}: check REKEY_NATS_KEYS_DIR "
                    "and that the server knows this key"
                ) from None
            last = exc
            if attempt + 1 < attempts:
                await asyncio.sleep(0.5)
    raise ConnectionError(f"cannot reach NATS at {url}: {last}")


def servers(url: str) -> list[str]:
    """The nodes of a comma-separated REKEY_NATS_URL."""
    return [server.strip() for server in url.split(",") if server.strip()]


CONNECTION_ERRORS = (OSError, nats.errors.UnexpectedEOF, nats.errors.StaleConnectionError,
                     nats.errors.ConnectionClosedError)


class _ConnectionWatch:
    """One line when the connection is lost and one when it is back, whatever happens between:
    nats-py reports every failed reconnect attempt (two a second) as an error, and its default
    prints a traceback for each."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.down = False
        self.nc: Client | None = None
        self.gauge = metrics.NATS_CONNECTED.labels(identity=identity)

    def connected(self, nc: Client) -> None:
        self.nc = nc
        self.gauge.set(1)

    async def lost(self) -> None:
        if self.nc is None or self.nc.is_closed or self.down:
            return  # a close we asked for, or still the same outage
        self.down = True
        self.gauge.set(0)
        log.warning("NATS connection lost (%s); reconnecting", self.identity, extra=TRANSITION)

    async def restored(self) -> None:
        self.down = False
        self.gauge.set(1)
        metrics.NATS_RECONNECTS.labels(identity=self.identity).inc()
        url = self.nc.connected_url.netloc if self.nc is not None and self.nc.connected_url else ""
        log.warning("NATS connection restored (%s, %s)", self.identity, url, extra=TRANSITION)

    async def error(self, error: Exception) -> None:
        # Failed reconnects, the first connect's retries, and the socket errors that come just
        # before "lost" say nothing more than that line: kept for debugging only.
        if self.down or self.nc is None or isinstance(error, CONNECTION_ERRORS):
            log.debug("NATS: %s", error)
            return
        log.warning("NATS: %s", error)


async def _probe(url: str) -> None:
    """Succeeds when any of the (comma-separated) servers accepts a TCP connection."""
    error: Exception = ConnectionError("no server in the URL")
    for server in servers(url):
        parsed = urlparse(server)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(parsed.hostname or "127.0.0.1", parsed.port or 4222), 2
            )
        except (OSError, TimeoutError) as exc:
            error = exc
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return
    raise error
