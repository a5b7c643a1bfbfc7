"""The help-desk console: agents sign in, see tickets and their timelines, start the identity
proofs the system runs, type in a code the person reads back, attest an ID check, approve or
reject. Ticketing decides (each ticket comes with its state's words, the actions open to the
viewing agent, the proofs done and startable and the points so far and needed); the console
shows them, and its reasons when it refuses."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.agent_sign_in import second_factor_page
from services.portal.sessions import Session
from services.portal.user import password_checked
from services.portal.web import (
    ensure_session,
    form_of,
    portal_of,
    problem_page,
    redirect,
    render,
    session_of,
)
from shared.errors import Expired, InvalidRequest, Locked, RekeyError

# Ticketing's ``list`` states, and what the filter links say.
FILTERS = {
    "open": "Open", "awaiting_second_approval": "Waiting for a second approval",
    "reset_scheduled": "In the cancel window", "under_review": "Cancelled: under review",
    "approved": "Approved", "rejected": "Rejected", "closed": "Closed", "all": "All",
}
RULES = (
    "Approve only once the identity proofs reach the points the policy needs (shown above).",
    "Proofs go where the account's facts on file say, never to a number or address the caller "
    "gives.",
    "You cannot approve a reset you requested, or a reset of your own account.",
    "The username must be an existing portal account; otherwise reject the ticket.",
    "A ticket that is approved, rejected or closed cannot be changed.",
)
HIDDEN_FACTS = {"at", "event", "email", "originator_topic"}
APPROVED = ("Approved: the person's sign-in methods are revoked and a temporary password is on "
            "its way by secure email.")
SCHEDULED = ("Approved. The reset takes effect at {at} UTC, unless the person cancels it from the "
             "link mailed to their address on file; nothing is reset before then.")
PROOF_STARTED = {
    "email_code": "A code is on its way to the address on file. Ask the person to read it to "
                  "you, and type it below.",
    "manager_approval": "A signed link is on its way to the manager on file. The proof is "
                        "recorded when the manager approves.",
    "call_back": "The system is calling the phone on file. The proof is recorded when the "
                 "person presses #. Reload to see it.",
    "method_challenge": "A push is on its way to the person's authenticator app. Read them the "
                        "number shown with the proof below; the proof is recorded when they "
                        "type it on their device and approve. Reload to see it.",
}
APPROVAL_RECORDED = ("Your approval is recorded; a second agent must approve before anything is "
                     "reset.")


def agent_of(request: Request) -> Session | None:
    """The signed-in agent's session (its principal is what every action is taken with)."""
    session = session_of(request)
    if session is None or session.stage != "agent" or not session.principal:
        return None
    return session


def approval_notice(ticket: dict[str, Any]) -> str:
    """What an approval did, from the state ticketing answered: never more than happened."""
    if ticket["state"] == "approved":
        return APPROVED
    if ticket["state"] == "reset_scheduled" and ticket.get("effective_at"):
        return SCHEDULED.format(at=ticket["effective_at"][:16].replace("T", " "))
    return APPROVAL_RECORDED


def shown(value: Any) -> Any:
    """A fact as the timeline prints it: a mapping (a client, a flag's evidence) as "k: v"."""
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in value.items() if v not in (None, ""))
    return value


def words(event_name: str) -> str:
    text = re.sub(r"(?<!^)(?=[A-Z])", " ", event_name).lower()
    return text[:1].upper() + text[1:]


async def console_sign_in(request: Request) -> Response:
    try:
        answer = await password_checked(request, console=True)
    except (Locked, Expired) as exc:
        return problem_page(request, exc, next_url="/console/sign-in", next_label="Back")
    if isinstance(answer, Response):
        return answer
    if answer.get("must_change_password") or not answer.get("second_factor"):
        return problem_page(
            request, None, title="This is not a help-desk account", status=403,
            advice="The console is for help-desk agents. Portal users sign in on the portal.",
            next_url="/sign-in", next_label="Go to the portal sign-in",
        )
    return second_factor_page(request, answer)  # a passkey or a code, then the console


