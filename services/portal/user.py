"""The portal user's screens, in the guide's order: request, sign in, new password,
"Keep your account secure", the Data Access Agreement, the portal home."""

from __future__ import annotations

import base64
import re
from typing import Any

import segno
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.portal.challenge import begin_challenge
from services.portal.flow import (
    APP_FLOWS,
    CODE,
    at_stage,
    enrolling,
    progress,
    registered,
    where_next,
)
from services.portal.web import (
    client_address,
    ensure_session,
    form_of,
    portal_of,
    problem_page,
    redirect,
    render,
    session_of,
    sign_out,
    start_signed_in,
)
from shared.errors import AuthenticationFailed, Expired, InvalidRequest, Locked

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- where a person belongs ----------------------------------------------------------------
async def home_or_start(request: Request) -> Response:
    return redirect(where_next(request))


# --- "Request an MFA reset" ----------------------------------------------------------------
async def request_reset(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "request_reset.html", values={}, errors={})
    form = await form_of(request)
    values = {k: form.get(k, "").strip() for k in ("name", "email", "username", "reason")}
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = "Enter your name."
    if not EMAIL.match(values["email"]):
        errors["email"] = "Enter an email address like name@example.org."
    if not values["username"]:
        errors["username"] = "Enter your portal username (the email address you sign in with)."
    if not values["reason"]:
        errors["reason"] = "Tell us why, for example: new phone."
    for key, limit in (("name", 200), ("email", 254), ("username", 254), ("reason", 2000)):
        if len(values[key]) > limit:
            errors[key] = f"Use at most {limit} characters."
    if errors:
        return render(request, "request_reset.html", 400, values=values, errors=errors)
    portal = portal_of(request)
    if not portal.form_throttle.allow(f"reset:{client_address(request)}"):
        return too_many(request)
    try:
        await portal.call("ticketing", "request_reset", channel="web", **values)
    except InvalidRequest as exc:
        return render(request, "request_reset.html", 400, values=values,
                      errors={"form": exc.message})
    # The same answer whatever the username: nothing here tells which accounts exist.
    return render(request, "request_sent.html", email=values["email"])


def too_many(request: Request) -> Response:
    return render(request, "problem.html", 429, title="Too many attempts",
                  message="There were too many attempts from here in a short time.",
                  advice="Wait a minute, then try again.", next_url="/sign-in",
                  next_label="Back to sign in")


# --- sign in -------------------------------------------------------------------------------
async def sign_in(request: Request) -> Response:
    if request.method == "GET":
        timed_out = getattr(request.state, "timed_out", False)
        return render(request, "sign_in.html", username="", error=None, timed_out=timed_out,
                      console=False)
    form = await form_of(request)
    username = form.get("username", "").strip()
    password = form.get("password", "")
    if not username or not password:
        return render(request, "sign_in.html", 400, username=username, timed_out=False,
                      error="Enter your username and your password.", console=False)
    portal = portal_of(request)
    if not portal.sign_in_throttle.allow(f"ip:{client_address(request)}", f"user:{username.lower()}"):
        return too_many(request)
    try:
        answer = await portal.call("credentials", "sign_in", username=username, password=password)
    except AuthenticationFailed as exc:
        return render(request, "sign_in.html", 401, username=username, error=exc.message,
                      timed_out=False, console=False)
    except Locked as exc:
        return problem_page(request, exc, title="Your account is locked", next_url="/sign-in",
                            next_label="Back to sign in")
    except Expired as exc:
        return problem_page(request, exc, title="Your temporary password has expired",
                            advice="Ask the help desk for a new one: use “Request an MFA reset”.",
                            next_url="/request-reset", next_label="Request an MFA reset")
    username = answer["username"]
    if answer["must_change_password"]:
        start_signed_in(request, stage="change_password", username=username,
                        change_token=answer["change_token"])
        return redirect("/password/new")
    await after_password(request, username, answer["token"])
    return redirect(where_next(request))


