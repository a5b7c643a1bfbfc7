"""The portal user's screens, in the guide's order: request, sign in, new password,
"Keep your account secure", the Data Access Agreement, the portal home."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.portal.challenge import begin_challenge
from services.portal.flow import (
    APP_FLOWS,
    at_stage,
    enrolling,
    first_check,
    first_code,
    just_registered,
    progress,
    start_setup,
    where_next,
)
from services.portal.sessions import Challenge, Method, Registration
from services.portal.web import (
    client_address,
    client_context,
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
from shared.errors import AuthenticationFailed, Expired, InvalidRequest, Locked, RateLimited
from shared.network import limit_key

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# --- where a person belongs ----------------------------------------------------------------
async def home_or_start(request: Request) -> Response:
    return redirect(where_next(request))


# --- "Request an MFA reset" ----------------------------------------------------------------
async def request_reset(request: Request) -> Response:
    if request.method == "GET":  # one key per form: sending it twice files one request
        return render(request, "request_reset.html", values={}, errors={},
                      request_key=uuid.uuid4().hex)
    form = await form_of(request)
    key = form.get("request_key", "").strip()
    key = key if re.fullmatch(r"[0-9a-f]{32}", key) else uuid.uuid4().hex
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
    for field, limit in (("name", 200), ("email", 254), ("username", 254), ("reason", 2000)):
        if len(values[field]) > limit:
            errors[field] = f"Use at most {limit} characters."
    if errors:
        return render(request, "request_reset.html", 400, values=values, errors=errors,
                      request_key=key)
    portal = portal_of(request)
    if not portal.form_throttle.allow(f"reset:{limit_key(client_address(request))}"):
        return too_many(request)
    try:
        await portal.call("ticketing", "request_reset", channel="web",
                          client=client_context(request), idempotency_key=key, **values)
    except InvalidRequest as exc:
        return render(request, "request_reset.html", 400, values=values,
                      errors={"form": exc.message}, request_key=key)
    # The same answer whatever the username: nothing here tells which accounts exist.
    return render(request, "request_sent.html", email=values["email"])


def too_many(request: Request) -> Response:
    return render(request, "problem.html", 429, title="Too many attempts",
                  message="There were too many attempts from here in a short time.",
                  advice="Wait a minute, then try again.", next_url="/sign-in",
                  next_label="Back to sign in")


# --- sign in -------------------------------------------------------------------------------
async def password_checked(request: Request, *, console: bool) -> dict[str, Any] | Response:
    """The sign-in form (the portal's or the console's): on GET the form; on POST its fields,
    the throttle and credentials' ``sign_in``. Credentials' answer, or the page to show instead.
    A locked account or an expired temporary password is raised for the caller to word."""
    def form_page(status: int = 200, username: str = "", error: str | None = None) -> Response:
        timed_out = request.method == "GET" and getattr(request.state, "timed_out", False)
        return render(request, "sign_in.html", status, username=username, error=error,
                      timed_out=timed_out, console=console)

    if request.method == "GET":
        return form_page()
    form = await form_of(request)
    username, password = form.get("username", "").strip(), form.get("password", "")
    if not username or not password:
        return form_page(400, username, "Enter your username and your password.")
    portal = portal_of(request)
    # Per client address here; per account, credentials' delay (no username key: a stranger
    # could otherwise keep the real user out).
    if not portal.sign_in_throttle.allow(f"ip:{limit_key(client_address(request))}"):
        return too_many(request)
    try:
        answer: dict[str, Any] = await portal.call(
            "credentials", "sign_in", username=username, password=password,
            channel="console" if console else "portal", client=client_context(request),
        )
    except AuthenticationFailed as exc:
        return form_page(401, username, exc.message)
    except RateLimited as exc:  # "wait N seconds": a delay, not a refusal of the password
        return form_page(429, username, exc.message)
    return answer


async def sign_in(request: Request) -> Response:
    try:
        answer = await password_checked(request, console=False)
    except Locked as exc:
        return problem_page(request, exc, title="Your account is locked", next_url="/sign-in",
                            next_label="Back to sign in")
    except Expired as exc:
        return problem_page(request, exc, title="Your temporary password has expired",
                            advice="Ask the help desk for a new one: use “Request an MFA reset”.",
                            next_url="/request-reset", next_label="Request an MFA reset")
    if isinstance(answer, Response):
        return answer
    username = answer["username"]
    if answer["must_change_password"]:
        session = start_signed_in(request, "change_password", username)
        session.change_token = answer["change_token"]
        return redirect("/password/new")
    await after_password(request, username, answer["token"])
    return redirect(where_next(request))


async def after_password(request: Request, username: str, token: str) -> None:
    status = await portal_of(request).call("verification", "status", username=username, token=token)
    session = start_signed_in(request, "password", username)
    session.password_token = token
    session.must_enroll = bool(status["must_enroll"])
    session.methods = [Method.of(m) for m in status.get("methods", [])]
    session.method_id = status.get("default_method")
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
            change_token=session.change_token, new_password=new, client=client_context(request),
        )
    except InvalidRequest as exc:
        return render(request, "new_password.html", 400, username=username, error=exc.message)
    except Expired as exc:
        sign_out(request)
        return problem_page(request, exc, title="Your temporary password has expired",
                            advice="Ask the help desk for a new one: use “Request an MFA reset”.",
                            next_url="/request-reset", next_label="Request an MFA reset")
    session.change_token = None
    await after_password(request, username, answer["token"])
    return redirect(where_next(request))


# --- "Keep your account secure" ------------------------------------------------------------
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
    if registration_of(request, flow) is None:  # Back then Next keeps the QR the app scanned
        app = "other" if flow == "other-app" else "microsoft"
        answer = await start_setup(request, "start_app_registration", {"app": app},
                                   client=client_context(request))
        session.registration = Registration.of(answer, flow=flow)
    return redirect(f"/security-info/{flow}/qr")


def qr_data_uri(registration: Registration) -> str:
    """The service's own QR image when it sends one; else drawn here from the otpauth URI."""
    svg = registration.qr_svg
    if isinstance(svg, str) and svg.lstrip().startswith("<"):
        if "xmlns=" not in svg:  # inline SVG may omit it; an image may not
            svg = svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"', 1)
        return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
    return otpauth_qr(registration.otpauth_uri)


