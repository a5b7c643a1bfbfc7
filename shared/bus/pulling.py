"""A JetStream pull that gives way to a stop.

A pull fetch waits up to its timeout for messages. A service that is stopping should not sit
that out (a second per consumer, at every stop): the fetch is cancelled as soon as ``stopping``
is set. A message the cancelled fetch had already taken and not returned is redelivered after
the consumer's ``ack_wait``, as after a crash, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def stop_signal(stopping: asyncio.Event) -> Iterator[asyncio.Future[Any]]:
    """A future done once ``stopping`` is set, for :func:`fetch_or_stop` (one per loop)."""
    stopped = asyncio.ensure_future(stopping.wait())
    try:
        yield stopped
    finally:
        stopped.cancel()


async def fetch_or_stop(subscription: Any, batch: int, timeout: float,
                        stopped: asyncio.Future[Any]) -> list[Any] | None:
    """The fetch's messages (its errors, a timeout included, are raised as they are), or None
    when ``stopped`` came first: the fetch is then cancelled."""
    fetching = asyncio.ensure_future(subscription.fetch(batch, timeout=timeout))
    await asyncio.wait({fetching, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not fetching.done():
        fetching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await fetching
        return None
    return fetching.result()
