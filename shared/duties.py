"""One process per service does the work that must not run twice: the relay, the start-up
sweeps, the tree heads.

Several processes of one service may share its store (replicas behind the bus): every one of
them answers requests (the NATS micro endpoints are a queue group) and consumes events (the
durable pull consumer hands each message to one of them; the tracking records make a
redelivery harmless). What is not safe twice over is the work a process does on its own
initiative: the start-up sweeps would each send the mails left open at the last stop, and two
relays would each publish the whole log (the stream's duplicate window drops the copies, but
only for its ten minutes). So those are *duties*, held by one process at a time through a lock
in the store's own database:

- PostgreSQL: a session-level advisory lock, ``pg_try_advisory_lock``, on a connection of its
  own, keyed by the database and the service; it is released when that connection ends, so a
  killed process's duties pass to another at once.
- SQLite: ``flock`` on ``<store>.duties`` beside the store file, released by the kernel when the
  process dies.

A process that does not get the lock is on standby: it serves and consumes, and asks again
every ``poll_seconds``; the one that gets it runs the start-up sweeps and then the relay.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.settings import Settings

log = logging.getLogger(__name__)


def lock_key(service: str, what: str = "duties") -> int:
    """A stable signed 64-bit key for one of a service's advisory locks."""
    digest = hashlib.sha256(f"rekey:{service}:{what}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def setting_up(settings: Settings, service: str) -> Iterator[None]:
    """Around building a service (its store's tables, functions and indexes): one process of
    the service at a time, so replicas starting together do not race on PostgreSQL's catalog
    ("tuple concurrently updated" from two ``CREATE OR REPLACE FUNCTION``). SQLite needs
    nothing: its writes are serialised by the database file's lock."""
    if settings.store != "postgres":
        yield
        return
    import psycopg

    from shared.postgres import building_on

    conninfo = settings.postgres_conninfo()
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(service, "schema"),))
        with building_on(conninfo, conn):  # the build's schema checks use this connection
            yield  # the lock ends with the connection


class Duties:
    """Whether this process holds its service's duties (see the module docstring)."""

    def __init__(self, settings: Settings, service: str) -> None:
        self.settings = settings
        self.service = service
        self.held = False
        self._conn: Any = None  # PostgreSQL: the connection that holds the advisory lock
        self._fd: int | None = None  # SQLite: the locked file
        # Worker threads ask and the loop releases: never close the connection under a query.
        self._lock = threading.Lock()
        self._closed = False

    def try_acquire(self) -> bool:
        """Take the duties if no other process holds them (blocking I/O: call it in a thread)."""
        if self.held and self.still_held():
            return True
        with self._lock:
            self._release()
            if self._closed:  # the process is stopping (or, in tests, was killed)
                return False
            if self.settings.store == "postgres":
                self.held = self._try_postgres()
            else:
                self.held = self._try_file()
            return self.held

    def still_held(self) -> bool:
        """False once the lock's connection is gone (the database restarted or cut it off)."""
        with self._lock:
            if not self.held:
                return False
            if self._conn is None:
                return True  # a file lock lasts as long as this process
            try:
                self._conn.execute("SELECT 1")
            except Exception:
                log.warning("%s: lost the database connection that held its duties", self.service)
                self._release()
                return False
            return True

    def release(self) -> None:
        with self._lock:
            self._release()

    def close(self) -> None:
        """Let the duties go for good: a question still on its way in a thread takes nothing."""
        with self._lock:
            self._closed = True
            self._release()

    def _release(self) -> None:
        self.held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # ends the session: the advisory lock goes with it
            self._conn = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # the flock goes with the descriptor
            self._fd = None

    def _try_postgres(self) -> bool:
        import psycopg

        conn = psycopg.connect(self.settings.postgres_conninfo(), autocommit=True, connect_timeout=5)
        try:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(self.service),)).fetchone()
        except Exception:
            conn.close()
            raise
        if row and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def _try_file(self) -> bool:
        import fcntl

        path = Path(self.settings.data_dir) / f"{self.service}.sqlite.duties"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True
