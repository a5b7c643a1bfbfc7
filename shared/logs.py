"""Log lines an operator can read and a collector can parse: one JSON object per line.

- :func:`configure` sets every process up the same way (``REKEY_LOG_FORMAT``: ``json``, the
  default, or ``text`` for a terminal), with :class:`RepeatFilter` in front of the handler: the
  same warning or error from the same place is written once per ``window`` seconds, and the
  next one that gets through says how many were held back (``"repeated": 57``).
- :class:`Outage` is for loops that retry: the first failure is logged (once), the retries are
  not, and the recovery is logged once, so a dependency that goes away and comes back writes
  two lines, not one traceback every half second.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from pythonjsonlogger.json import JsonFormatter

REPEAT_WINDOW_SECONDS = 60.0
TRANSITION = {"transition": True}  # ``extra=`` of a state change: never held back


class RepeatFilter(logging.Filter):
    """Lets one record per (logger, level, message template) through per ``window`` seconds,
    for warnings and errors; info and debug always pass, and so do state changes logged with
    ``extra=TRANSITION`` (a connection lost, then restored: each is news, however often)."""

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "transition", False):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            last, held = self._seen.get(key, (None, 0))
            if last is not None and now - last < self.window:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
        if held:
            record.repeated = held  # the formatter adds it to the line
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        held = getattr(record, "repeated", 0)
        return f"{line} (and {held} more like it)" if held else line


SMTP_SERVER_LOGGER = "mail.log"  # aiosmtpd's logger


def _info_or_above(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO


def keep_mail_out_of_logs() -> None:
    """aiosmtpd (the mail intake, `rekey up`'s local mail sink) logs every line of every
    message it receives at DEBUG, temporary passwords and codes included: its logger never
    passes a record below INFO, whatever level the process logs at. A filter rather than the
    logger's own level, which would also let its INFO lines (a line per connection) through
    a process that logs at WARNING, such as `rekey bench`."""
    smtp_server = logging.getLogger(SMTP_SERVER_LOGGER)
    smtp_server.setLevel(logging.NOTSET)  # the process's level, as any other logger
    if _info_or_above not in smtp_server.filters:
        smtp_server.addFilter(_info_or_above)


def configure(process: str, level: str = "INFO", fmt: str = "json") -> None:
    """The root logger of a process: one line per record on stderr, repeats held back."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"process": process},
            timestamp=False,
        ))
    else:
        handler.setFormatter(_TextFormatter(f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RepeatFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class Outage:
    """A retrying loop's view of one dependency: log the first failure and the recovery."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self.failures = 0

    def failed(self, error: BaseException) -> None:
        self.failures += 1
        if self.failures == 1:
            self.log.warning("%s failing, retrying quietly: %s", self.what, describe(error),
                             exc_info=self.log.isEnabledFor(logging.DEBUG), extra=TRANSITION)

    def succeeded(self) -> None:
        if self.failures:
            self.log.warning("%s working again after %s failed attempt(s)", self.what, self.failures,
                             extra=TRANSITION)
            self.failures = 0


def describe(error: BaseException) -> str:
    """An exception as one short line: its type and first line of text."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
