"""Waiting for eventual consistency: poll a check until it holds, within a deadline.

Services learn of each other's events a moment later; callers that must see an effect
(the demo, the benchmark, the tests) poll for it instead of sleeping for a guessed time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any


class StillWaiting(TimeoutError):
    """The check did not hold before the deadline."""


async def eventually(
    check: Callable[[], Any | Awaitable[Any]],
    *,
    what: str = "the condition",
    timeout: float = 30.0,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """The first truthy result of ``check`` (sync or async); ``retry_on`` errors count as no."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result
        except retry_on:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise StillWaiting(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
