"""What every page shares: rendering with the session's CSRF token, bus calls, guards, errors."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from services.portal.methods import Capabilities
from services.portal.security import Throttle, csrf_ok
from services.portal.sessions import Session, SessionStore, Stage
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AuthenticationFailed, RekeyError, Unavailable
from shared.network import TrustedProxies, parse_address
from shared.settings import Settings
from shared.tokens import RESET_REFUSAL

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"

env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


@dataclass(frozen=True)
class Problem:
    title: str
    status: int
    advice: str


# RekeyError codes -> what a person sees. The service's own message is shown under the title.
PROBLEMS: dict[str, Problem] = {
    "authentication_failed": Problem("Please sign in again", 401,
                                     "Your sign-in has ended or was not accepted."),
    "locked": Problem("Your account is locked", 403,
                      "Call the help desk: they can check who you are and unlock it."),
    "expired": Problem("This has expired", 403,
                       "Ask the help desk for a new one, then sign in again."),
    "unavailable": Problem("The service is unavailable", 503,
                           "Part of the portal is not answering right now. Wait a minute and "
                           "try again."),
    "not_found": Problem("Not found", 404, "Check what you typed, or go back and try again."),
    "not_allowed": Problem("Not allowed", 403, "This action is not allowed for you."),
    "conflict": Problem("Already done", 409, "Reload the page to see the current state."),
    "rate_limited": Problem("Too many attempts", 429,
                            "Wait a few minutes, then try again, or use another method."),
    "invalid_request": Problem("Please check what you entered", 400,
                               "Go back and correct it."),
}
GENERIC = Problem("Something went wrong", 500,
                  "We could not finish this. Try again; if it keeps happening, call the help desk.")


class Portal:
    """The portal's process-wide state: settings, the bus connection, sessions, throttles."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions = SessionStore(
            settings.portal_idle_minutes * 60, settings.portal_session_hours * 3600, clock
        )
        self.sign_in_throttle = Throttle(settings.portal_sign_in_attempts, 60.0, clock=clock)
        self.form_throttle = Throttle(max(settings.portal_sign_in_attempts, 10), 60.0, clock=clock)
        self.capabilities = Capabilities(clock)
        self.proxies = TrustedProxies(settings.trusted_proxies)
        self._nc: Any = None
        self._client: RekeyClient | None = None
        # Requests arriving together before the first connection wait for one: each used to
        # open its own, and all but the last stayed open, unused, reconnecting for ever.
        self._connecting = asyncio.Lock()

    def _connected(self) -> RekeyClient | None:
        if self._client is None or self._nc is None or self._nc.is_closed:
            return None
        return self._client

    async def client(self) -> RekeyClient:
        if (client := self._connected()) is not None:
            return client
        async with self._connecting:
            client = self._connected()
            if client is None:
                try:
                    self._nc = await connect(self.settings, "portal", attempts=2)
                except ConnectionError as exc:
                    raise Unavailable(
                        "The portal cannot reach its services. Try again shortly.") from exc
                client = self._client = RekeyClient(self._nc, timeout=10)
            return client

    @property
    def connection(self) -> Any:
        """The bus connection (None before the first request)."""
        return self._nc

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        client = await self.client()
        return await client.call(service, command, **payload)

    async def check_current(self, session: Session) -> None:
        """Asks credentials whether the session's sign-in predates the user's last reset (at
        every request: nothing the portal missed while away can keep a session alive). If it
        does, every session of that user ends and ``AuthenticationFailed`` says why."""
        proof = session.sign_in_proof()
        if proof is None or not session.username:
            return
        try:
            await self.call("credentials", "session_check", username=session.username, **proof)
        except AuthenticationFailed as refused:
            if refused.message == RESET_REFUSAL:  # the account was reset: all its sessions end
                ended = self.sessions.drop_user(session.username)
                log.info("ended %d portal session(s) of a reset account", ended)
            else:  # this sign-in alone has run out (e.g. an agent's principal expired)
                self.sessions.drop(session)
            raise

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()


def portal_of(request: Request) -> Portal:
    return request.app.state.portal


def session_of(request: Request) -> Session | None:
    return getattr(request.state, "session", None)


def ensure_session(request: Request) -> Session:
    session = session_of(request)
    if session is None:
        session = portal_of(request).sessions.new()
        request.state.session = session
    return session


def start_signed_in(request: Request, stage: Stage, username: str) -> Session:
    """A new session id at sign-in: whatever id the browser had before is dropped."""
    session = portal_of(request).sessions.rotate(session_of(request))
    session.stage, session.username = stage, username
    request.state.session = session
    return session


def sign_out(request: Request) -> None:
    session = session_of(request)
    if session is not None:
        portal_of(request).sessions.drop(session)
    request.state.session = None


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    session = ensure_session(request)
    portal = portal_of(request)
    html = env.get_template(template).render(
        request=request,
        csrf=session.csrf,
        session=session,
        portal_name=portal.settings.portal_name,
        helpdesk=portal.settings.helpdesk_contact,
        dev_pages=portal.settings.portal_dev_pages,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def problem_page(request: Request, error: RekeyError | None, *, title: str | None = None,
                 status: int | None = None, advice: str | None = None,
                 next_url: str = "/", next_label: str = "Go to the start") -> HTMLResponse:
    problem = PROBLEMS.get(error.code, GENERIC) if error is not None else GENERIC
    message = error.message if error is not None and error.code in PROBLEMS else ""
    return render(
        request, "problem.html", status or problem.status,
        title=title or problem.title, message=message, advice=advice or problem.advice,
        next_url=next_url, next_label=next_label,
    )


class CsrfRefused(Exception):
    pass


async def form_of(request: Request) -> dict[str, str]:
    """The posted form, once its CSRF token and origin are checked."""
    session = session_of(request)
    origin = request.headers.get("origin")
    if origin and origin != "null":
        expected = f"{request.url.scheme}://{request.url.netloc}"
        if origin != expected:
            raise CsrfRefused
    form = await request.form()
    if session is None or not csrf_ok(session.csrf, form.get("csrf")):
        raise CsrfRefused
    return {k: v for k, v in form.items() if isinstance(v, str)}


def client_address(request: Request) -> str:
    """The real client's address: the TCP peer, or behind a trusted proxy (and only then) the
    rightmost ``X-Forwarded-For`` hop that is not a trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    return portal_of(request).proxies.client_address(
        peer, request.headers.getlist("x-forwarded-for")
    )


def client_context(request: Request) -> dict[str, str] | None:
    """The ``client`` the portal sends with a command (shared.contracts.client.ClientContext):
    the real client address and the browser's user agent; None without an IP address."""
    address = client_address(request)
    if parse_address(address) is None:
        return None
    return {"address": address, "user_agent": request.headers.get("user-agent", "")[:300]}


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response
