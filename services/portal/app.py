"""The portal's ASGI application: routes, the session/headers middleware, error pages."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.portal import (
    agent_sign_in,
    cancel,
    challenge,
    console,
    dev,
    manager,
    passkey,
    phone,
    security_info,
    user,
)
from services.portal.security import HEADERS
from services.portal.sessions import COOKIE
from services.portal.web import CsrfRefused, Portal, problem_page, render, sign_out
from shared import metrics
from shared.clock import SYSTEM_CLOCK, Clock
from shared.context import calling_as
from shared.errors import RekeyError
from shared.health import Check, CheckFn, HealthServer, nats_check, report, run_checks
from shared.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
UNCHECKED = ("/static/", "/healthz")  # no session's sign-in is checked for these
# Paths whose last part is a secret (a cancel link, an invitation): never in a log line.
SECRET_PATHS = ("/reset/cancel/", "/console/invite/")


def loggable_path(path: str) -> str:
    for prefix in SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "…"
    return path


class SessionAndHeaders(BaseHTTPMiddleware):
    """Loads the server-side session from its cookie, sets/clears the cookie, adds the security
    headers, and turns any failure into a page (never a stack trace)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        portal: Portal = request.app.state.portal
        sid = request.cookies.get(COOKIE)
        session, timed_out = portal.sessions.get(sid)
        request.state.session = session
        request.state.timed_out = timed_out
        try:
            channel = "console" if request.url.path.startswith("/console") else "portal"
            with calling_as(channel=channel, session_id=sid if session is not None else None):
                if session is not None and not request.url.path.startswith(UNCHECKED):
                    await portal.check_current(session)  # a reset since the sign-in ends it
                response = await call_next(request)
        except RekeyError as exc:  # from the check: the sign-in is not current, or no answer
            response = await on_rekey_error(request, exc)
        except Exception:
            log.exception("unexpected failure on %s %s", request.method,
                          loggable_path(request.url.path))
            response = problem_page(request, None)
        current = getattr(request.state, "session", None)
        if current is not None and current.id != sid:
            response.set_cookie(COOKIE, current.id, path="/", secure=True, httponly=True,
                                samesite="lax")
        elif current is None and sid:
            response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response


async def on_rekey_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RekeyError)
    if exc.code == "authentication_failed":  # a token expired: start again from sign-in
        sign_out(request)
        again = "/console/sign-in" if request.url.path.startswith("/console") else "/sign-in"
        return problem_page(request, exc, title="Please sign in again",
                            advice="For your security, each step must be finished in time.",
                            next_url=again, next_label="Sign in")
    return problem_page(request, exc)


async def on_csrf(request: Request, exc: Exception) -> Response:
    return render(request, "problem.html", 403, title="This form has expired",
                  message="The page was open too long, or the form did not come from this site.",
                  advice="Go back, reload the page and try again.", next_url="/",
                  next_label="Start again")


async def on_not_found(request: Request, exc: Exception) -> Response:
    return render(request, "problem.html", 404, title="Page not found", message="",
                  advice="Check the address, or start again.", next_url="/",
                  next_label="Go to the start")


async def on_method(request: Request, exc: Exception) -> Response:
    return render(request, "problem.html", 405, title="Not possible here", message="",
                  advice="Use the page's buttons.", next_url="/", next_label="Go to the start")


async def healthz(request: Request) -> Response:
    """The truth (as ``/readyz`` on the health port): 503 naming the cause while NATS is away."""
    portal: Portal = request.app.state.portal
    body = report(await run_checks(portal_checks(portal)))
    body["sessions"] = len(portal.sessions)
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


def portal_checks(portal: Portal) -> list[tuple[str, CheckFn]]:
    """Ready: the portal holds a live connection to NATS (it makes one if it has none)."""

    async def bus() -> Check:
        try:
            await portal.client()
        except RekeyError as exc:
            return Check("nats", False, exc.message)
        return await nats_check(portal.connection)()

    return [("nats", bus)]


class Timed:
    """Request latency and error counts per route (the route's pattern, never the raw path)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            endpoint = f"{scope['method']} {getattr(route, 'path', 'unmatched')}"
            metrics.REQUEST_SECONDS.labels(service="portal", endpoint=endpoint).observe(
                time.perf_counter() - started)
            if status[0] >= 400:
                metrics.REQUEST_ERRORS.labels(service="portal", endpoint=endpoint,
                                              code=str(status[0])).inc()


def create_app(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> Starlette:
    """``clock``: what session timeouts and throttles read (tests pass a ManualClock)."""
    if settings.portal_dev_pages:
        dev.check_dev_pages(settings)  # before anything is made
    portal = Portal(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        health = None
        if settings.health_port:
            checks = lambda: portal_checks(portal)  # noqa: E731
            health = HealthServer(settings.health_host, settings.health_port, ready=checks,
                                  live=list)
            await health.start()
        try:
            yield
        finally:
            if health is not None:
                await health.stop()
            await portal.close()

    routes: list[Route | Mount] = [
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *phone.routes(),  # before user's /security-info/{flow}/... patterns
        *passkey.routes(),
        *challenge.routes(),
        *security_info.routes(),
        *user.routes(),
        *console.routes(),
        *cancel.routes(),
        *agent_sign_in.routes(),
        *manager.routes(),
    ]
    if settings.portal_dev_pages:
        routes += dev.routes()
    app = Starlette(
        debug=False,
        routes=routes,
        middleware=[Middleware(Timed), Middleware(SessionAndHeaders)],
        exception_handlers={
            RekeyError: on_rekey_error,
            CsrfRefused: on_csrf,
            404: on_not_found,
            405: on_method,
        },
        lifespan=lifespan,
    )
    app.state.portal = portal
    return app


def display_url(settings: Settings) -> str:
    host = settings.portal_host
    if host in ("127.0.0.1", "0.0.0.0", "::", "::1", ""):
        host = "localhost"
    return f"http://{host}:{settings.portal_port}/"


def serve(settings: Settings) -> None:
    import uvicorn

    try:
        app = create_app(settings)
    except dev.DevPagesRefused as refused:
        log.error("%s", refused)
        raise SystemExit(2) from None
    log.info("portal on %s", display_url(settings))
    if settings.portal_dev_pages:
        log.warning("developer pages on: every caught mail, text and call at %sdev/",
                    display_url(settings))
    uvicorn.run(
        app, host=settings.portal_host, port=settings.portal_port,
        log_level=settings.log_level.lower(), server_header=False, proxy_headers=False,
        access_log=False,
    )
