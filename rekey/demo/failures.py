"""How a demo step fails: a named error, and waiting for the services to catch up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from shared.errors import NotFound
from shared.waiting import StillWaiting
from shared.waiting import eventually as wait_until


class DemoFailed(RuntimeError):
    pass


async def eventually(
    what: str,
    attempt: Callable[[], Any | Awaitable[Any]],
    timeout: float = 30.0,
    retry_on: tuple[type[Exception], ...] = (NotFound,),
) -> Any:
    """Retry while the services catch up with each other's events (eventual consistency)."""
    try:
        return await wait_until(
            attempt, what=what, timeout=timeout, interval=0.2, retry_on=retry_on
        )
    except StillWaiting as exc:
        raise DemoFailed(str(exc)) from None