def otpauth_qr(uri: str) -> str:
    """An ``otpauth://`` URI's QR code as an image data URI."""
    import segno  # here: only an app's set-up draws one

    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def registration_of(request: Request, flow: str) -> Registration | None:
    session = session_of(request)
    registration = session.registration if session else None
    return registration if registration and registration.flow == flow else None


def app_flow(request: Request) -> tuple[str | None, Registration | None]:
    """The app flow the page's path names and its registration in progress (None if none);
    no flow when the path names none or the person is not setting up a method."""
    flow = request.path_params["flow"]
    if not enrolling(request) or flow not in APP_FLOWS:
        return None, None
    return flow, registration_of(request, flow)


async def scan_qr(request: Request) -> Response:
    flow, registration = app_flow(request)
    if flow is None:
        return redirect(where_next(request))
    if registration is None:
        return redirect("/security-info/app/set-up" if flow == "app" else "/security-info/other-app")
    back = "/security-info/app/set-up" if flow == "app" else "/security-info/methods"
    portal = portal_of(request)
    known = await portal.capabilities.refresh(await portal.client())
    return render(request, "scan_qr.html", flow=flow, back=back, qr=qr_data_uri(registration),
                  uri=registration.otpauth_uri, push=flow == "app" and known.get("push", False),
                  account_name=registration.account_name, replaces=registration.replaces_earlier,
                  secret_key=registration.secret_key, issuer=registration.issuer,
                  **progress(flow, "Scan the QR code"))


