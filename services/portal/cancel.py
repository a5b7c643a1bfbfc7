"""The page a cancel link opens: a reset of the person's sign-in methods was approved and waits
for its cancel window to end; they confirm, and ticketing records ``ResetCancelled``. Ticketing
checks the link (credentials signed it, for that ticket) and decides; the page only asks."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.web import client_context, form_of, portal_of, problem_page, render
from shared.errors import RekeyError

ADVICE = "If you did not ask for a reset of your sign-in methods, call the help desk now."


async def cancel_page(request: Request) -> Response:
    token = request.path_params["token"]
    portal = portal_of(request)
    try:
        if request.method == "GET":
            facts = await portal.call("ticketing", "cancel_link", token=token)
            return render(request, "cancel_reset.html", facts=facts, token=token, done=False)
        await form_of(request)
        facts = await portal.call("ticketing", "cancel_reset", token=token,
                                  client=client_context(request))
    except RekeyError as exc:
        if exc.code == "unavailable":
            raise
        return problem_page(request, exc, title="This reset cannot be cancelled here",
                            status=409 if exc.code == "conflict" else 403, advice=ADVICE)
    return render(request, "cancel_reset.html", facts=facts, token=token, done=True)


def routes() -> list[Route]:
    return [Route("/reset/cancel/{token}", cancel_page, methods=["GET", "POST"])]
