"""Per-request deadlines: work that no one waits for any more is not started.

A client sends ``Rekey-Deadline`` (Unix time, seconds) with each request: when its own timeout
ends. The service checks it when the request's work is about to start: in the endpoint's
dispatch, and again when the first store call of the request leaves the queue of worker
threads (a request may wait there behind slow calls on a sick database). A request whose
deadline has passed is answered ``deadline_exceeded`` and changes nothing. Work already
started is finished: a deadline is checked before the work, never in the middle of it.

Deadlines are wall-clock times, so the machines' clocks must agree (NTP) to within a small
part of the callers' timeouts; :data:`GRACE_SECONDS` absorbs the usual skew.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

from shared.errors import DeadlineExceeded

HEADER = "Rekey-Deadline"
GRACE_SECONDS = 0.25

# The current request's deadline and whether its work has started (one dict per request,
# shared with the worker threads it starts: ``asyncio.to_thread`` copies the context).
_current: ContextVar[dict[str, Any] | None] = ContextVar("rekey_deadline", default=None)


def header(timeout: float, now: float | None = None) -> dict[str, str]:
    """The header a client sends with a request it waits ``timeout`` seconds for."""
    return {HEADER: f"{(now if now is not None else time.time()) + timeout:.3f}"}


def from_headers(headers: Mapping[str, str] | None) -> float | None:
    """The request's deadline, or None (no header, or one that is not a number)."""
    value = (headers or {}).get(HEADER)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def check(deadline: float | None, now: float | None = None) -> None:
    if deadline is not None and (now if now is not None else time.time()) > deadline + GRACE_SECONDS:
        raise DeadlineExceeded(
            "The request took too long to reach the service and was not carried out; "
            "nothing was changed. Try again."
        )


@contextlib.contextmanager
def within(deadline: float | None) -> Iterator[None]:
    """The block serves a request due by ``deadline``; checks it now."""
    check(deadline)
    token = _current.set({"deadline": deadline, "started": False})
    try:
        yield
    finally:
        _current.reset(token)


def starting_work() -> None:
    """Called by every store call: the first one of a request checks its deadline again."""
    state = _current.get()
    if state is None or state["started"]:
        return
    state["started"] = True
    check(state["deadline"])
