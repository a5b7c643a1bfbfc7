"""Later sign-ins: after the password, the default method's challenge (verification's
``start_challenge``), and "Sign in another way" with the other registered methods.

- an app with notifications: the number to type in the app; the page waits for the approval
- a phone by text, or an app without notifications: the code box
- a phone by call: the page waits until the call is answered with #
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.portal.flow import CODE, at_stage, enrolling, where_next
from services.portal.web import ensure_session, form_of, portal_of, redirect, render
from shared.errors import AuthenticationFailed, InvalidRequest, RekeyError

KEPT = ("method_id", "challenge_id", "kind", "number", "prompt", "masked_phone", "label",
        "channel", "expires_at")
WAITING = ("push", "call")  # kinds the page waits on; the others take a code
ENDED = {
    "denied": "The request was denied on your device.",
    "expired": "This request has expired.",
    "failed": "This request did not succeed.",
    "superseded": "A newer request replaced this one.",
}
APP = "authenticator_app"


def _waits(request: Request, challenge: dict[str, Any]) -> bool:
    """A call that reads out a code (REKEY_CALL_MODE=read_code) takes a code like a text."""
    if challenge.get("kind") == "call":
        return portal_of(request).settings.call_mode != "read_code"
    return challenge.get("kind") in WAITING


async def begin_challenge(request: Request, method_id: str | None = None) -> None:
    """Ask verification to challenge ``method_id`` (default: the default method). A refusal
    (too many texts, a locked method) is kept to be shown with the other ways to sign in."""
    session = ensure_session(request)
    session.data.pop("challenge_error", None)
    try:
        answer = await portal_of(request).call(
            "verification", "start_challenge", username=session.username,
            token=session.get("password_token"), method_id=method_id,
        )
    except AuthenticationFailed:
        raise
    except RekeyError as exc:
        session.data.pop("challenge", None)
        session.data["challenge_error"] = exc.message
        if method_id:
            session.data["method_id"] = method_id
        return
    session.data["challenge"] = {k: answer.get(k) for k in KEPT}
    session.data["method_id"] = answer.get("method_id")
    session.data["others"] = answer.get("others", [])


def _ways(session: Any) -> list[dict[str, str]]:
    """The ways offered under "Sign in another way": the other methods, and a code for the
    current app when it was sent a notification."""
    current = session.get("method_id")
    methods = session.get("methods", [])
    ways = []
    for m in methods:
        if m.get("locked"):
            continue
        if m["method_type"] == APP:
            if m["method_id"] != current and m.get("push"):
                ways.append({"method_id": m["method_id"], "way": "challenge",
                             "label": "Approve a request on my Microsoft Authenticator app"})
            if m["method_id"] != current or (session.get("challenge") or {}).get("kind") == "push":
                ways.append({"method_id": m["method_id"], "way": "code",
                             "label": "Use a verification code from my authenticator app"})
        elif m["method_id"] != current:
            verb = "Call" if m.get("channel") == "call" else "Text"
            ways.append({"method_id": m["method_id"], "way": "challenge",
                         "label": f"{verb} {m.get('masked_phone') or 'my phone'}"})
    return ways


def _page(request: Request, status: int = 200, *, error: str | None = None,
          notice: str | None = None, ended: bool = False) -> Response:
    session = ensure_session(request)
    challenge = session.get("challenge")
    problem = session.get("challenge_error")
    return render(
        request, "sign_in_challenge.html", status, challenge=challenge, problem=problem,
        waits=bool(challenge) and _waits(request, challenge), error=error, notice=notice,
        ended=ended, others=bool(_ways(session)),
    )


async def _finish(request: Request, answer: dict[str, Any]) -> None:
    session = ensure_session(request)
    for key in ("challenge", "challenge_error", "others", "password_token"):
        session.data.pop(key, None)
    session.data.update(stage="mfa", mfa_token=answer["mfa_token"])
    consent = await portal_of(request).call("consent", "status", username=session.username)
    if consent.get("current"):
        session.data["stage"] = "portal"


def _signing_in(request: Request) -> bool:
    return at_stage(request, "password") and not enrolling(request)


async def verify(request: Request) -> Response:
    """The challenge's page (GET), and the code from a text, a call or the app (POST)."""
    if not _signing_in(request):
        return redirect(where_next(request))
    session = ensure_session(request)
    if request.method == "GET":
        sent = request.query_params.get("sent") == "1"
        return _page(request, notice="We sent a new code." if sent else None)
    form = await form_of(request)
    challenge = session.get("challenge")
    if not challenge or _waits(request, challenge):
        return redirect("/sign-in/verify")
    code = form.get("code", "").replace(" ", "")
    if not CODE.match(code):
        return _page(request, 400, error="Enter the 6-digit code, without spaces.")
    try:
        answer = await portal_of(request).call(
            "verification", "verify_code", username=session.username,
            token=session.get("password_token"), method_id=challenge["method_id"], code=code,
        )
    except InvalidRequest as exc:
        return _page(request, 400, error=exc.message)
    await _finish(request, answer)
    return redirect(where_next(request))


