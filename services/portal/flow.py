"""Where a signed-in person belongs, and the progress shown on "Keep your account secure"."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request

from services.portal.sessions import Challenge, Registered, Session
from services.portal.web import ensure_session, form_of, portal_of, session_of
from shared.errors import Conflict, InvalidRequest, Locked

# The steps of each way to set up a method, for the progress shown on every screen.
STEPS: dict[str, list[str]] = {
    "app": ["Get the app", "Set up your account", "Scan the QR code", "Enter the code", "Done"],
    "other-app": ["Scan the QR code", "Enter the code", "Done"],
    "phone": ["Phone number", "Check the phone", "Done"],
    "passkey": ["Create a passkey", "Done"],
}
FLOW_TITLES = {"app": "Microsoft Authenticator", "other-app": "Authenticator app", "phone": "Phone",
               "passkey": "Passkey or security key"}
APP_FLOWS = ("app", "other-app")  # the flows set up from a QR code

# Said when a new text or call was refused (too many): nothing was sent and nothing changed.
STILL_WORKS = "The last code we sent still works until it expires."


# The page each stage belongs on; "password" depends on whether a method must be set up.
HOME_OF: dict[str | None, str] = {
    "change_password": "/password/new", "mfa": "/agreement", "portal": "/home",
    "agent": "/console", None: "/sign-in",
}


def next_page(session: Session | None) -> str:
    """Where a person with this session belongs now."""
    stage = session.stage if session else None
    if session is not None and stage == "password":
        return "/security-info" if session.must_enroll else "/sign-in/verify"
    return HOME_OF.get(stage, "/sign-in")


def where_next(request: Request) -> str:
    return next_page(session_of(request))


def at_stage(request: Request, *stages: str) -> bool:
    session = session_of(request)
    return session is not None and session.stage in stages


def enrolling(request: Request) -> bool:
    """Setting up a method: signed in with a password and required to set up a first one, or
    signed in to the portal and adding one from Security info."""
    session = session_of(request)
    if session is None:
        return False
    return (session.stage == "password" and session.must_enroll) or \
        (session.stage == "portal" and session.adding)


def progress(flow: str, step: str) -> dict[str, Any]:
    steps = STEPS[flow]
    return {"steps": steps, "current": steps.index(step), "method_title": FLOW_TITLES[flow]}


def registered(session: Session, answer: dict[str, Any], message: str | None = None) -> None:
    """A method was just set up (its first check passed): on to the MFA stage and "Success!"."""
    session.registration = session.phone = session.passkey = None
    session.setup_nonce = secrets.token_hex(16)  # the next setup is a new one
    session.mfa_token, session.must_enroll = answer["mfa_token"], False
    if session.adding:  # from Security info: back there, still signed in to the portal
        session.adding = False
        done_url = "/security-info"
    else:
        session.stage, done_url = "mfa", "/agreement"
    session.registered = Registered(default_label=answer.get("default_label"), message=message,
                                    done_url=done_url)


async def first_check(request: Request, challenge: Challenge) -> dict[str, Any]:
    """Verification's state of a new method's first check (a push or a call); once it is
    verified, the session moves on as ``registered`` says, with verification's words."""
    session = ensure_session(request)
    answer: dict[str, Any] = await portal_of(request).call(
        "verification", "challenge_status", username=session.username,
        token=session.method_token, challenge_id=challenge.challenge_id,
    )
    if answer.get("state") == "verified" and answer.get("mfa_token"):
        registered(session, answer, answer.get("message"))
    return answer


async def start_setup(request: Request, command: str, keyed: dict[str, Any],
                      **payload: Any) -> dict[str, Any]:
    """Verification's ``command`` starting a method's setup, with the session's idempotency key
    for this setup and ``keyed`` values: a retry (a timeout, a reload, Back then Next) gets the
    same method. A spent key (that setup was finished or locked meanwhile) starts a new one."""
    session = ensure_session(request)
    portal = portal_of(request)
    fields = {"username": session.username, "token": session.method_token, **keyed, **payload}
    try:
        return await portal.call("verification", command, **fields,
                                 idempotency_key=session.setup_key(command, **keyed))
    except Conflict:
        session.setup_nonce = secrets.token_hex(16)
        return await portal.call("verification", command, **fields,
                                 idempotency_key=session.setup_key(command, **keyed))


def just_registered(request: Request) -> Registered | None:
    """What "Success!" shows, when the person has just set up a method (else None)."""
    session = session_of(request)
    return session.registered if session and session.stage in ("mfa", "portal") else None


def typed_code(form: dict[str, str], length: int | None) -> str | None:
    """The code in ``form`` without its spaces, if it is ``length`` ASCII digits."""
    code = form.get("code", "").replace(" ", "")
    return code if code.isascii() and code.isdigit() and len(code) == length else None


async def check_code(request: Request, form: dict[str, str], method_id: str | None,
                     length: int | None, what_to_type: str) -> tuple[dict[str, Any] | None, str]:
    """The code typed in ``form``, checked by verification: its answer, or (None, what to fix).

    ``length`` is the code's digits as verification said; a code of another shape is refused
    here with ``what_to_type``, without asking.
    """
    code = typed_code(form, length)
    if code is None:
        return None, what_to_type
    session = ensure_session(request)
    try:
        answer = await portal_of(request).call(
            "verification", "verify_code", username=session.username,
            token=session.method_token, method_id=method_id, code=code,
        )
    except InvalidRequest as exc:
        return None, exc.message
    return answer, ""


async def first_code(request: Request, method_id: str | None, length: int | None,
                     what_to_type: str) -> str | None:
    """A new method's first code, from the posted form, checked as ``check_code`` does; once
    it is accepted the session moves on as ``registered`` says. None, or what to fix."""
    try:
        answer, error = await check_code(request, await form_of(request), method_id, length,
                                         what_to_type)
    except Locked as exc:  # too many wrong codes while setting it up
        return exc.message
    if answer is None:
        return error
    registered(ensure_session(request), answer)
    return None
