"""The guide's Phone screens: "I want to set up a different method" -> Phone -> the number,
"Text me a code" or "Call me" -> the code box, or the page that waits for the call to be
answered with # -> "Success!". Verification does the work (``start_phone_registration``,
``resend_code``, ``verify_code``, ``challenge_status``); nothing here keeps the number.
"""

from __future__ import annotations

from typing import Any

import phonenumbers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.portal.flow import CODE, at_stage, enrolling, progress, registered, where_next
from services.portal.web import ensure_session, form_of, portal_of, redirect, render, session_of
from shared.errors import InvalidRequest, RateLimited

# "What phone number would you like to use?": United States (+1) first.
_OTHERS = {
    "CA": "Canada", "GB": "United Kingdom", "IE": "Ireland", "DE": "Germany",
    "FR": "France", "IN": "India", "MX": "Mexico", "PR": "Puerto Rico",
}
COUNTRIES: list[tuple[str, str]] = [
    ("US", "United States (+1)"),
    *sorted(((r, f"{n} (+{phonenumbers.country_code_for_region(r)})") for r, n in _OTHERS.items()),
            key=lambda item: item[1]),
]
CHANNELS = {"sms": "Text me a code", "call": "Call me"}
DIRECT_LINE = ("IMPORTANT: If selecting this option, you will need to have access to this phone "
               "number each time you log in to the {portal}. It must be a direct line.")
ENDED = {
    "expired": "The call has expired.",
    "failed": "The call was not answered with the # key.",
    "superseded": "A newer call or code replaced this one.",
}
ANSWERED = "Call answered. Your phone was registered successfully."


def _phone(request: Request) -> dict[str, Any] | None:
    session = session_of(request)
    return session.get("phone") if session else None


def _reads_code(request: Request, phone: dict[str, Any]) -> bool:
    """A text, or a call that reads out a code (REKEY_CALL_MODE=read_code), takes the code box."""
    return phone.get("kind") == "sms" or portal_of(request).settings.call_mode == "read_code"


def _form(request: Request, status: int = 200, *, values: dict[str, str] | None = None,
          errors: dict[str, str] | None = None) -> Response:
    portal = portal_of(request)
    return render(
        request, "phone.html", status, countries=COUNTRIES, channels=CHANNELS,
        values=values or {"country": "US", "number": "", "channel": "sms"}, errors=errors or {},
        direct_line=DIRECT_LINE.format(portal=portal.settings.portal_name),
        **progress("phone", "Phone number"),
    )


async def phone_number(request: Request) -> Response:
    """ "Phone": the country, the number, "Text me a code" / "Call me", then Next."""
    if not enrolling(request):
        return redirect(where_next(request))
    portal = portal_of(request)
    known = await portal.capabilities.refresh(await portal.client())
    if not known.get("phone"):
        return render(request, "not_yet.html", 501, method_title="Phone", offered=False)
    if request.method == "GET":
        return _form(request)
    form = await form_of(request)
    values = {"country": form.get("country", "US"), "number": form.get("number", "").strip(),
              "channel": form.get("channel", "")}
    errors: dict[str, str] = {}
    if values["country"] not in dict(COUNTRIES):
        errors["country"] = "Choose a country or region from the list."
        values["country"] = "US"
    if not values["number"]:
        errors["number"] = "Enter your phone number, for example (508) 555-0142."
    elif len(values["number"]) > 32:
        errors["number"] = "That is too long for a phone number. Check the number."
    if values["channel"] not in CHANNELS:
        errors["channel"] = "Choose “Text me a code” or “Call me”."
    if errors:
        return _form(request, 400, values=values, errors=errors)
    session = ensure_session(request)
    try:
        answer = await portal.call(
            "verification", "start_phone_registration", username=session.username,
            token=session.get("password_token"), number=values["number"],
            country=values["country"], channel=values["channel"],
        )
    except InvalidRequest as exc:
        return _form(request, 400, values=values, errors={"number": exc.message})
    except RateLimited as exc:
        return _form(request, 429, values=values, errors={"form": exc.message})
    session.data["phone"] = {k: answer.get(k) for k in
                             ("method_id", "challenge_id", "kind", "channel", "masked_phone",
                              "prompt")}
    return redirect("/security-info/phone/code" if _reads_code(request, answer)
                    else "/security-info/phone/call")


def _code_page(request: Request, status: int = 200, *, error: str | None = None,
               notice: str | None = None) -> Response:
    return render(request, "phone_code.html", status, phone=_phone(request), error=error,
                  notice=notice, **progress("phone", "Check the phone"))