async def after_password(request: Request, username: str, token: str) -> None:
    status = await portal_of(request).call("verification", "status", username=username, token=token)
    start_signed_in(
        request, stage="password", username=username, password_token=token,
        must_enroll=bool(status["must_enroll"]), methods=status.get("methods", []),
        method_id=status.get("default_method"),
    )
    if not status["must_enroll"]:  # a later sign-in: challenge the default method now
        await begin_challenge(request)


# --- a new password, with the temporary one ------------------------------------------------
async def new_password(request: Request) -> Response:
    if not at_stage(request, "change_password"):
        return redirect(where_next(request))
    session = ensure_session(request)
    username = session.username or ""
    if request.method == "GET":
        return render(request, "new_password.html", username=username, error=None)
    form = await form_of(request)
    new, again = form.get("new_password", ""), form.get("confirm_password", "")
    if new != again:
        return render(request, "new_password.html", 400, username=username,
                      error="The two passwords are not the same. Type your new password twice.")
    portal = portal_of(request)
    try:
        answer = await portal.call(
            "credentials", "change_password", username=username,
            change_token=session.get("change_token"), new_password=new,
        )
    except InvalidRequest as exc:
        return render(request, "new_password.html", 400, username=username, error=exc.message)
    except Expired as exc:
        sign_out(request)
        return problem_page(request, exc, title="Your temporary password has expired",
                            advice="Ask the help desk for a new one: use “Request an MFA reset”.",
                            next_url="/request-reset", next_label="Request an MFA reset")
    session.data.pop("change_token", None)
    await after_password(request, username, answer["token"])
    return redirect(where_next(request))


# --- "Keep your account secure" ------------------------------------------------------------
async def security_info(request: Request) -> Response:
    if not enrolling(request):
        return redirect(where_next(request))
    return redirect("/security-info/app/get-app")


async def app_get(request: Request) -> Response:
    if not enrolling(request):
        return redirect(where_next(request))
    return render(request, "app_get.html", **progress("app", "Get the app"))


async def app_setup(request: Request) -> Response:
    if not enrolling(request):
        return redirect(where_next(request))
    return render(request, "app_setup.html", **progress("app", "Set up your account"))


async def other_app(request: Request) -> Response:
    if not enrolling(request):
        return redirect(where_next(request))
    return render(request, "other_app.html", **progress("other-app", "Scan the QR code"))


async def start_registration(request: Request) -> Response:
    flow = request.path_params["flow"]
    if not enrolling(request) or flow not in APP_FLOWS:
        return redirect(where_next(request))
    await form_of(request)
    session = ensure_session(request)
    answer = await portal_of(request).call(
        "verification", "start_app_registration", username=session.username,
        token=session.get("password_token"),
    )
    session.data["registration"] = {"flow": flow, **answer}
    return redirect(f"/security-info/{flow}/qr")


def qr_data_uri(registration: dict[str, Any]) -> str:
    """The service's own QR image when it sends one; else drawn here from the otpauth URI."""
    svg = registration.get("qr_svg")
    if isinstance(svg, str) and svg.lstrip().startswith("<"):
        if "xmlns=" not in svg:  # inline SVG may omit it; an image may not
            svg = svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
        return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return segno.make(registration["otpauth_uri"], error="m").svg_data_uri(scale=5, border=2)


def registration_of(request: Request, flow: str) -> dict[str, Any] | None:
    session = session_of(request)
    registration = session.get("registration") if session else None
    return registration if registration and registration.get("flow") == flow else None


async def scan_qr(request: Request) -> Response:
    flow = request.path_params["flow"]
    if not enrolling(request) or flow not in APP_FLOWS:
        return redirect(where_next(request))
    registration = registration_of(request, flow)
    if registration is None:
        return redirect("/security-info/app/set-up" if flow == "app" else "/security-info/other-app")
    back = "/security-info/app/set-up" if flow == "app" else "/security-info/methods"
    portal = portal_of(request)
    known = await portal.capabilities.refresh(await portal.client())
    return render(request, "scan_qr.html", flow=flow, back=back, qr=qr_data_uri(registration),
                  uri=registration["otpauth_uri"], push=flow == "app" and known.get("push", False),
                  account_name=registration["account_name"],
                  secret_key=registration["secret_key"], issuer=registration.get("issuer", ""),
                  **progress(flow, "Scan the QR code"))