async def enter_code(request: Request) -> Response:
    flow, registration = app_flow(request)
    if flow is None:
        return redirect(where_next(request))
    if registration is None:
        return redirect(f"/security-info/{flow}/qr")
    context = {"flow": flow, "code_length": registration.code_length,
               **progress(flow, "Enter the code")}
    if request.method == "GET":
        return render(request, "enter_code.html", error=None, **context)
    error = await first_code(
        request, registration.method_id, registration.code_length,
        f"Enter the {registration.code_length} digits your app shows, without spaces.",
    )
    if error is not None:
        return render(request, "enter_code.html", 400, error=error, **context)
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
            token=session.method_token, method_id=registration.method_id,
        )
    except InvalidRequest:  # no device with notifications activated: use the code instead
        return redirect("/security-info/app/code")
    session.push = Challenge.of(push)
    return redirect("/security-info/app/try-it-out")


async def push_state(request: Request) -> dict[str, Any] | None:
    """The pending push's state; when approved, the session moves on to the MFA stage."""
    push = ensure_session(request).push
    return await first_check(request, push) if push else None


async def try_it_out(request: Request) -> Response:
    session = session_of(request)
    if not enrolling(request) or not (session and session.push):
        return redirect(where_next(request))
    return render(request, "try_it_out.html", push=session.push, message=None,
                  **progress("app", "Enter the code"))


async def try_it_out_status(request: Request) -> Response:
    """Polled by the page while it waits (JSON); no reload needed."""
    if not enrolling(request) and just_registered(request) is None:
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
    if enrolling(request) and session and session.push:
        answer = await push_state(request)
        if just_registered(request) is None:
            state = (answer or {}).get("state")
            message = (answer or {}).get("message") if state != "pending" else \
                "Not approved yet. Approve the notification in your app, then choose Next."
            return render(request, "try_it_out.html", 409 if state != "pending" else 200,
                          push=session.push, message=message, failed=state != "pending",
                          **progress("app", "Enter the code"))
    done = just_registered(request)
    if done is None or session is None:
        return redirect(where_next(request))
    session.push = None
    return render(request, "approved.html", message=done.message,
                  **progress("app", "Enter the code"))


async def success(request: Request) -> Response:
    done = just_registered(request)
    if done is None:
        return redirect(where_next(request))
    return render(request, "success.html", default_label=done.default_label or "",
                  done_url=done.done_url)


async def choose_method(request: Request) -> Response:
    if not enrolling(request):
        return redirect(where_next(request))
    portal = portal_of(request)
    await portal.capabilities.refresh(await portal.client())
    choices = portal.capabilities.choices()
    cancel = "/security-info" if at_stage(request, "portal") else "/security-info/app/get-app"
    if request.method == "GET":
        return render(request, "methods.html", choices=choices, error=None, cancel=cancel)
    form = await form_of(request)
    wanted = form.get("method", "")
    chosen = next((c for c in choices if c.key == wanted), None)
    if chosen is None:
        return render(request, "methods.html", 400, choices=choices, error="Choose a method.",
                      cancel=cancel)
    return redirect({"app": "/security-info/app/get-app", "other-app": "/security-info/other-app",
                     "phone": "/security-info/phone", "passkey": "/security-info/passkey"}[chosen.key])


# --- the Data Access Agreement -------------------------------------------------------------
async def agreement(request: Request) -> Response:
    if not at_stage(request, "mfa"):
        return redirect(where_next(request))
    session = ensure_session(request)
    portal = portal_of(request)
    shown_before = session.agreement
    if request.method == "GET" or not shown_before:
        shown = await portal.call("consent", "present", username=session.username,
                                  token=session.mfa_token)
        session.agreement = shown
        return render(request, "agreement.html", agreement=shown, error=None)
    form = await form_of(request)
    try:
        await portal.call(
            "consent", "accept", username=session.username, token=session.mfa_token,
            version=shown_before["version"], content_hash=shown_before["content_hash"],
            accepted=form.get("accept") == "yes", confirmed=True,
        )
    except InvalidRequest as exc:
        return render(request, "agreement.html", 400, agreement=shown_before, error=exc.message)
    session.agreement = None
    session.stage = "portal"
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

