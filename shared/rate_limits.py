"""The one sliding-window rate limiter: requests, sign-in attempts and web sign-ins use it.

It lives in the process's memory (a restart forgets it) and reads the injected clock, so
tests move time instead of sleeping. The least recently used keys are forgotten beyond
``max_keys``, so a flood of distinct keys cannot exhaust memory.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Mapping

from shared.clock import SYSTEM_CLOCK, Clock
from shared.concurrency import undone_if_run_again

MAX_KEYS = 100_000


class SlidingWindow:
    """At most ``limit`` hits per key within any ``window_seconds`` (thread-safe)."""

    def __init__(
        self,
        limit: int,
        window_seconds: float = 60.0,
        *,
        clock: Clock | None = None,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.limit = limit
        self.window = window_seconds
        self.clock = clock or SYSTEM_CLOCK
        self.max_keys = max_keys
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, *keys: str) -> bool:
        """Count one hit on every key, each against ``limit``; see :meth:`allow_each`."""
        return self.allow_each({key: self.limit for key in keys})

    def allow_each(self, limits: Mapping[str, int]) -> bool:
        """Count one hit on every key unless one of them reached its own limit.

        All or nothing: a refused hit is counted on no key, so being refused for one reason
        does not use up another key's allowance.
        """
        now = self.clock.monotonic()
        with self._lock:
            recent = {key: self._recent(key, now) for key in limits}
            if any(len(recent[key]) >= limit for key, limit in limits.items()):
                return False
            for hits in recent.values():
                hits.append(now)
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
        undone_if_run_again(lambda: self._take_back(list(limits), now))
        return True

    def _take_back(self, keys: list[str], at: float) -> None:
        """Forget one hit counted at ``at`` on each key (its attempt was run again)."""
        with self._lock:
            for key in keys:
                hits = self._hits.get(key)
                if hits is not None and at in hits:
                    hits.remove(at)

    def _recent(self, key: str, now: float) -> deque[float]:
        hits = self._hits.pop(key, None) or deque()
        while hits and now - hits[0] > self.window:
            hits.popleft()
        self._hits[key] = hits  # most recently used last
        return hits
