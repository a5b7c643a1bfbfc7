"""The help-desk console: agents sign in, see tickets and their timelines, check identity,
approve or reject. Ticketing enforces the rules; the console shows its reasons."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.user import too_many
from services.portal.web import (
    client_address,
    form_of,
    portal_of,
    problem_page,
    redirect,
    render,
    session_of,
    start_signed_in,
)
from shared.errors import AuthenticationFailed, Expired, InvalidRequest, Locked, RekeyError

IDENTITY_CHECKS = {
    "call_back": "Called back the phone number on file",
    "manager_confirmation": "The person's manager confirmed the request",
    "id_check": "Checked a photo ID",
}
STATES = {
    "open": "Open",
    "identity_verified": "Identity checked",
    "approved": "Approved",
    "rejected": "Rejected",
    "closed": "Closed",
}
FILTERS = ("open", "approved", "rejected", "closed", "all")
RULES = (
    "Record how you checked the person's identity before you approve.",
    "You cannot approve a reset you requested, or a reset of your own account.",
    "The username must be an existing portal account; otherwise reject the ticket.",
    "A ticket that is approved, rejected or closed cannot be changed.",
)
HIDDEN_FACTS = {"at", "event", "email", "originator_topic"}


def agent_of(request: Request) -> str | None:
    session = session_of(request)
    if session is None or session.stage != "agent":
        return None
    return session.username


def words(event_name: str) -> str:
    text = re.sub(r"(?<!^)(?=[A-Z])", " ", event_name).lower()
    return text[:1].upper() + text[1:]


async def console_sign_in(request: Request) -> Response:
    if request.method == "GET":
        return render(request, "sign_in.html", username="", error=None, console=True,
                      timed_out=getattr(request.state, "timed_out", False))
    form = await form_of(request)
    username, password = form.get("username", "").strip(), form.get("password", "")
    if not username or not password:
        return render(request, "sign_in.html", 400, username=username, console=True,
                      timed_out=False, error="Enter your username and your password.")
    portal = portal_of(request)
    if not portal.sign_in_throttle.allow(f"ip:{client_address(request)}", f"user:{username.lower()}"):
        return too_many(request)
    try:
        answer = await portal.call("credentials", "sign_in", username=username, password=password)
    except AuthenticationFailed as exc:
        return render(request, "sign_in.html", 401, username=username, error=exc.message,
                      console=True, timed_out=False)
    except (Locked, Expired) as exc:
        return problem_page(request, exc, next_url="/console/sign-in", next_label="Back")
    account = await portal.call("credentials", "account", username=answer["username"])
    if answer.get("must_change_password") or account.get("role") != "agent":
        return problem_page(
            request, None, title="This is not a help-desk account", status=403,
            advice="The console is for help-desk agents. Portal users sign in on the portal.",
            next_url="/sign-in", next_label="Go to the portal sign-in",
        )
    start_signed_in(request, stage="agent", username=answer["username"])
    return redirect("/console")


async def ticket_list(request: Request) -> Response:
    agent = agent_of(request)
    if agent is None:
        return redirect("/console/sign-in")
    wanted = request.query_params.get("state", "open")
    if wanted not in FILTERS:
        wanted = "open"
    tickets = await portal_of(request).call(
        "ticketing", "list", state=None if wanted == "all" else wanted
    )
    tickets.sort(key=lambda t: t["created_at"], reverse=True)
    return render(request, "console_list.html", agent=agent, tickets=tickets, states=STATES,
                  filters=FILTERS, wanted=wanted)


async def ticket_page(request: Request, *, error: str | None = None, notice: str | None = None,
                      status: int = 200) -> Response:
    agent = agent_of(request)
    if agent is None:
        return redirect("/console/sign-in")
    ref = request.path_params["ref"]
    ticket: dict[str, Any] = await portal_of(request).call("ticketing", "show", ticket=ref)
    timeline = [
        {"at": item["at"][:19].replace("T", " "), "what": words(item["event"]),
         "facts": {k: v for k, v in item.items() if k not in HIDDEN_FACTS and v not in (None, "")}}
        for item in ticket.get("timeline", [])
    ]
    undecided = ticket["state"] in ("open", "identity_verified")
    return render(request, "console_ticket.html", status, agent=agent, ticket=ticket,
                  timeline=timeline, states=STATES, checks=IDENTITY_CHECKS, rules=RULES,
                  undecided=undecided, error=error, notice=notice)


async def act(request: Request) -> Response:
    agent = agent_of(request)
    if agent is None:
        return redirect("/console/sign-in")
    form = await form_of(request)
    ref, action = request.path_params["ref"], request.path_params["action"]
    portal = portal_of(request)
    try:
        if action == "identity":
            method = form.get("method", "")
            if method not in IDENTITY_CHECKS:
                return await ticket_page(request, error="Choose how you checked the identity.",
                                         status=400)
            await portal.call("ticketing", "verify_identity", ticket=ref, agent=agent,
                              method=method, note=form.get("note", "")[:2000])
            notice = "Identity check recorded."
        elif action == "approve":
            await portal.call("ticketing", "approve", ticket=ref, agent=agent)
            notice = "Approved: the person's sign-in methods are revoked and a temporary " \
                     "password is on its way by secure email."
        elif action == "reject":
            reason = form.get("reason", "").strip()
            if not reason:
                return await ticket_page(request, error="Give a reason for rejecting.", status=400)
            await portal.call("ticketing", "reject", ticket=ref, agent=agent, reason=reason[:2000])
            notice = "Rejected."
        else:
            return redirect(f"/console/tickets/{ref}")
    except (InvalidRequest, RekeyError) as exc:
        if exc.code in ("unavailable", "authentication_failed"):
            raise
        return await ticket_page(request, error=exc.message, status=409)
    return await ticket_page(request, notice=notice)


def routes() -> list[Route]:
    return [
        Route("/console/sign-in", console_sign_in, methods=["GET", "POST"]),
        Route("/console", ticket_list),
        Route("/console/tickets/{ref}", ticket_page),
        Route("/console/tickets/{ref}/{action}", act, methods=["POST"]),
    ]
