"""How the asyncio edges reach the synchronous applications: one path, with conflict retry."""

from __future__ import annotations

import asyncio
import inspect
import random
import threading
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, ParamSpec, TypeVar, cast

from eventsourcing.persistence import IntegrityError

from shared.deadlines import starting_work

CONFLICT_ATTEMPTS = 10
# Exponential backoff with full jitter between attempts: racers that collided once must not
# retry in step (a fixed 10 ms wait let a dozen racing requests on one ticket collide ten times).
BACKOFF_FIRST, BACKOFF_MOST = 0.005, 0.25
# Calls running in worker threads. Cancelling the task that awaits one does not stop the
# thread, so a store must not be closed until they are done: closing SQLite under a running
# query crashes the process (a segmentation fault seen at a service's stop).
_running = 0
_settled = threading.Condition()
_attempt = threading.local()  # .undo: what to take back if this attempt loses a race
_request = threading.local()  # .kept: results computed once for all of one call's attempts

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """The one way an edge (bus, SMTP, HTTP, timer) calls a synchronous application method.

    ``eventsourcing`` is synchronous, so the call runs in a worker thread. Every method is
    get-mutate-save, so when another writer saved the same aggregate first (optimistic
    concurrency: ``IntegrityError``), running it again from the start is correct.
    """
    return await asyncio.to_thread(_counted, _retrying, method, *args, **kwargs)


def _retrying(method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    _request.kept = {}
    try:
        for attempt in range(CONFLICT_ATTEMPTS):
            _attempt.undo = []
            try:
                return method(*args, **kwargs)
            except IntegrityError:
                for action in reversed(_attempt.undo):
                    action()
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0, min(BACKOFF_MOST, BACKOFF_FIRST * 2**attempt)))
            finally:
                _attempt.undo = None
    finally:
        _request.kept = None
    raise AssertionError("unreachable")


def kept_across_attempts(key: Hashable, compute: Callable[[], T]) -> T:
    """Inside a call made by :func:`in_thread`: ``compute()`` once for all the call's attempts
    (for the same ``key``); elsewhere, every time. For a costly check whose answer a lost race
    cannot change: an argon2id verification of the same password against the same hash. Run
    again in every attempt, sign-ins racing on one account each verified up to ten times, so
    concurrent guesses multiplied the CPU they cost, and a retry's long argon2 wait let the
    next racer win again until the attempts ran out ("internal error")."""
    kept = getattr(_request, "kept", None)
    if kept is None:
        return compute()
    if key not in kept:
        kept[key] = compute()
    return cast(T, kept[key])


def undone_if_run_again(action: Callable[[], None]) -> None:
    """Inside a call made by :func:`in_thread`: run ``action`` if this attempt loses an
    optimistic-concurrency race (and is run again, or given up). A rate limit's hit counts
    once per request, not once per attempt: sixteen requests racing on the log of all
    tickets used to spend a sender's allowance on their own retries. Elsewhere: nothing."""
    undo = getattr(_attempt, "undo", None)
    if undo is not None:
        undo.append(action)


def _counted(method: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    global _running
    starting_work()  # a request whose caller gave up while this waited for a thread: not done
    with _settled:
        _running += 1
    try:
        return method(*args, **kwargs)
    finally:
        with _settled:
            _running -= 1
            _settled.notify_all()


def threads_settled(timeout: float) -> bool:
    """Wait (blocking) until no call started by :func:`in_thread` is still running.

    Returns False if some were still running after ``timeout`` seconds.
    """
    with _settled:
        return _settled.wait_for(lambda: _running == 0, timeout=timeout)


def on_the_loop(method: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """An async edge function as it is; a synchronous application method through ``in_thread``."""
    if inspect.iscoroutinefunction(method):
        return method

    async def call(*args: Any) -> Any:
        return await in_thread(method, *args)

    return call


async def woken_or_stopped(wake: asyncio.Event, stopping: asyncio.Event, timeout: float) -> None:
    """Wait until ``wake`` or ``stopping`` is set, or ``timeout`` has passed: a polling loop
    that also sleeps on a wake-up event ends at once when its service stops, instead of
    sleeping out its poll interval."""
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
