"""Connecting to NATS and making sure the event stream exists (idempotent, at every start)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlparse

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.contracts.envelope import STREAM_NAME, SUBJECT_PREFIX

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 600.0


async def connect(url: str, name: str, *, attempts: int = 60) -> Client:
    """Connect, retrying while the server starts; reconnects forever once connected.

    nats-py applies its reconnect policy to the first connection too, so with unlimited
    reconnects it would wait forever for a server that is not there. The server is first
    probed with a plain TCP connection, and only a reachable one gets the lasting client.
    """
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            await _probe(url)
            return await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                drain_timeout=5,
                allow_reconnect=True,
            )
        except Exception as exc:  # the server may not be up yet
            last = exc
            if attempt + 1 < attempts:
                await asyncio.sleep(0.5)
    raise ConnectionError(f"cannot reach NATS at {url}: {last}")


async def _probe(url: str) -> None:
    """Succeeds when any of the (comma-separated) servers accepts a TCP connection."""
    error: Exception = ConnectionError("no server in the URL")
    for server in url.split(","):
        parsed = urlparse(server.strip())
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


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the events stream, or leave it as it is if it already exists."""
    config = StreamConfig(
        name=STREAM_NAME,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        num_replicas=replicas,
    )
    try:
        await js.stream_info(STREAM_NAME)
    except NotFoundError:
        try:
            await js.add_stream(config)
            log.info("created stream %s", STREAM_NAME)
        except Exception:  # another service won the race
            await js.stream_info(STREAM_NAME)
