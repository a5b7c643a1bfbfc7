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

from services.portal.flow import STILL_WORKS, at_stage, check_code, enrolling, where_next
from services.portal.passkey import answered
from services.portal.sessions import Challenge, Session
from services.portal.web import ensure_session, form_of, portal_of, redirect, render
from shared.errors import AuthenticationFailed, Locked, RekeyError

APP = "authenticator_app"
PASSKEY = "passkey"


async def begin_challenge(request: Request, method_id: str | None = None,
                          channel: str | None = None) -> str | None:
    """Ask verification to challenge ``method_id`` (default: the default method; ``channel``
    "app": an app's code rather than a notification). A refusal (too many texts, a locked
    method) is kept to be shown with the other ways to sign in; its error code is returned."""
    session = ensure_session(request)
    session.challenge_error, session.challenge_locked = None, False
    try:
        answer = await portal_of(request).call(
            "verification", "start_challenge", username=session.username,
            token=session.method_token, method_id=method_id, channel=channel,
        )
    except AuthenticationFailed:
        raise
    except RekeyError as exc:
        session.challenge = None
        session.challenge_error, session.challenge_locked = exc.message, exc.code == "locked"
        if method_id:
            session.method_id = method_id
        return exc.code
    session.challenge = Challenge.of(answer)
    session.method_id = answer.get("method_id")
    return None


def _ways(session: Session) -> list[dict[str, str]]:
    """The ways offered under "Sign in another way": the other methods, and a code for the
    current app when it was sent a notification."""
    current = session.method_id
    pushed = session.challenge is not None and session.challenge.channel == "push"
    ways = []
    for m in session.methods:
        if m.locked:
            continue
        other = m.method_id != current
        if m.method_type == APP:
            if other and m.push:
                ways.append({"method_id": m.method_id, "way": "challenge",
                             "label": "Approve a request on my Microsoft Authenticator app"})
            if other or pushed:
                ways.append({"method_id": m.method_id, "way": "code",
                             "label": "Use a verification code from my authenticator app"})
        elif m.method_type == PASSKEY:
            if other:
                ways.append({"method_id": m.method_id, "way": "challenge",
                             "label": "Use my passkey or security key"})
        elif other:
            verb = "Call" if m.channel == "call" else "Text"
            ways.append({"method_id": m.method_id, "way": "challenge",
                         "label": f"{verb} {m.masked_phone or 'my phone'}"})
    return ways


def _page(request: Request, status: int = 200, *, error: str | None = None,
          notice: str | None = None, ended: bool = False, code_ok: bool = False) -> Response:
    """``code_ok``: the error is not about a code typed (a refused resend): the box is fine."""
    session = ensure_session(request)
    challenge = session.challenge
    return render(
        request, "sign_in_challenge.html", status, challenge=challenge,
        problem=session.challenge_error, locked=session.challenge_locked,
        waits=challenge is not None and not challenge.takes_code and challenge.channel != "passkey",
        error=error, notice=notice, code_ok=code_ok,
        ended=ended, others=bool(_ways(session)),
    )


def _sent_again(challenge: Challenge | None) -> str:
    """What "Resend code", "Call me again" or "Send a new request" did, in words."""
    channel = challenge.channel if challenge else None
    return {"push": "We sent a new request to your app. The earlier one no longer works.",
            "call": "We are calling you again."}.get(channel or "", "We sent a new code.")


async def _finish(request: Request, answer: dict[str, Any]) -> str:
    """The method's check passed: where the person goes now."""
    session = ensure_session(request)
    session.challenge = session.challenge_error = session.password_token = None
    session.mfa_token = answer["mfa_token"]
    if session.step_up:  # a fresh check for Security info: back to where it was asked
        session.step_up = False
        return session.return_to or "/security-info"
    session.stage = "mfa"
    consent = await portal_of(request).call("consent", "status", username=session.username,
                                            token=session.mfa_token)
    if consent.get("current"):
        session.stage = "portal"
    return where_next(request)


async def step_up(request: Request, return_to: str) -> Response:
    """Security info needs a fresh check: challenge the default method again (the sign-in
    pages, on the portal), then back to ``return_to``."""
    session = ensure_session(request)
    session.step_up, session.return_to, session.method_id = True, return_to, None
    await begin_challenge(request)
    return redirect("/sign-in/verify")


def _signing_in(request: Request) -> bool:
    session = ensure_session(request)
    if session.stage == "portal":
        return session.step_up
    return at_stage(request, "password") and not enrolling(request)