async def enter_code(request: Request) -> Response:
    flow = request.path_params["flow"]
    if not enrolling(request) or flow not in APP_FLOWS:
        return redirect(where_next(request))
    registration = registration_of(request, flow)
    if registration is None:
        return redirect(f"/security-info/{flow}/qr")
    context = {"flow": flow, **progress(flow, "Enter the code")}
    if request.method == "GET":
        return render(request, "enter_code.html", error=None, **context)
    form = await form_of(request)
    code = form.get("code", "").replace(" ", "")
    if not CODE.match(code):
        return render(request, "enter_code.html", 400,
                      error="Enter the 6 digits your app shows, without spaces.", **context)
    session = ensure_session(request)
    try:
        answer = await portal_of(request).call(
            "verification", "verify_code", username=session.username,
            token=session.get("password_token"), method_id=registration["method_id"], code=code,
        )
    except InvalidRequest as exc:
        return render(request, "enter_code.html", 400, error=exc.message, **context)
    registered(request, answer)
    return redirect("/security-info/success")


# --- "Let's try it out": push with number matching (when verification offers it) ----------
async def try_push(request: Request) -> Response:
    """From "Scan the QR code", Next: send a push to the app activated from the QR code; an
    app without notifications (any TOTP app) goes on to "Enter code" instead."""
    if not enrolling(request):
        return redirect(where_next(request))
    await form_of(request)
    registration = registration_of(request, "app")
    if registration is None:
        return redirect("/security-info/app/set-up")
    portal = portal_of(request)
    known = await portal.capabilities.refresh(await portal.client())
    if not known.get("push"):
        return redirect("/security-info/app/code")
    session = ensure_session(request)
    try:
        push = await portal.call(
            "verification", "start_push", username=session.username,
            token=session.get("password_token"), method_id=registration["method_id"],
        )
    except InvalidRequest:  # no device with notifications activated: use the code instead
        return redirect("/security-info/app/code")
    session.data["push"] = {k: push.get(k) for k in ("challenge_id", "number", "prompt", "expires_at")}
    return redirect("/security-info/app/try-it-out")


async def push_state(request: Request) -> dict[str, Any] | None:
    """The pending push's state; when approved, the session moves on to the MFA stage."""
    session = ensure_session(request)
    push = session.get("push")
    if not push:
        return None
    answer = await portal_of(request).call(
        "verification", "challenge_status", username=session.username,
        token=session.get("password_token"), challenge_id=push["challenge_id"],
    )
    if answer.get("state") == "verified" and answer.get("mfa_token"):
        registered(request, answer,
                   push_message=answer.get("message") or "Notification approved")
    return answer


async def try_it_out(request: Request) -> Response:
    session = session_of(request)
    if not enrolling(request) or not (session and session.get("push")):
        return redirect(where_next(request))
    return render(request, "try_it_out.html", push=session.get("push"), message=None,
                  **progress("app", "Enter the code"))


async def try_it_out_status(request: Request) -> Response:
    """Polled by the page while it waits (JSON); no reload needed."""
    if not enrolling(request) and not at_stage(request, "mfa"):
        return JSONResponse({"state": "signed_out", "next": "/sign-in"})
    answer = await push_state(request) if enrolling(request) else {"state": "verified"}
    if answer is None:
        return JSONResponse({"state": "none", "next": "/security-info/app/qr"})
    state = answer.get("state")
    result = {"state": state, "message": answer.get("message", "")}
    if state == "verified":
        result["next"] = "/security-info/app/approved"
    return JSONResponse(result)


