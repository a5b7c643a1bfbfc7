"""Where a signed-in person belongs, and the progress shown on "Keep your account secure"."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request

from services.portal.web import session_of

CODE = re.compile(r"^\d{6}$")

# The steps of each way to set up a method, for the progress shown on every screen.
STEPS: dict[str, list[str]] = {
    "app": ["Get the app", "Set up your account", "Scan the QR code", "Enter the code", "Done"],
    "other-app": ["Scan the QR code", "Enter the code", "Done"],
    "phone": ["Phone number", "Check the phone", "Done"],
}
FLOW_TITLES = {"app": "Microsoft Authenticator", "other-app": "Authenticator app", "phone": "Phone"}
APP_FLOWS = ("app", "other-app")  # the flows set up from a QR code


def where_next(request: Request) -> str:
    session = session_of(request)
    stage = session.stage if session else None
    if stage == "change_password":
        return "/password/new"
    if stage == "password":
        return "/security-info" if session and session.get("must_enroll") else "/sign-in/verify"
    if stage == "mfa":
        return "/agreement"
    if stage == "portal":
        return "/home"
    if stage == "agent":
        return "/console"
    return "/sign-in"


def at_stage(request: Request, *stages: str) -> bool:
    session = session_of(request)
    return session is not None and session.stage in stages


def enrolling(request: Request) -> bool:
    session = session_of(request)
    return at_stage(request, "password") and bool(session and session.get("must_enroll"))


def progress(flow: str, step: str) -> dict[str, Any]:
    steps = STEPS[flow]
    return {"steps": steps, "current": steps.index(step), "method_title": FLOW_TITLES[flow]}


def registered(request: Request, answer: dict[str, Any], **extra: Any) -> None:
    """A method was just set up (its first check passed): on to the MFA stage and "Success!"."""
    session = session_of(request)
    assert session is not None
    session.data.pop("registration", None)
    session.data.pop("phone", None)
    session.data.update(stage="mfa", mfa_token=answer["mfa_token"], must_enroll=False,
                        default_label=answer.get("default_label"), just_registered=True, **extra)
