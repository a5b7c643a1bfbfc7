"""The manager's page: the signed, single-use link mailed to the manager on file shows the
request and Approve / Decline. Ticketing checks the link (signature, expiry, still unused) and
records the outcome as the identity proof's; the page only shows and posts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.web import form_of, portal_of, problem_page, render
from shared.errors import AuthenticationFailed, RekeyError

LINK_REFUSED_ADVICE = ("Ask the help desk to send a new link if the request is still waiting. "
                       "If you did not expect this mail, tell the help desk.")


def _refused(request: Request, exc: RekeyError) -> Response:
    return problem_page(request, exc, title="This link cannot be used", status=403,
                        advice=LINK_REFUSED_ADVICE)


async def manager_page(request: Request) -> Response:
    token = request.path_params["token"]
    portal = portal_of(request)
    if request.method == "POST":
        form = await form_of(request)
        decision = form.get("decision")
        if decision not in ("approve", "decline"):
            return await _show(request, token, error="Choose Approve or Decline.")
        try:
            await portal.call("ticketing", "manager_decide", token=token,
                              approve=decision == "approve")
        except AuthenticationFailed as exc:
            return _refused(request, exc)
        return render(request, "manager_done.html", approved=decision == "approve")
    return await _show(request, token)


async def _show(request: Request, token: str, error: str | None = None) -> Response:
    try:
        facts = await portal_of(request).call("ticketing", "manager_request", token=token)
    except AuthenticationFailed as exc:
        return _refused(request, exc)
    return render(request, "manager.html", facts=facts, error=error)


def routes() -> list[Route]:
    return [Route("/manager/{token}", manager_page, methods=["GET", "POST"])]
