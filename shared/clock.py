"""Time as a dependency: applications read the clock they were given, so tests move time.

Wall-clock reads inside rules (expiry, locks, throttles, challenge lifetimes) make tests sleep.
Every application and limiter takes a :class:`Clock`; production uses :data:`SYSTEM_CLOCK`,
tests a :class:`ManualClock` they advance.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for windows and throttles)."""

    def time(self) -> float:
        """Seconds since the epoch (for TOTP steps and signed timestamps)."""

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` pass on this clock (what waits for it, such as an authenticator
        app waiting for its next code, then sees them passed)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that starts at the real time and moves only when told to (thread-safe)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._start = start or datetime.now(UTC)
        self._offset = 0.0
        self._mono_base = 1_000.0

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def advance_to(self, moment: datetime) -> None:
        """Move on to ``moment`` (never back). For a rule measured from an event's timestamp:
        events are stamped by the wall clock, which runs on while this one stands still."""
        with self._lock:
            self._offset = max(self._offset, (moment - self._start).total_seconds())

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._offset)

    def monotonic(self) -> float:
        with self._lock:
            return self._mono_base + self._offset

    def time(self) -> float:
        return self.now().timestamp()

    async def sleep(self, seconds: float) -> None:
        """Nobody waits: the time passes at once."""
        self.advance(seconds)
