"""Server-side sessions in memory, keyed by a random id carried in the ``__Host-rekey`` cookie.

A session ends after an idle time and after an absolute lifetime, whichever comes first; a new
id is issued at every sign-in (no fixation). Nothing here is written to disk. What a session
holds is typed (:class:`Session`), so a page reads ``session.stage``, and a misspelt key is an
error rather than a silent ``None``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from shared.clock import SYSTEM_CLOCK, Clock

COOKIE = "__Host-rekey"
MAX_SESSIONS = 20_000

# Where a signed-in person is: a new password is due, the password is checked, MFA is done,
# the agreement is accepted (the portal home), an agent's password is checked and a second
# factor is due ("agent_mfa"), or a help-desk agent in the console.
Stage = Literal["change_password", "password", "mfa", "portal", "agent_mfa", "agent"]


@dataclass
class Reply:
    """The part of a service's reply a later page needs; the rest of the reply is dropped."""

    @classmethod
    def of(cls, reply: dict[str, Any], **extra: Any) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in {**reply, **extra}.items() if k in names})


@dataclass
class Method(Reply):
    """A registered sign-in method, as verification's ``status`` lists it."""

    method_id: str
    method_type: str
    label: str = ""
    masked_phone: str | None = None
    push: bool = False  # an app with a device that takes notifications
    locked: bool = False
    channel: str | None = None  # what challenging it now would take: "app", "push", "sms", "call"


@dataclass
class Challenge(Reply):
    """A check in progress at verification: a sign-in challenge, a push to try out, or the
    text or call that proves a phone being set up."""

    challenge_id: str | None = None
    method_id: str | None = None
    kind: str | None = None
    channel: str | None = None  # "app", "push", "sms" or "call"
    takes_code: bool = False  # a code typed on the page answers it (else the page waits)
    code_length: int | None = None
    number: str | None = None
    prompt: str | None = None
    masked_phone: str | None = None
    label: str | None = None
    expires_at: str | None = None
    options: str | None = None  # a passkey's: the options for navigator.credentials (JSON)


@dataclass
class Registration(Reply):
    """An authenticator app being set up from a QR code (``start_app_registration``)."""

    flow: str
    method_id: str
    otpauth_uri: str
    account_name: str
    secret_key: str
    issuer: str = ""
    qr_svg: str | None = None
    code_length: int | None = None
    replaces_earlier: bool = False  # an unfinished setup's QR code stopped working


@dataclass
class Registered:
    """A method was just set up: what "Success!" and the page before it show."""

    default_label: str | None = None
    message: str | None = None
    done_url: str = "/agreement"  # "Done": on to the agreement, or back to Security info


@dataclass
class Session:
    id: str
    created: float
    seen: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    # Who, and how far they are.
    stage: Stage | None = None
    username: str | None = None
    # The bearer tokens from the services (architecture.md, section 10).
    change_token: str | None = None
    password_token: str | None = None
    mfa_token: str | None = None
    principal: str | None = None  # an agent's, signed by credentials: what the console acts with
    # An agent between the password and the second factor (or redeeming an invitation): the
    # token credentials returned, the factors to offer, the passkey challenge's token.
    agent_mfa_token: str | None = None
    agent_factors: list[str] = field(default_factory=list)
    passkey_token: str | None = None
    # Sign-in methods: verification's ``status`` and the check in progress.
    must_enroll: bool = False
    methods: list[Method] = field(default_factory=list)
    method_id: str | None = None
    challenge: Challenge | None = None
    challenge_error: str | None = None
    challenge_locked: bool = False  # the refusal was a locked method: trying again cannot work
    # Setting up a method.
    registration: Registration | None = None
    push: Challenge | None = None
    phone: Challenge | None = None
    passkey: Challenge | None = None
    registered: Registered | None = None
    # The idempotency of a method's setup: a retried start (a timeout, a reload, Back) of the
    # same setup gets the same method, never a second one; a new key after each success.
    setup_nonce: str = field(default_factory=lambda: secrets.token_hex(16))
    # The Data Access Agreement as shown (consent's ``present``), to accept that very text.
    agreement: dict[str, Any] | None = None
    # Security info, signed in to the portal: adding a method (the setup screens again), the
    # default method challenged again for a fresh check (then back to ``return_to``), and what
    # the page says after a change (post/redirect/get).
    adding: bool = False
    step_up: bool = False
    return_to: str | None = None
    notice: str | None = None

    def setup_key(self, command: str, **values: Any) -> str:
        """The idempotency key for starting this setup with these values (another number or
        app is another setup, so never a key reused for a different request)."""
        text = json.dumps([self.setup_nonce, command, values], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def method_token(self) -> str | None:
        """What verification is shown for a method's screens: on the portal, the MFA sign-in
        (adding a method needs a fresh one); before, the password step's token."""
        return self.mfa_token if self.stage == "portal" else self.password_token

    def sign_in_proof(self) -> dict[str, str] | None:
        """What shows credentials this session's sign-in is still current: the console's
        principal, else the first step's token (it carries when the person signed in)."""
        if self.principal:
            return {"principal": self.principal}
        if self.password_token:
            return {"token": self.password_token, "stage": "password"}
        if self.change_token:
            return {"token": self.change_token, "stage": "password_change"}
        return None

    def forget(self) -> None:
        """Drops everything but the id and the timestamps, tokens first (at sign-out)."""
        for f in dataclasses.fields(self):
            if f.name in ("id", "created", "seen", "csrf"):
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
                else f.default
            setattr(self, f.name, default)


class SessionStore:
    def __init__(self, idle_seconds: float, absolute_seconds: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.idle = idle_seconds
        self.absolute = absolute_seconds
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        now = self.clock.monotonic()
        session = Session(id=secrets.token_urlsafe(32), created=now, seen=now)
        with self._lock:
            self._sweep(now)
            self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> tuple[Session | None, bool]:
        """The live session for ``session_id``, and whether one existed but timed out."""
        if not session_id:
            return None, False
        now = self.clock.monotonic()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None, False
            if self._ended(session, now):
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
        session.forget()

    def drop_user(self, username: str) -> int:
        """Ends every session of ``username`` (its account was reset); how many there were."""
        wanted = username.strip().lower()
        with self._lock:
            ended = [s for s in self._sessions.values()
                     if s.username is not None and s.username.strip().lower() == wanted]
            for session in ended:
                del self._sessions[session.id]
        for session in ended:
            session.forget()
        return len(ended)

    def __len__(self) -> int:
        return len(self._sessions)

    def _ended(self, session: Session, now: float) -> bool:
        return now - session.seen > self.idle or now - session.created > self.absolute

    def _sweep(self, now: float) -> None:
        if len(self._sessions) < MAX_SESSIONS:
            return
        for sid, s in list(self._sessions.items()):
            if self._ended(s, now):
                del self._sessions[sid]
        while len(self._sessions) >= MAX_SESSIONS:  # oldest first
            del self._sessions[min(self._sessions, key=lambda k: self._sessions[k].seen)]
