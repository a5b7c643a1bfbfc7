"""The text of the mails credentials sends: the temporary password and the account notices."""

from __future__ import annotations

from email.message import EmailMessage

from services.credentials.application import Delivery, Notice
from shared.contracts.ticketing import ticket_number
from shared.mailer import Mailer
from shared.settings import Settings

WHAT_HAPPENED = {
    "reset_approved": "the help desk approved a reset of your sign-in methods and password",
    "methods_revoked": "your sign-in methods were removed",
    "method_registered": "a new sign-in method was added to your account",
    "password_changed": "your password was changed",
}


def temporary_password_mail(mailer: Mailer, delivery: Delivery, portal: str) -> EmailMessage:
    body = (
        f"Hello {delivery.display_name},\n\n"
        f"Your multi-factor authentication and password for the {portal} were reset"
        + (f" (ticket {ticket_number(delivery.ticket_id)})" if delivery.ticket_id else "")
        + ".\n\n"
        f"Username: {delivery.username}\n"
        f"Temporary password: {delivery.password}\n\n"
        f"It works until {delivery.expires_at:%Y-%m-%d %H:%M} UTC, and only to choose a new\n"
        "password: sign in with it, choose your new password, then set up your sign-in\n"
        "method under\n"
        '"Keep your account secure".\n\n'
        "If you did not ask for this reset, call the help desk now.\n"
    )
    return mailer.message(delivery.email, f"Your temporary {portal} password", body)


def notice_mail(mailer: Mailer, notice: Notice, settings: Settings) -> EmailMessage:
    what = WHAT_HAPPENED.get(notice.kind, "your account changed")
    detail = f" ({notice.detail})" if notice.detail and notice.kind != "reset_approved" else ""
    body = (
        f"Hello {notice.display_name},\n\n"
        f"This is to let you know that {what}{detail} on your {settings.portal_name} account "
        f"{notice.username}.\n\n"
        f"If this was you, there is nothing to do.\n"
        f"If it was not you, call {settings.helpdesk_contact} now.\n"
    )
    return mailer.message(
        notice.email, f"Account notice: {what}", body, tagged=False
    )
