"""The guide's Phone screens: "I want to set up a different method" -> Phone -> the number,
"Text me a code" or "Call me" -> the code box, or the page that waits for the call to be
answered with # -> "Success!". Verification does the work (``start_phone_registration``,
``resend_code``, ``verify_code``, ``challenge_status``); nothing here keeps the number.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.portal.flow import (
    STILL_WORKS,
    enrolling,
    first_check,
    first_code,
    just_registered,
    progress,
    start_setup,
    where_next,
)
from services.portal.sessions import Challenge
from services.portal.web import (
    client_context,
    ensure_session,
    form_of,
    portal_of,
    redirect,
    render,
    session_of,
)
from shared.errors import InvalidRequest, RateLimited

CHANNELS = {"sms": "Text me a code", "call": "Call me"}
DIRECT_LINE = ("IMPORTANT: If selecting this option, you will need to have access to this phone "
               "number each time you log in to the {portal}. It must be a direct line.")


def _phone(request: Request) -> Challenge | None:
    session = session_of(request)
    return session.phone if session else None


async def countries(request: Request) -> list[tuple[str, str]]:
    """ "What phone number would you like to use?": verification's list, in its order
    (United States first), as (region, "United States (+1)")."""
    answer = await portal_of(request).call("verification", "phone_countries")
    return [(c["region"], f"{c['name']} (+{c['calling_code']})") for c in answer]


def _form(request: Request, choices: list[tuple[str, str]], status: int = 200, *,
          values: dict[str, str] | None = None, errors: dict[str, str] | None = None) -> Response:
    portal = portal_of(request)
    return render(
        request, "phone.html", status, countries=choices, channels=CHANNELS,
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
    choices = await countries(request)
    if request.method == "GET":
        return _form(request, choices)
    form = await form_of(request)
    values = {"country": form.get("country", "US"), "number": form.get("number", "").strip(),
              "channel": form.get("channel", "")}
    errors: dict[str, str] = {}
    if values["country"] not in dict(choices):
        errors["country"] = "Choose a country or region from the list."
        values["country"] = "US"
    if not values["number"]:
        errors["number"] = "Enter your phone number, for example (508) 555-0142."
    elif len(values["number"]) > 32:
        errors["number"] = "That is too long for a phone number. Check the number."
    if values["channel"] not in CHANNELS:
        errors["channel"] = "Choose “Text me a code” or “Call me”."
    if errors:
        return _form(request, choices, 400, values=values, errors=errors)
    session = ensure_session(request)
    try:
        answer = await start_setup(request, "start_phone_registration", values,
                                   client=client_context(request))
    except InvalidRequest as exc:
        return _form(request, choices, 400, values=values, errors={"number": exc.message})
    except RateLimited as exc:
        return _form(request, choices, 429, values=values, errors={"form": exc.message})
    session.phone = Challenge.of(answer)
    return redirect("/security-info/phone/code" if session.phone.takes_code
                    else "/security-info/phone/call")


def _code_page(request: Request, status: int = 200, *, error: str | None = None,
               notice: str | None = None, code_ok: bool = False) -> Response:
    """``code_ok``: the error is not about a code typed (a refused resend): the box is fine."""
    return render(request, "phone_code.html", status, phone=_phone(request), error=error,
                  notice=notice, code_ok=code_ok, **progress("phone", "Check the phone"))


async def phone_code(request: Request) -> Response:
    """ "We just sent a 6 digit code to +1 ••• ••• 1234. Enter the code below." """
    phone = _phone(request)
    if not enrolling(request) or not phone:
        return redirect(where_next(request) if not enrolling(request) else "/security-info/phone")
    if request.method == "GET":
        sent = request.query_params.get("sent") == "1"
        return _code_page(request, notice="We sent a new code. The one before no longer works."
                          if sent else None)
    error = await first_code(request, phone.method_id, phone.code_length,
                             f"Enter the {phone.code_length}-digit code we sent, without spaces.")
    if error is not None:
        return _code_page(request, 400, error=error)
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
            token=session.method_token, method_id=phone.method_id,
        )
    except (RateLimited, InvalidRequest) as exc:
        if phone.takes_code:  # nothing sent, nothing changed: the last code still works
            still = f" {STILL_WORKS}" if isinstance(exc, RateLimited) else ""
            return _code_page(request, 429, error=exc.message + still, code_ok=True)
        return _call_page(request, 429, error=exc.message, ended=True)
    phone.challenge_id, phone.prompt = answer.get("challenge_id"), answer.get("prompt")
    if phone.takes_code:
        return redirect("/security-info/phone/code?sent=1")
    return redirect("/security-info/phone/call")


def _call_page(request: Request, status: int = 200, *, error: str | None = None,
               notice: str | None = None, ended: bool = False) -> Response:
    return render(request, "phone_call.html", status, phone=_phone(request), error=error,
                  notice=notice, ended=ended, **progress("phone", "Check the phone"))


async def _call_state(request: Request) -> dict[str, Any] | None:
    phone = _phone(request)
    return await first_check(request, phone) if phone else None


async def phone_call(request: Request) -> Response:
    """ "We're calling +1 ••• ••• 1234 now.": the page waits (polling, see portal.js); without
    JavaScript, "Check again" asks once more."""
    if just_registered(request):
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
    return _call_page(request, 409, error=answer.get("message") or "The call did not succeed.",
                      ended=True)


async def phone_call_status(request: Request) -> Response:
    """Polled (JSON) while the page waits for the call to be answered."""
    if just_registered(request):
        return JSONResponse({"state": "verified", "next": "/security-info/phone/answered"})
    if not enrolling(request):
        return JSONResponse({"state": "signed_out", "next": "/sign-in"})
    answer = await _call_state(request)
    if answer is None:
        return JSONResponse({"state": "none", "next": "/security-info/phone"})
    state = answer.get("state")
    result = {"state": state, "message": answer.get("message", "")}  # verification's words
    if state == "verified":
        result["next"] = "/security-info/phone/answered"
    return JSONResponse(result)


async def phone_answered(request: Request) -> Response:
    """ "✓ Call answered. Your phone was registered successfully." -> Next -> "Success!" """
    if enrolling(request) and _phone(request):
        answer = await _call_state(request) or {}
        if answer.get("state") != "verified":
            return redirect("/security-info/phone/call")
    done = just_registered(request)
    if done is None:
        return redirect(where_next(request))
    return render(request, "phone_answered.html", message=done.message or "",
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
