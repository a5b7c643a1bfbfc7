"""Who did an action, through what, in which session, caused by which event: the context every
recorded event carries.

An edge sets the context of the work it starts (:func:`acting`): the bus endpoint from the
caller (the bus identity whose key signed the request, :mod:`shared.bus.callers`; the
``Rekey-Session`` header the portal's session), a consumer from the upstream event (its id is
the new events' ``causation_id``), the mail intake as ``mail``. A verified principal or
sign-in token adds who was authenticated (:func:`authenticated`). ``ServiceApplication``
stamps the current context on every event it records, as the private attribute ``_context``
(encrypted with the event's other state), and the envelope carries it as ``context`` and
``causation_id``.

What a caller says (its session id, its channel) is recorded as said, within what its identity
may say (the portal: ``portal`` or ``console``): the bus permissions already limit who may call
what, the caller's identity is verified by its signature, and the principal, when there is
one, is verified.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from shared.contracts.envelope import ActionContext

SESSION_HEADER = "Rekey-Session"
CHANNEL_HEADER = "Rekey-Channel"
# The channel a caller's bus identity implies, unless its principal says more precisely.
CHANNEL_OF_IDENTITY = {"portal": "portal", "operator": "cli", "auditor": "cli", "device": "app"}
CHANNELS = frozenset({"portal", "console", "cli", "mail", "api", "app", "system"})
# What each of those identities may state in ``Rekey-Channel``: the portal serves two kinds of
# page; the others are what their identity implies, whatever they state. (An identity not
# listed, such as the tests' inspector, may state any channel.)
STATED_CHANNELS = {"portal": frozenset({"portal", "console"}), "operator": frozenset({"cli"}),
                   "auditor": frozenset({"cli"}), "device": frozenset({"app"})}

_current: ContextVar[ActionContext | None] = ContextVar("rekey_action_context", default=None)
_outgoing: ContextVar[dict[str, str] | None] = ContextVar("rekey_outgoing_context", default=None)


def current() -> ActionContext | None:
    return _current.get()


def came_through(channel: str) -> bool:
    """Whether the request at hand came through that edge: the channel of its context, which
    only what the verified caller may state sets (:func:`from_request`); a command body's own
    claim is no evidence of it."""
    found = _current.get()
    return found is not None and found.channel == channel


@contextlib.contextmanager
def acting(context: ActionContext | None) -> Iterator[None]:
    """``context`` for the work done inside (and the worker threads it starts)."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


def authenticated(name: str, kind: str, *, session: str = "", channel: str = "") -> None:
    """A principal or token was verified: the action is that person's (called inside the
    worker thread that records, so the events it saves carry it)."""
    base = _current.get() or ActionContext()
    _current.set(base.model_copy(update={
        "principal": name, "principal_kind": kind,
        "session_id": session or base.session_id,
        "channel": channel if channel in CHANNELS else base.channel,
    }))


def from_request(caller: str | None, headers: dict[str, str] | None) -> ActionContext:
    """The context of a bus request: the caller's identity (its signature checked by
    :mod:`shared.bus.callers`), and what it says of its session and channel."""
    headers = headers or {}
    channel = headers.get(CHANNEL_HEADER)
    if channel not in STATED_CHANNELS.get(caller or "", CHANNELS):
        channel = CHANNEL_OF_IDENTITY.get(caller or "", "api")
    session = (headers.get(SESSION_HEADER) or "")[:64] or None
    return ActionContext(channel=channel, caller=caller, session_id=session)


SYSTEM = ActionContext(channel="system")  # no edge started the work: a timer, a sweep


def stamp(event: Any) -> None:
    """Record the current context on an event about to be saved (once: a retried save keeps
    the first stamp); work no edge started is the system's own."""
    context = _current.get() or SYSTEM
    if "_context" not in vars(event):
        object.__setattr__(event, "_context", context.model_dump(mode="json", exclude_none=True))


# --- the calling side (the portal) ---------------------------------------------------------
def session_reference(session_id: str) -> str:
    """What the services record of a portal session: a digest, never the cookie's value."""
    return hashlib.sha256(b"rekey-session:" + session_id.encode()).hexdigest()[:16]


@contextlib.contextmanager
def calling_as(*, channel: str, session_id: str | None) -> Iterator[None]:
    """Requests sent inside carry the channel and the session reference as headers."""
    headers = {CHANNEL_HEADER: channel}
    if session_id:
        headers[SESSION_HEADER] = session_reference(session_id)
    token = _outgoing.set(headers)
    try:
        yield
    finally:
        _outgoing.reset(token)


def outgoing_headers() -> dict[str, str] | None:
    return _outgoing.get()
