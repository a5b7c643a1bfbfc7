"""Request rate limits per sender address and per account (in the service's memory)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_KEYS = 100_000


class RequestLimits:
    def __init__(self, per_sender: int, per_account: int, window_seconds: float) -> None:
        self.per_sender = per_sender
        self.per_account = per_account
        self.window = window_seconds
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        stamps = self._seen.pop(key, None) or deque()
        while stamps and now - stamps[0] > self.window:
            stamps.popleft()
        self._seen[key] = stamps
        return stamps

    def allow(self, sender: str, account: str, now: float | None = None) -> bool:
        """Count one request unless either limit is reached (then nothing is counted)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            by_sender = self._recent(f"sender:{sender}", now)
            by_account = self._recent(f"account:{account}", now)
            if len(by_sender) >= self.per_sender or len(by_account) >= self.per_account:
                return False
            by_sender.append(now)
            by_account.append(now)
            while len(self._seen) > MAX_KEYS:
                self._seen.popitem(last=False)
            return True