async def approved(request: Request) -> Response:
    session = session_of(request)
    if enrolling(request) and session and session.get("push"):
        answer = await push_state(request)
        if not at_stage(request, "mfa"):
            state = (answer or {}).get("state")
            message = (answer or {}).get("message") if state != "pending" else \
                "Not approved yet. Approve the notification in your app, then choose Next."
            return render(request, "try_it_out.html", 409 if state != "pending" else 200,
                          push=session.get("push"), message=message, failed=state != "pending",
                          **progress("app", "Enter the code"))
    if not at_stage(request, "mfa") or not (session and session.get("just_registered")):
        return redirect(where_next(request))
    session.data.pop("push", None)
    return render(request, "approved.html", message=session.get("push_message"),
                  **progress("app", "Enter the code"))


async def success(request: Request) -> Response:
    session = session_of(request)
    if not at_stage(request, "mfa") or not (session and session.get("just_registered")):
        return redirect(where_next(request))
    return render(request, "success.html", default_label=session.get("default_label") or "")


async def choose_method(request: Request) -> Response:
    if not enrolling(request):
        return redirect(where_next(request))
    portal = portal_of(request)
    await portal.capabilities.refresh(await portal.client())
    choices = portal.capabilities.choices()
    if request.method == "GET":
        return render(request, "methods.html", choices=choices, error=None)
    form = await form_of(request)
    wanted = form.get("method", "")
    chosen = next((c for c in choices if c.key == wanted), None)
    if chosen is None:
        return render(request, "methods.html", 400, choices=choices, error="Choose a method.")
    return redirect({"app": "/security-info/app/get-app", "other-app": "/security-info/other-app",
                     "phone": "/security-info/phone"}[chosen.key])


# --- the Data Access Agreement -------------------------------------------------------------
async def agreement(request: Request) -> Response:
    if not at_stage(request, "mfa"):
        return redirect(where_next(request))
    session = ensure_session(request)
    portal = portal_of(request)
    shown_before = session.get("agreement")
    if request.method == "GET" or not shown_before:
        shown = await portal.call("consent", "present", username=session.username,
                                  token=session.get("mfa_token"))
        session.data["agreement"] = shown
        return render(request, "agreement.html", agreement=shown, error=None)
    form = await form_of(request)
    try:
        await portal.call(
            "consent", "accept", username=session.username, token=session.get("mfa_token"),
            version=shown_before["version"], content_hash=shown_before["content_hash"],
            accepted=form.get("accept") == "yes", confirmed=True,
        )
    except InvalidRequest as exc:
        return render(request, "agreement.html", 400, agreement=shown_before, error=exc.message)
    session.data.pop("agreement", None)
    session.data["stage"] = "portal"
    return redirect("/home")


async def home(request: Request) -> Response:
    if not at_stage(request, "portal"):
        return redirect(where_next(request))
    return render(request, "home.html", username=session_of(request).username)  # type: ignore[union-attr]


async def sign_out_page(request: Request) -> Response:
    if request.method == "GET":
        return redirect(where_next(request))
    await form_of(request)
    sign_out(request)
    return render(request, "signed_out.html")


def routes() -> list[Route]:
    return [
        Route("/", home_or_start),
        Route("/request-reset", request_reset, methods=["GET", "POST"]),
        Route("/sign-in", sign_in, methods=["GET", "POST"]),
        Route("/password/new", new_password, methods=["GET", "POST"]),
        Route("/security-info", security_info),
        Route("/security-info/app/get-app", app_get),
        Route("/security-info/app/set-up", app_setup),
        Route("/security-info/other-app", other_app),
        Route("/security-info/methods", choose_method, methods=["GET", "POST"]),
        Route("/security-info/success", success),
        Route("/security-info/app/try", try_push, methods=["POST"]),
        Route("/security-info/app/try-it-out", try_it_out),
        Route("/security-info/app/try-it-out/status", try_it_out_status),
        Route("/security-info/app/approved", approved),
        Route("/security-info/{flow}/start", start_registration, methods=["POST"]),
        Route("/security-info/{flow}/qr", scan_qr),
        Route("/security-info/{flow}/code", enter_code, methods=["GET", "POST"]),
        Route("/agreement", agreement, methods=["GET", "POST"]),
        Route("/home", home),
        Route("/sign-out", sign_out_page, methods=["GET", "POST"]),
    ]