async def ticket_list(request: Request) -> Response:
    agent = agent_of(request)
    if agent is None:
        return redirect("/console/sign-in")
    wanted = request.query_params.get("state", "open")
    if wanted not in FILTERS:
        wanted = "open"
    tickets = await portal_of(request).call(
        "ticketing", "list", state=None if wanted == "all" else wanted, principal=agent.principal
    )
    tickets.sort(key=lambda t: t["created_at"], reverse=True)
    return render(request, "console_list.html", agent=agent.username, tickets=tickets, filters=FILTERS,
                  wanted=wanted)


async def ticket_page(request: Request, *, error: str | None = None, notice: str | None = None,
                      status: int = 200) -> Response:
    agent = agent_of(request)
    if agent is None:
        return redirect("/console/sign-in")
    ref = request.path_params["ref"]
    session = ensure_session(request)
    if notice is None and request.method == "GET":  # what the action just did, shown once
        notice, session.notice = session.notice, None
    ticket: dict[str, Any] = await portal_of(request).call(
        "ticketing", "show", ticket=ref, principal=agent.principal
    )
    timeline = [
        {"at": item["at"][:19].replace("T", " "), "what": words(item["event"]),
         "facts": {k: shown(v) for k, v in item.items()
                   if k not in HIDDEN_FACTS and v not in (None, "", {})}}
        for item in ticket.get("timeline", [])
    ]
    return render(request, "console_ticket.html", status, agent=agent.username, ticket=ticket,
                  timeline=timeline, actions=ticket["next_actions"], rules=RULES,
                  error=error, notice=notice)


# Actions an agent explains in words: the command, its field, what to say when it is empty,
# and the notice once done.
WRITTEN_ACTIONS = {
    "id-check": ("attest_id_check", "note", "Say which ID you checked, and where.",
                 "ID check recorded (it never counts alone)."),
    "reject": ("reject", "reason", "Give a reason for rejecting.", "Rejected."),
    "close-review": ("close_review", "note", "Say what the review found.", "Review closed."),
}


async def act(request: Request) -> Response:
    agent = agent_of(request)
    if agent is None:
        return redirect("/console/sign-in")
    form = await form_of(request)
    ref, action = request.path_params["ref"], request.path_params["action"]
    portal = portal_of(request)
    try:
        if action == "proof":
            await portal.call("ticketing", "start_proof", ticket=ref, principal=agent.principal,
                              kind=form.get("kind", ""))
            notice = PROOF_STARTED.get(form.get("kind", ""), "Proof started.")
        elif action == "code":
            await portal.call("ticketing", "answer_proof_code", ticket=ref,
                              principal=agent.principal, proof_id=form.get("proof_id", ""),
                              code=form.get("code", "").strip()[:20])
            notice = "Code accepted: the proof is recorded."
        elif action == "approve":
            ticket = await portal.call("ticketing", "approve", ticket=ref, principal=agent.principal)
            notice = approval_notice(ticket)
        elif action in WRITTEN_ACTIONS:
            command, field, missing, notice = WRITTEN_ACTIONS[action]
            text = form.get(field, "").strip()
            if not text:
                return await ticket_page(request, error=missing, status=400)
            await portal.call("ticketing", command, ticket=ref, principal=agent.principal,
                              **{field: text[:2000]})
        else:
            return redirect(f"/console/tickets/{ref}")
    except (InvalidRequest, RekeyError) as exc:
        if exc.code in ("unavailable", "authentication_failed"):
            raise
        return await ticket_page(request, error=exc.message,
                                 status=400 if isinstance(exc, InvalidRequest) else 409)
    # post/redirect/get: a reload shows the ticket, it never sends the action again
    ensure_session(request).notice = notice
    return redirect(f"/console/tickets/{ref}")


def routes() -> list[Route]:
    return [
        Route("/console/sign-in", console_sign_in, methods=["GET", "POST"]),
        Route("/console", ticket_list),
        Route("/console/tickets/{ref}", ticket_page),
        Route("/console/tickets/{ref}/{action}", act, methods=["POST"]),
    ]
