"""Server-side sessions in memory, keyed by a random id carried in the ``__Host-rekey`` cookie.

A session ends after an idle time and after an absolute lifetime, whichever comes first; a new
id is issued at every sign-in (no fixation). Nothing here is written to disk.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

COOKIE = "__Host-rekey"
MAX_SESSIONS = 20_000


@dataclass
class Session:
    id: str
    created: float
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    data: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def username(self) -> str | None:
        return self.data.get("username")

    @property
    def stage(self) -> str | None:
        return self.data.get("stage")


class SessionStore:
    def __init__(self, idle_seconds: float, absolute_seconds: float) -> None:
        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        now = time.monotonic()
        session = Session(id=secrets.token_urlsafe(32), created=now, seen=now)
        with self._lock:
            self._sweep(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> tuple[Session | None, bool]:
        """The live session for ``session_id``, and whether one existed but timed out."""
        if not session_id:
            return None, False
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None, False
            if now - session.seen > self.idle or now - session.created > self.absolute:
                del self._sessions[session_id]
                return None, bool(session.username)
            session.seen = now
            return session, False

    def rotate(self, old: Session | None) -> Session:
        """A fresh id and CSRF token (at sign-in); the old session's data is dropped."""
        if old is not None:
            self.drop(old)
        return self.new()

    def drop(self, session: Session) -> None:
        with self._lock:
            self._sessions.pop(session.id, None)
        session.data.clear()

    def __len__(self) -> int:
        return len(self._sessions)

    def _sweep(self, now: float) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        for sid, s in list(self._sessions.items()):
            if now - s.seen > self.idle or now - s.created > self.absolute:
                del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:  # oldest first
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].seen)]
