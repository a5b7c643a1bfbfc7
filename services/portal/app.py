"""The portal's ASGI application: routes, the session/headers middleware, error pages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.portal import challenge, console, dev, phone, user
from services.portal.security import HEADERS
from services.portal.sessions import COOKIE
from services.portal.web import CsrfRefused, Portal, problem_page, render, sign_out
from shared.errors import RekeyError
from shared.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


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
            response = await call_next(request)
        except Exception:
            log.exception("unexpected failure on %s %s", request.method, request.url.path)
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
        return problem_page(request, exc, title="Please sign in again",
                            advice="For your security, each step must be finished in time.",
                            next_url="/sign-in", next_label="Sign in")
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
    return JSONResponse({"ok": True, "sessions": len(request.app.state.portal.sessions)})


def create_app(settings: Settings) -> Starlette:
    portal = Portal(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await portal.close()

    routes: list[Route | Mount] = [
        Route("/healthz", healthz),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *phone.routes(),  # before user's /security-info/{flow}/... patterns
        *challenge.routes(),
        *user.routes(),
        *console.routes(),
    ]
    if settings.portal_dev_pages:
        routes += dev.routes()
    app = Starlette(
        debug=False,
        routes=routes,
        middleware=[Middleware(SessionAndHeaders)],
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

    log.info("portal on %s", display_url(settings))
    uvicorn.run(
        create_app(settings), host=settings.portal_host, port=settings.portal_port,
        log_level=settings.log_level.lower(), server_header=False, proxy_headers=False,
        access_log=False,
    )
