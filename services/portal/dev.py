"""Developer pages (REKEY_PORTAL_DEV_PAGES=true, which `rekey up --dev` sets): the caught mail
and the local Twilio server's texts and calls, so a person can walk the whole guide in a browser
on one machine. They show every temporary password and code with no sign-in, so they are off
unless asked for, and refused on a portal that listens beyond this machine."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.portal.web import portal_of, render
from shared.caught import list_calls, list_mails, list_texts
from shared.hosts import is_loopback
from shared.settings import Settings


class DevPagesRefused(RuntimeError):
    """Developer pages were asked for on a portal other machines can reach."""


def check_dev_pages(settings: Settings) -> None:
    """Raises :class:`DevPagesRefused` unless the portal listens on a loopback address."""
    if not is_loopback(settings.portal_host):
        raise DevPagesRefused(
            "refusing the developer pages (REKEY_PORTAL_DEV_PAGES=true): they show every caught "
            "mail, text and call without sign-in, so the portal must listen on a loopback "
            f"address, not REKEY_PORTAL_HOST={settings.portal_host!r}"
        )


def mail_folder(request: Request) -> Path:
    return Path(portal_of(request).settings.data_dir) / "mail"


async def mail_list(request: Request) -> Response:
    mails = list(reversed(list_mails(mail_folder(request))))
    return render(request, "dev_mail.html", mails=mails, mail=None)


async def mail_read(request: Request) -> Response:
    name = request.path_params["name"]
    mail = next((m for m in list_mails(mail_folder(request)) if m.path.name == name), None)
    if mail is None:
        return render(request, "problem.html", 404, title="No such mail", message="",
                      advice="It may have been removed.", next_url="/dev/mail",
                      next_label="All mail")
    return render(request, "dev_mail.html", mails=[], mail=mail)


async def phone_log(request: Request) -> Response:
    """What the phone would have received: texts, and calls with what was said and pressed."""
    folder = Path(portal_of(request).settings.data_dir) / "twilio"
    texts = list(reversed(list_texts(folder)))
    calls = list(reversed(list_calls(folder)))
    return render(request, "dev_phone.html", texts=texts, calls=calls)


def routes() -> list[Route]:
    return [
        Route("/dev/mail", mail_list),
        Route("/dev/mail/{name}", mail_read),
        Route("/dev/phone", phone_log),
    ]
