"""Side effects that leave the system (mails, texts, calls): intent recorded, sent, outcome recorded.

The application records the intent as an event first. :class:`SideEffects` then sends it and
records the outcome through the application (``...Sent`` or ``...Failed``). A crash between
the two leaves the intent open; the service's start-up sweep finds it and hands it here again.
A redelivered upstream event finds its tracking row, so it records no second intent.

Within one process an intent is sent at most once, however it arrives (freshly recorded,
found by the sweep, or both at once): it is claimed by its ``intent_id`` before sending, and
the application is asked whether it is still open (``pending``) after claiming, so a sweep's
list that went stale while another path sent the intent sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, Protocol, TypeVar

from shared.concurrency import in_thread

log = logging.getLogger(__name__)


class Intent(Protocol):
    @property
    def intent_id(self) -> str:
        """Stable for one recorded intent: the same whether fresh or found by a sweep."""


I = TypeVar("I", bound=Intent)  # noqa: E741
R = TypeVar("R")


class SideEffects(Generic[I, R]):
    """Sends one kind of intent and records each outcome; see the module docstring.

    ``send(intent)`` is async and returns the outcome (for mail: None when sent, else why
    not). ``record(intent, outcome)`` and ``pending(intent)`` are synchronous application
    methods, run off the loop with the conflict retry of :func:`shared.concurrency.in_thread`.
    """

    def __init__(
        self,
        what: str,
        send: Callable[[I], Awaitable[R]],
        record: Callable[[I, R], object],
        *,
        pending: Callable[[I], bool] | None = None,
    ) -> None:
        self.what = what
        self._send = send
        self._record = record
        self._pending = pending
        self._claimed: set[str] = set()
        self._tasks: set[asyncio.Task[R | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False

    async def now(self, intent: I) -> R | None:
        """Send on the caller's path, record the outcome and return it.

        An intent already being sent, or no longer open, is left alone (None).
        """
        self._loop = asyncio.get_running_loop()
        key = intent.intent_id
        if key in self._claimed:
            return None
        self._claimed.add(key)
        try:
            if self._pending is not None and not await in_thread(self._pending, intent):
                return None
            outcome = await self._send(intent)
            await in_thread(self._record, intent, outcome)
            return outcome
        finally:
            self._claimed.discard(key)

    def later(self, intent: I) -> None:
        """Send off the caller's path (thread-safe: application methods call it from workers).

        Before the service runs there is no loop to send on; the start-up sweep sends it then.
        """
        loop = self._loop
        if loop is None:
            log.debug("a %s is left for the start-up sweep", self.what)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start(intent)
            return
        try:
            loop.call_soon_threadsafe(self._start, intent)
        except RuntimeError:  # the loop is closed: the process is stopping
            log.debug("a %s is left for the start-up sweep", self.what)

    def _start(self, intent: I) -> None:
        if self._stopped:  # arrived while stopping: the next start-up sweep sends it
            return
        task = asyncio.ensure_future(self.now(intent))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[R | None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sending a %s failed; the start-up sweep retries it", self.what,
                      exc_info=task.exception())

    def sweep(self, find: Callable[[], Iterable[I]]) -> Callable[[], Awaitable[None]]:
        """A start-up step: send every intent ``find`` reports still open."""

        async def step() -> None:
            self._loop = asyncio.get_running_loop()
            found = list(await in_thread(find))
            if found:
                log.info("sending %s %s(s) left open at the last stop", len(found), self.what)
            for intent in found:
                self._start(intent)

        return step

    async def run(self, stopping: asyncio.Event) -> None:
        """A background task: at stop, cancel what is still sending (the next sweep sends it)."""
        self._loop = asyncio.get_running_loop()
        await stopping.wait()
        self._stopped = True
        await self.drain(cancel=True)

    async def drain(self, *, cancel: bool = False) -> None:
        """Wait for (or cancel) every send started with :meth:`later` or a sweep."""
        while self._tasks:
            tasks = list(self._tasks)
            if cancel:
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
