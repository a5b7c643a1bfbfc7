"""The text of the mails credentials sends: the temporary password and the account notices."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

from services.credentials.agents import Invitation
from services.credentials.application import Delivery, Notice
from shared.contracts.ticketing import ticket_number
from shared.mailer import Mailer
from shared.settings import Settings

WHAT_HAPPENED = {
    "reset_approved": "the help desk approved a reset of your sign-in methods and password",
    "methods_revoked": "your sign-in methods were removed",
    "method_registered": "a new sign-in method was added to your account",
    "method_removed": "a sign-in method was removed from your account",
    "default_method_changed": "your default sign-in method was changed",
    "password_changed": "your password was changed",
    "reset_scheduled": "a reset of your sign-in methods was approved",
}


def temporary_password_mail(mailer: Mailer, delivery: Delivery, portal: str,
                            sign_in_url: str = "", helpdesk: str = "the help desk") -> EmailMessage:
    body = (
        f"Hello {delivery.display_name},\n\n"
        f"Your multi-factor authentication and password for the {portal} were reset"
        + (f" (ticket {ticket_number(delivery.ticket_id)})" if delivery.ticket_id else "")
        + ".\n\n"
        f"Username: {delivery.username}\n"
        f"Temporary password: {delivery.password}\n\n"
        + (f"Sign in at {sign_in_url}\n\n" if sign_in_url else "")
        + f"It works until {delivery.expires_at:%Y-%m-%d %H:%M} UTC, and only to choose a new\n"
        "password: sign in with it, choose your new password, then set up your sign-in\n"
        "method under\n"
        '"Keep your account secure".\n\n'
        f"If you did not ask for this reset, call {helpdesk} now.\n"
    )
    return mailer.message(delivery.email, f"Your temporary {portal} password", body)


def cancel_window_mail(mailer: Mailer, notice: Notice, settings: Settings) -> EmailMessage:
    """A reset waits for its cancel window: the link to cancel it, to the address on file."""
    try:
        when = f"{datetime.fromisoformat(notice.detail):%Y-%m-%d %H:%M} UTC"
    except ValueError:
        when = "soon"
    body = (
        f"Hello {notice.display_name},\n\n"
        f"A reset of your sign-in methods on your {settings.portal_name} account "
        f"{notice.username} was approved"
        + (f" (ticket {ticket_number(notice.ticket_id)})" if notice.ticket_id else "") + ".\n"
        f"It takes effect at {when}: your sign-in methods will then be removed and a\n"
        "temporary password sent to this address.\n\n"
        "If this was you, there is nothing to do.\n"
        "If this wasn't you, cancel it now:\n\n"
        f"{notice.link}\n\n"
        f"and call {settings.helpdesk_contact}.\n"
    )
    return mailer.message(
        notice.email, "A reset of your sign-in methods was approved: cancel it if it wasn't you",
        body,
    )


def notice_mail(mailer: Mailer, notice: Notice, settings: Settings) -> EmailMessage:
    if notice.kind == "reset_scheduled" and notice.link:
        return cancel_window_mail(mailer, notice, settings)
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


def invitation_mail(mailer: Mailer, invitation: Invitation, settings: Settings) -> EmailMessage:
    """The invitation link to the agent's address on file: the only place its secret goes."""
    lines = [
        f"Hello {invitation.display_name},", "",
        f"You are invited to the {settings.portal_name} help-desk console as {invitation.username}.",
        "Open this link to choose your password and set up a passkey, a security key or an",
        "authenticator app (you need one of them at every sign-in):", "",
        invitation.link, "",
        f"The link works once, until {invitation.expires_at:%Y-%m-%d %H:%M} UTC. Do not forward it.",
        f"If you did not expect this invitation, call {settings.helpdesk_contact}.",
    ]
    return mailer.message(invitation.email, f"Your {settings.portal_name} help-desk invitation",
                          "\n".join(lines) + "\n")
