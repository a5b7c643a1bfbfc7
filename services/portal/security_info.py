"""Security info, signed in to the portal: the sign-in methods (type, label, masked number,
when added and last used, which is the default), add one (the setup screens again), change the
default, remove one.

Verification keeps every rule (not the last method, not the default, a fresh MFA check) and
says why it refuses; the portal shows its facts and words. Entering the page, and any change
verification refuses for want of a fresh check, challenges the default method again first.
Every change is a POST answered with a redirect to the list (post/redirect/get).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.challenge import step_up
from services.portal.flow import at_stage, enrolling, where_next
from services.portal.sessions import Method
from services.portal.web import client_context, ensure_session, form_of, portal_of, redirect, render
from shared.errors import AuthenticationFailed, RekeyError

HOME = "/security-info"
TYPE_NAMES = {"authenticator_app": "Authenticator app", "phone": "Phone", "passkey": "Passkey"}


def when(moment: str | None) -> str:
    """An ISO time as the page shows it (UTC, to the minute); "Never" when absent."""
    if not moment:
        return "Never"
    return f"{datetime.fromisoformat(moment):%Y-%m-%d %H:%M} UTC"


def rows(methods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**m, "type_name": TYPE_NAMES.get(m["method_type"], m["method_type"]),
             "added_text": when(m.get("added")), "last_used_text": when(m.get("last_used"))}
            for m in methods]


async def _info(request: Request) -> dict[str, Any]:
    session = ensure_session(request)
    info: dict[str, Any] = await portal_of(request).call(
        "verification", "security_info", username=session.username, token=session.mfa_token)
    session.methods = [Method.of(m) for m in info["methods"]]
    return info


async def overview(request: Request) -> Response:
    """ "Security info": the list, after a fresh check of the default method."""
    if enrolling(request) and not at_stage(request, "portal"):
        return redirect("/security-info/app/get-app")  # "Keep your account secure" first
    if not at_stage(request, "portal"):
        return redirect(where_next(request))
    session = ensure_session(request)
    session.adding, session.registration, session.phone, session.push = False, None, None, None
    session.registered = None
    info = await _info(request)
    if not info["fresh"]:
        return await step_up(request, HOME)
    notice, session.notice = session.notice, None
    return render(request, "security_info.html", methods=rows(info["methods"]), notice=notice,
                  error=None, fresh_minutes=info["fresh_minutes"],
                  removable=len(info["methods"]) > 1)


async def _change(request: Request, command: str, done: str, **payload: Any) -> Response:
    """A change the list's forms post: done, refused with verification's words, or (no
    fresh check any more) the default method challenged again first."""
    if not at_stage(request, "portal"):
        return redirect(where_next(request))
    session = ensure_session(request)
    try:
        await portal_of(request).call("verification", command, username=session.username,
                                      token=session.mfa_token, client=client_context(request),
                                      **payload)
    except AuthenticationFailed:
        await _info(request)
        return await step_up(request, HOME)
    except RekeyError as exc:
        session.notice = exc.message
        return redirect(HOME)
    session.notice = done
    return redirect(HOME)


async def make_default(request: Request) -> Response:
    form = await form_of(request)
    return await _change(request, "set_default_method",
                         "Your default sign-in method was changed.",
                         method_id=form.get("method_id", ""))


async def remove(request: Request) -> Response:
    """GET: "Remove this method?" with what it is; POST: removed, back to the list."""
    if not at_stage(request, "portal"):
        return redirect(where_next(request))
    method_id = request.path_params["method_id"]
    if request.method == "POST":
        await form_of(request)
        return await _change(request, "remove_method", "The sign-in method was removed.",
                             method_id=method_id)
    info = await _info(request)
    method = next((m for m in rows(info["methods"]) if m["method_id"] == method_id), None)
    if method is None:
        return redirect(HOME)
    return render(request, "security_info_remove.html", method=method)


async def add(request: Request) -> Response:
    """ "+ Add sign-in method": the setup's choice of methods, then its screens."""
    if not at_stage(request, "portal"):
        return redirect(where_next(request))
    await form_of(request)
    session = ensure_session(request)
    session.adding, session.registered = True, None
    return redirect("/security-info/methods")


def routes() -> list[Route]:
    return [
        Route(HOME, overview),
        Route("/security-info/default", make_default, methods=["POST"]),
        Route("/security-info/add", add, methods=["POST"]),
        Route("/security-info/remove/{method_id}", remove, methods=["GET", "POST"]),
    ]
