"""Passkeys and security keys for users: set one up ("I want to set up a different method",
Security info's "Add sign-in method") and sign in with one. The page holds verification's
options; ``static/passkey.js`` asks the browser's authenticator and posts its answer, which
verification checks (``shared.passkeys``, the same machinery as the agents' passkeys)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.flow import enrolling, progress, registered, start_setup, where_next
from services.portal.sessions import Challenge
from services.portal.web import client_context, ensure_session, form_of, portal_of, redirect, render
from shared.errors import AuthenticationFailed, Conflict


async def _create_page(request: Request, status: int = 200, error: str | None = None) -> Response:
    session = ensure_session(request)
    answer = await start_setup(request, "start_passkey_registration", {},
                               client=client_context(request))
    session.passkey = Challenge.of(answer)  # the registration's challenge, until answered
    return render(request, "passkey_setup.html", status, options=answer["options"], error=error,
                  **progress("passkey", "Create a passkey"))


async def answered(request: Request, command: str, challenge: Challenge | None) -> Any:
    """The browser's answer to ``challenge``, as the page posted it, checked by verification's
    ``command``: its reply, or None when there is no challenge or the page posted no answer."""
    form = await form_of(request)
    session = ensure_session(request)
    if challenge is None or not challenge.challenge_id or not form.get("credential"):
        return None
    return await portal_of(request).call(
        "verification", command, username=session.username, token=session.method_token,
        challenge_id=challenge.challenge_id, credential=form["credential"])


async def setup(request: Request) -> Response:
    """GET: "Create a passkey" with fresh options; POST: the browser's new credential."""
    if not enrolling(request):
        return redirect(where_next(request))
    if request.method == "GET":
        return await _create_page(request)
    session = ensure_session(request)
    try:
        answer = await answered(request, "finish_passkey_registration", session.passkey)
    except (AuthenticationFailed, Conflict) as exc:
        return await _create_page(request, 400, exc.message)
    if answer is None:
        return await _create_page(request, 400, "The passkey was not created. Choose "
                                                "“Create a passkey” and follow your browser.")
    session.passkey = None
    registered(session, answer, "Your passkey was created.")
    return redirect("/security-info/success")


def routes() -> list[Route]:
    return [Route("/security-info/passkey", setup, methods=["GET", "POST"])]