async def verify(request: Request) -> Response:
    """The challenge's page (GET), and the code from a text, a call or the app (POST)."""
    if not _signing_in(request):
        return redirect(where_next(request))
    session = ensure_session(request)
    if request.method == "GET":
        sent = request.query_params.get("sent") == "1"
        return _page(request, notice=_sent_again(session.challenge) if sent else None)
    form = await form_of(request)
    challenge = session.challenge
    if challenge is None or not challenge.takes_code:
        return redirect("/sign-in/verify")
    try:
        answer, error = await check_code(
            request, form, challenge.method_id, challenge.code_length,
            f"Enter the {challenge.code_length}-digit code, without spaces.",
        )
    except Locked as exc:  # that code locked the method: no code box any more
        session.challenge = None
        session.challenge_error, session.challenge_locked = exc.message, True
        return _page(request, 403)
    if answer is None:
        return _page(request, 400, error=error)
    return redirect(await _finish(request, answer))


async def _state(request: Request) -> dict[str, Any]:
    session = ensure_session(request)
    challenge = session.challenge
    if challenge is None or not challenge.challenge_id:
        return {"state": "none"}
    answer = await portal_of(request).call(
        "verification", "challenge_status", username=session.username,
        token=session.method_token, challenge_id=challenge.challenge_id,
    )
    if answer.get("state") == "verified" and answer.get("mfa_token"):
        answer["next"] = await _finish(request, answer)
    return answer


async def verify_status(request: Request) -> Response:
    """Polled (JSON) by the page while it waits for the approval or the call."""
    if at_stage(request, "mfa", "portal") and not _signing_in(request):
        return JSONResponse({"state": "verified", "next": where_next(request)})
    if not _signing_in(request):
        return JSONResponse({"state": "signed_out", "next": "/sign-in"})
    answer = await _state(request)
    state = answer.get("state")
    result = {"state": state, "message": answer.get("message", "")}  # verification's words
    if state == "verified":
        result["next"] = answer.get("next") or where_next(request)
    return JSONResponse(result)


async def verify_check(request: Request) -> Response:
    """ "Check again", for a browser without JavaScript."""
    if not _signing_in(request):
        return redirect(where_next(request))
    await form_of(request)
    answer = await _state(request)
    state = answer.get("state")
    if state == "verified":
        return redirect(answer.get("next") or where_next(request))
    if state == "pending":
        return _page(request, notice="Not yet. Finish on your phone, then choose Check again.")
    return _page(request, 409, error=answer.get("message") or "This request did not succeed.",
                 ended=True)


async def verify_passkey(request: Request) -> Response:
    """The passkey's answer to the sign-in challenge (posted by ``static/passkey.js``)."""
    if not _signing_in(request):
        return redirect(where_next(request))
    session = ensure_session(request)
    challenge = session.challenge
    pending = challenge if challenge is not None and challenge.channel == "passkey" else None
    try:
        answer = await answered(request, "verify_passkey", pending)
    except AuthenticationFailed as exc:
        await begin_challenge(request, challenge.method_id if challenge else None)  # try again
        return _page(request, 401, error=exc.message)
    if answer is None:
        return _page(request, 400, error="Your passkey was not used. Choose “Use your passkey” "
                                         "and follow your browser.")
    return redirect(await _finish(request, answer))


async def verify_again(request: Request) -> Response:
    """ "Resend code", "Call me again", "Send a new request": a fresh challenge, same method."""
    if not _signing_in(request):
        return redirect(where_next(request))
    await form_of(request)
    session = ensure_session(request)
    previous = session.challenge
    refused = await begin_challenge(request, session.method_id)
    if refused == "rate_limited" and previous is not None and previous.takes_code:
        # Nothing was sent and nothing changed: the code already sent still signs in.
        error = f"{session.challenge_error} {STILL_WORKS}"
        session.challenge, session.challenge_error = previous, None
        return _page(request, 429, error=error, code_ok=True)
    if session.challenge_error:
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
            await begin_challenge(request, chosen["method_id"],
                                  "app" if chosen["way"] == "code" else None)
            return redirect("/sign-in/verify")
    return render(request, "other_ways.html", ways=ways)


def routes() -> list[Route]:
    return [
        Route("/sign-in/verify", verify, methods=["GET", "POST"]),
        Route("/sign-in/verify/status", verify_status),
        Route("/sign-in/verify/check", verify_check, methods=["POST"]),
        Route("/sign-in/verify/again", verify_again, methods=["POST"]),
        Route("/sign-in/verify/passkey", verify_passkey, methods=["POST"]),
        Route("/sign-in/other-ways", other_ways, methods=["GET", "POST"]),
    ]