async def phone_code(request: Request) -> Response:
    """ "We just sent a 6 digit code to +1 ••• ••• 1234. Enter the code below." """
    phone = _phone(request)
    if not enrolling(request) or not phone:
        return redirect(where_next(request) if not enrolling(request) else "/security-info/phone")
    if request.method == "GET":
        sent = request.query_params.get("sent") == "1"
        return _code_page(request, notice="We sent a new code. The one before no longer works."
                          if sent else None)
    form = await form_of(request)
    code = form.get("code", "").replace(" ", "")
    if not CODE.match(code):
        return _code_page(request, 400, error="Enter the 6-digit code we sent, without spaces.")
    session = ensure_session(request)
    try:
        answer = await portal_of(request).call(
            "verification", "verify_code", username=session.username,
            token=session.get("password_token"), method_id=phone["method_id"], code=code,
        )
    except InvalidRequest as exc:
        return _code_page(request, 400, error=exc.message)
    registered(request, answer)
    return redirect("/security-info/success")


async def phone_resend(request: Request) -> Response:
    """ "Resend code" / "Call me again": a fresh code or call; the one before stops working."""
    phone = _phone(request)
    if not enrolling(request) or not phone:
        return redirect(where_next(request) if not enrolling(request) else "/security-info/phone")
    await form_of(request)
    session = ensure_session(request)
    try:
        answer = await portal_of(request).call(
            "verification", "resend_code", username=session.username,
            token=session.get("password_token"), method_id=phone["method_id"],
        )
    except (RateLimited, InvalidRequest) as exc:
        if _reads_code(request, phone):
            return _code_page(request, 429, error=exc.message)
        return _call_page(request, 429, error=exc.message, ended=True)
    phone.update(challenge_id=answer.get("challenge_id"), prompt=answer.get("prompt"))
    session.data["phone"] = phone
    if _reads_code(request, phone):
        return redirect("/security-info/phone/code?sent=1")
    return redirect("/security-info/phone/call")


def _call_page(request: Request, status: int = 200, *, error: str | None = None,
               notice: str | None = None, ended: bool = False) -> Response:
    return render(request, "phone_call.html", status, phone=_phone(request), error=error,
                  notice=notice, ended=ended, **progress("phone", "Check the phone"))


async def _call_state(request: Request) -> dict[str, Any] | None:
    phone = _phone(request)
    if not phone:
        return None
    session = ensure_session(request)
    answer = await portal_of(request).call(
        "verification", "challenge_status", username=session.username,
        token=session.get("password_token"), challenge_id=phone["challenge_id"],
    )
    if answer.get("state") == "verified" and answer.get("mfa_token"):
        registered(request, answer, phone_message=answer.get("message") or ANSWERED)
    return answer


async def phone_call(request: Request) -> Response:
    """ "We're calling +1 ••• ••• 1234 now.": the page waits (polling, see portal.js); without
    JavaScript, "Check again" asks once more."""
    session = session_of(request)
    if at_stage(request, "mfa") and session is not None and session.get("just_registered"):
        return redirect("/security-info/phone/answered")
    if not enrolling(request) or not _phone(request):
        return redirect(where_next(request) if not enrolling(request) else "/security-info/phone")
    if request.method == "GET":
        return _call_page(request)
    await form_of(request)
    answer = await _call_state(request) or {}
    state = answer.get("state")
    if state == "verified":
        return redirect("/security-info/phone/answered")
    if state == "pending":
        return _call_page(request, notice="Not answered yet. Answer the call and press the # key, "
                                          "then choose Check again.")
    return _call_page(request, 409, error=ENDED.get(state or "", "The call did not succeed."),
                      ended=True)


async def phone_call_status(request: Request) -> Response:
    """Polled (JSON) while the page waits for the call to be answered."""
    session = session_of(request)
    if at_stage(request, "mfa") and session is not None and session.get("just_registered"):
        return JSONResponse({"state": "verified", "next": "/security-info/phone/answered"})
    if not enrolling(request):
        return JSONResponse({"state": "signed_out", "next": "/sign-in"})
    answer = await _call_state(request)
    if answer is None:
        return JSONResponse({"state": "none", "next": "/security-info/phone"})
    state = answer.get("state")
    result = {"state": state, "message": ENDED.get(state or "", answer.get("message", ""))}
    if state == "verified":
        result["next"] = "/security-info/phone/answered"
    return JSONResponse(result)


async def phone_answered(request: Request) -> Response:
    """ "✓ Call answered. Your phone was registered successfully." -> Next -> "Success!" """
    session = session_of(request)
    if enrolling(request) and _phone(request):
        answer = await _call_state(request) or {}
        if answer.get("state") != "verified":
            return redirect("/security-info/phone/call")
    if not at_stage(request, "mfa") or not (session and session.get("just_registered")):
        return redirect(where_next(request))
    return render(request, "phone_answered.html", message=session.get("phone_message") or ANSWERED,
                  **progress("phone", "Check the phone"))


def routes() -> list[Route]:
    return [
        Route("/security-info/phone", phone_number, methods=["GET", "POST"]),
        Route("/security-info/phone/code", phone_code, methods=["GET", "POST"]),
        Route("/security-info/phone/resend", phone_resend, methods=["POST"]),
        Route("/security-info/phone/call", phone_call, methods=["GET", "POST"]),
        Route("/security-info/phone/call/status", phone_call_status),
        Route("/security-info/phone/answered", phone_answered),
    ]
