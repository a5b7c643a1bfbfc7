"""Supervision for ``rekey up``: a process of the stack that dies is started again.

The supervisor looks at every process the stack started (nats-server, each service, the
portal) a few times a second. A process found dead is reaped at once (no zombie), logged once
with its exit code, and started again after a backoff that doubles with each death in a row
(0.5 s, 1 s, 2 s ... up to 30 s) and starts over once the process has stayed up for a while.
Each restart is counted. What it knows is kept in ``<data dir>/supervisor.json`` (0600): the
pid, state and restart count of every process, which ``rekey status`` shows and ``rekey down``
uses to make sure nothing it started, restarted ones included, is left running.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("rekey.supervisor")

STATE_FILE = "supervisor.json"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 30.0  # seconds up after which the next death starts the backoff over


class Watched(Protocol):
    """One process as the supervisor sees it."""

    def pid(self) -> int | None:
        """The running process's id; None once it has exited (and been reaped)."""

    def exit_code(self) -> int | None:
        """None while it runs; its exit code (negative: the signal) once it has died."""

    def restart(self) -> None:
        """Start it again (raises if it cannot)."""


@dataclass
class Record:
    """What the supervisor knows of one process (kept in the state file)."""

    name: str
    pid: int | None
    state: str = "running"  # running, restarting
    restarts: int = 0
    last_exit: int | None = None
    started_at: float = 0.0
    failures_in_a_row: int = 0
    restart_at: float | None = field(default=None, repr=False)


def backoff(failures_in_a_row: int) -> float:
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** max(0, failures_in_a_row - 1))


class Supervisor:
    """Checks the watched processes; :meth:`check` is one round (tests call it with a clock)."""

    def __init__(self, watched: Callable[[], dict[str, Watched]], state_file: Path, *,
                 lock: threading.Lock | None = None, clock: Callable[[], float] = time.monotonic,
                 every: float = 0.2) -> None:
        self.watched = watched
        self.state_file = state_file
        self.lock = lock or threading.Lock()
        self.clock = clock
        self.every = every
        self.records: dict[str, Record] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def restarts(self, name: str) -> int:
        record = self.records.get(name)
        return record.restarts if record else 0

    def check(self) -> None:
        now = self.clock()
        with self.lock:
            watched = self.watched()
            for name in list(self.records):
                if name not in watched:  # stopped on purpose: no longer ours to restart
                    del self.records[name]
            for name, process in watched.items():
                self._check_one(name, process, now)
            self._write()

    def _check_one(self, name: str, process: Watched, now: float) -> None:
        record = self.records.get(name)
        if record is None:
            record = self.records[name] = Record(name, process.pid(), started_at=now)
        if record.state == "running":
            code = process.exit_code()
            if code is None:
                record.pid = process.pid()
                return
            stable = now - record.started_at >= STABLE_AFTER
            record.failures_in_a_row = 1 if stable else record.failures_in_a_row + 1
            delay = backoff(record.failures_in_a_row)
            log.warning("%s (pid %s) %s; starting it again in %.1f s (restart %d)", name,
                        "?" if record.pid is None else record.pid, exit_text(code), delay,
                        record.restarts + 1)
            record.state, record.last_exit, record.pid = "restarting", code, None
            record.restart_at = now + delay
            return
        if record.restart_at is not None and now >= record.restart_at:
            try:
                process.restart()
            except Exception as exc:
                record.failures_in_a_row += 1
                delay = backoff(record.failures_in_a_row)
                record.restart_at = now + delay
                log.error("%s did not start again (%s); next try in %.1f s", name, exc, delay)
                return
            record.restarts += 1
            record.state, record.pid, record.started_at, record.restart_at = (
                "running", process.pid(), now, None)
            log.warning("%s started again (pid %s, restart %d)", name, record.pid, record.restarts)

    def _write(self) -> None:
        state = {"supervisor_pid": os.getpid(),
                 "processes": {name: {k: v for k, v in asdict(r).items() if k != "restart_at"}
                               for name, r in self.records.items()}}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.state_file)

    # --- the thread ``rekey up`` runs
    def start(self) -> None:
        self.check()
        self._thread = threading.Thread(target=self._run, name="rekey-supervisor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.wait(self.every):
            try:
                self.check()
            except Exception:
                log.exception("supervision round failed")

    def stop(self) -> None:
        """No restart after this returns (call before stopping the processes)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()


def exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def read_state(data_dir: Path) -> dict[str, Any] | None:
    """The state file of a ``rekey up`` running from ``data_dir``, if any."""
    try:
        return json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: it only waits for its parent to read its exit code.
    with contextlib.suppress(OSError):
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2][:3]
    return True


def leftovers(state: dict[str, Any]) -> list[tuple[str, int]]:
    """The processes a state file lists that still run."""
    found = []
    for name, record in (state.get("processes") or {}).items():
        pid = record.get("pid")
        if isinstance(pid, int) and alive(pid) and _ours(pid):
            found.append((name, pid))
    return found


def _ours(pid: int) -> bool:
    """Still a Rekey process or nats-server (a pid the system gave to another is left alone)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"rekey" in command or b"nats-server" in command


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """Wait until none of ``pids`` runs; those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        running = [pid for pid in pids if alive(pid)]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.1)