async def _state(request: Request) -> dict[str, Any]:
    session = ensure_session(request)
    challenge = session.get("challenge") or {}
    if not challenge.get("challenge_id"):
        return {"state": "none"}
    answer = await portal_of(request).call(
        "verification", "challenge_status", username=session.username,
        token=session.get("password_token"), challenge_id=challenge["challenge_id"],
    )
    if answer.get("state") == "verified" and answer.get("mfa_token"):
        await _finish(request, answer)
    return answer


async def verify_status(request: Request) -> Response:
    """Polled (JSON) by the page while it waits for the approval or the call."""
    if at_stage(request, "mfa", "portal"):
        return JSONResponse({"state": "verified", "next": where_next(request)})
    if not _signing_in(request):
        return JSONResponse({"state": "signed_out", "next": "/sign-in"})
    answer = await _state(request)
    state = answer.get("state")
    result = {"state": state, "message": ENDED.get(state or "", answer.get("message", ""))}
    if state == "verified":
        result["next"] = where_next(request)
    return JSONResponse(result)


async def verify_check(request: Request) -> Response:
    """ "Check again", for a browser without JavaScript."""
    if not _signing_in(request):
        return redirect(where_next(request))
    await form_of(request)
    answer = await _state(request)
    state = answer.get("state")
    if state == "verified":
        return redirect(where_next(request))
    if state == "pending":
        return _page(request, notice="Not yet. Finish on your phone, then choose Check again.")
    return _page(request, 409, error=ENDED.get(state or "", "This request did not succeed."),
                 ended=True)


async def verify_again(request: Request) -> Response:
    """ "Resend code", "Call me again", "Send a new request": a fresh challenge, same method."""
    if not _signing_in(request):
        return redirect(where_next(request))
    await form_of(request)
    session = ensure_session(request)
    await begin_challenge(request, session.get("method_id"))
    if session.get("challenge_error"):
        return _page(request, 429)
    return redirect("/sign-in/verify?sent=1")


async def other_ways(request: Request) -> Response:
    if not _signing_in(request):
        return redirect(where_next(request))
    session = ensure_session(request)
    ways = _ways(session)
    if request.method == "POST":
        form = await form_of(request)
        chosen = next((w for w in ways if w["method_id"] == form.get("method_id")
                       and w["way"] == form.get("way")), None)
        if chosen is not None:
            if chosen["way"] == "code":
                label = next((m["label"] for m in session.get("methods", [])
                              if m["method_id"] == chosen["method_id"]), "your authenticator app")
                session.data.pop("challenge_error", None)
                session.data.update(method_id=chosen["method_id"], challenge={
                    **dict.fromkeys(KEPT), "method_id": chosen["method_id"], "kind": "totp",
                    "label": label})
            else:
                await begin_challenge(request, chosen["method_id"])
            return redirect("/sign-in/verify")
    return render(request, "other_ways.html", ways=ways)


def routes() -> list[Route]:
    return [
        Route("/sign-in/verify", verify, methods=["GET", "POST"]),
        Route("/sign-in/verify/status", verify_status),
        Route("/sign-in/verify/check", verify_check, methods=["POST"]),
        Route("/sign-in/verify/again", verify_again, methods=["POST"]),
        Route("/sign-in/other-ways", other_ways, methods=["GET", "POST"]),
    ]
