"""An agent's second factor in the console, and redeeming an invitation.

After the right password (``console.console_sign_in``) the session holds credentials'
``agent_mfa`` token; these pages pass a passkey (``navigator.credentials.get`` in
``static/passkey.js``) or an authenticator code to credentials, which returns the principal.
The invitation page sets the password and enrols a passkey (``navigator.credentials.create``)
or an authenticator app. Credentials checks everything; these pages only carry the answers.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal import web
from services.portal.user import otpauth_qr
from shared.errors import AuthenticationFailed, Conflict, Expired, InvalidRequest, RekeyError

PASSKEY_PAGE = "/console/sign-in/passkey"
CODE_PAGE = "/console/sign-in/code"


def page_json(text: str) -> str:
    """JSON to put inside a ``<script type="application/json">`` (no ``</script>`` can close it)."""
    return text.replace("</", "<\\/")


def second_factor_page(request: Request, answer: dict[str, Any]) -> Response:
    """After the right password: where the agent passes a second factor."""
    second = answer["second_factor"]
    if not second["factors"]:
        return web.problem_page(request, None, title="No second factor is set up", status=403,
                            advice=second.get("message") or "Ask an operator for an invitation.",
                            next_url="/console/sign-in", next_label="Back")
    session = web.start_signed_in(request, stage="agent_mfa", username=answer["username"])
    session.agent_mfa_token = second["token"]
    session.agent_factors = list(second["factors"])
    return web.redirect(PASSKEY_PAGE if "passkey" in second["factors"] else CODE_PAGE)


def _pending(request: Request) -> Any:
    session = web.session_of(request)
    if session is None or session.stage != "agent_mfa" or not session.agent_mfa_token:
        return None
    return session


def _signed_in(request: Request, username: str, principal: str) -> Response:
    session = web.start_signed_in(request, stage="agent", username=username)
    session.principal = principal
    return web.redirect("/console")


async def passkey(request: Request) -> Response:
    session = _pending(request)
    if session is None:
        return web.redirect("/console/sign-in")
    portal = web.portal_of(request)
    error = None
    if request.method == "POST":
        form = await web.form_of(request)
        try:
            signed = await portal.call(
                "credentials", "agent_passkey_verify", challenge_token=session.passkey_token or "-",
                credential=form.get("credential", "") or "{}", channel="console",
            )
            return _signed_in(request, signed["username"], signed["principal"])
        except InvalidRequest:
            error = "The passkey or security key did not answer. Try again."
        except AuthenticationFailed as exc:
            error = exc.message
    options = await portal.call("credentials", "agent_passkey_options", token=session.agent_mfa_token)
    session.passkey_token = options["challenge_token"]
    return web.render(request, "console_passkey.html", 401 if error else 200,
                  options=page_json(options["options"]), error=error,
                  code_too="totp" in session.agent_factors, username=session.username)


async def code(request: Request) -> Response:
    session = _pending(request)
    if session is None:
        return web.redirect("/console/sign-in")
    error = None
    if request.method == "POST":
        form = await web.form_of(request)
        entered = form.get("code", "").strip().replace(" ", "")
        if not (entered.isdigit() and len(entered) == 6):
            error = "Enter the 6-digit code your authenticator app shows."
        else:
            try:
                signed = await web.portal_of(request).call(
                    "credentials", "agent_totp_verify", token=session.agent_mfa_token, code=entered,
                    channel="console",
                )
                return _signed_in(request, signed["username"], signed["principal"])
            except AuthenticationFailed as exc:
                error = exc.message
    return web.render(request, "console_code.html", 401 if error else 200, error=error,
                  passkey_too="passkey" in session.agent_factors,
                  app_too="totp" in session.agent_factors, username=session.username)


# --- the invitation ----------------------------------------------------------------------------
def _refused(request: Request, exc: RekeyError) -> Response:
    return web.problem_page(request, exc, title="This invitation cannot be used", status=403,
                        advice="Nothing was changed. Ask the operator who invited you for a new "
                               "invitation.", next_url="/console/sign-in", next_label="Go to sign in")


async def invitation(request: Request) -> Response:
    secret = request.path_params["secret"]
    portal = web.portal_of(request)
    factor = "totp" if request.query_params.get("with") == "app" else "passkey"
    error = None
    try:
        facts = await portal.call("credentials", "invitation", invitation=secret)
        if request.method == "POST":
            form = await web.form_of(request)
            factor = form.get("factor_type", factor)
            error = await _redeem(request, secret, factor, form)
            if error is None:
                return web.render(request, "console_invited.html", username=facts["username"])
        begun = await portal.call("credentials", "begin_invitation", invitation=secret,
                                  factor_type=factor)
    except (AuthenticationFailed, Conflict, Expired) as exc:
        return _refused(request, exc)
    session = web.ensure_session(request)
    session.passkey_token = begun.get("challenge_token")
    return web.render(
        request, "console_invitation.html", 400 if error else 200, facts=facts, factor=factor,
        begun=begun, error=error, secret=secret, options=page_json(begun.get("options") or "{}"),
        qr=otpauth_qr(begun["otpauth_uri"]) if factor == "totp" else None,
    )


async def _redeem(request: Request, secret: str, factor: str, form: dict[str, str]) -> str | None:
    """None once redeemed; else what to correct (the invitation is still unspent)."""
    password = form.get("password", "")
    if not password or password != form.get("confirm_password"):
        return "Enter the same new password twice."
    proof: dict[str, Any] = {"code": form.get("code", "").strip().replace(" ", "") or None}
    if factor == "passkey":
        session = web.session_of(request)
        proof = {"challenge_token": session.passkey_token if session else None,
                 "credential": form.get("credential") or None}
        if not proof["credential"]:
            return "Register your passkey or security key with the button below."
    elif not proof["code"]:
        return "Enter the code your authenticator app shows."
    try:
        await web.portal_of(request).call("credentials", "redeem_invitation", invitation=secret,
                                      password=password, factor_type=factor, **proof)
    except (InvalidRequest, AuthenticationFailed) as exc:  # a password rule, a wrong code or key
        return exc.message
    return None


def routes() -> list[Route]:
    return [
        Route(PASSKEY_PAGE, passkey, methods=["GET", "POST"]),
        Route(CODE_PAGE, code, methods=["GET", "POST"]),
        Route("/console/invite/{secret}", invitation, methods=["GET", "POST"]),
    ]
