"""In-process sign-in throttling, the same for existing and unknown usernames.

``AttemptWindow`` limits attempts per username per minute, whether the account exists or
not. ``PhantomLocks`` gives unknown usernames the same lock answer a real account would get
after the same number of failures, so a lock does not tell which usernames exist. Both live in
memory (a restart forgets them); real accounts' locks are events (``AccountLocked``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_KEYS = 100_000


class AttemptWindow:
    def __init__(self, per_minute: int, window_seconds: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window_seconds
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            stamps = self._seen.pop(key, None) or deque()
            while stamps and now - stamps[0] > self.window:
                stamps.popleft()
            allowed = len(stamps) < self.per_minute
            if allowed:
                stamps.append(now)
            self._seen[key] = stamps
            while len(self._seen) > MAX_KEYS:
                self._seen.popitem(last=False)
            return allowed


class PhantomLocks:
    """Failure counts and locks for usernames that have no account."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def locked(self, key: str, lock_after: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            count, until = self._failures.get(key, (0, 0.0))
            return count >= lock_after and now < until

    def fail(self, key: str, lock_after: int, lock_seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            count, until = self._failures.pop(key, (0, 0.0))
            if count >= lock_after and now >= until:
                count = 0  # the lock ran out: count afresh, as for a real account
            count += 1
            self._failures[key] = (count, now + lock_seconds if count >= lock_after else 0.0)
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)
