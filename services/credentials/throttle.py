"""Sign-in delays for usernames that have no account, the same as for those that do.

``PhantomDelays`` gives unknown usernames the same answers a real account would get after the
same failures (the same waits, by the same :class:`DelaySchedule`), so a delay does not tell
which usernames exist. It lives in memory (a restart forgets it); real accounts' delays are
events (``SignInFailed`` with ``retry_at``). Attempts per client address per minute are
limited by ``shared.rate_limits.SlidingWindow``, whatever the username.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime

from services.credentials.domain import DelaySchedule, wait_until
from shared.clock import Clock
from shared.rate_limits import MAX_KEYS


class PhantomDelays:
    """Failure counts and delays for usernames that have no account."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._failures: OrderedDict[str, tuple[int, datetime | None]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, key: str) -> int:
        """As ``Account.check_not_delayed``: ``SignInDelayed`` while the delay runs. The
        failures seen, for :meth:`fail`."""
        with self._lock:
            count, retry_at = self._failures.get(key, (0, None))
        wait_until(retry_at, self.clock.now())
        return count

    def fail(self, key: str, delay: DelaySchedule, seen: int) -> bool:
        """Count a failure, as saving an account's ``SignInFailed`` does: only if no other
        failure was counted since :meth:`check` saw ``seen`` (False: check again). A real
        account's attempts side by side conflict on its version and run again, so the later
        ones meet the delay the earlier ones started; phantoms must answer the same."""
        now = self.clock.now()
        with self._lock:
            count, _ = self._failures.get(key, (0, None))
            if count != seen:
                return False
            self._failures.pop(key, None)
            self._failures[key] = (count + 1, delay.retry_at(count + 1, now))
            while len(self._failures) > MAX_KEYS:
                self._failures.popitem(last=False)
        return True
