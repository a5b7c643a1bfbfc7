"""The text of the mail ticketing sends: the acknowledgement of a request (by email or the web
form), the notice that a request was not approved, and the alert to the security address about
a flagged reset."""

from __future__ import annotations

from email.message import EmailMessage
from typing import TYPE_CHECKING

from shared.mailer import Mailer
from shared.settings import Settings

if TYPE_CHECKING:
    from services.ticketing.application import Acknowledgement, Alert, RejectionNotice
    from services.ticketing.proving import ProofMail


def acknowledgement_mail(mailer: Mailer, ack: Acknowledgement, settings: Settings) -> EmailMessage:
    """The same words whether or not the account exists or the address is the one on file."""
    body = (
        "Hello,\n\n"
        f"We received your request to reset multi-factor authentication for the "
        f"{settings.portal_name}. Your ticket number is {ack.ticket_number}; please quote it "
        "if you contact us.\n\n"
        "A help-desk agent will check your identity before anything is reset, usually by calling\n"
        "you back on the phone number on file. If there is an account for the username you gave,\n"
        "its owner will then receive a temporary password by secure email.\n\n"
        f"If you did not send this request, tell {settings.helpdesk_contact}.\n"
    )
    return mailer.message(ack.to, f"Ticket {ack.ticket_number}: MFA reset request received", body,
                          tagged=False)


def rejection_mail(mailer: Mailer, notice: RejectionNotice, settings: Settings) -> EmailMessage:
    """To the address on file: the request was not approved, and whom to call. The agent's
    reason stays on the ticket (it may name what an impostor got wrong)."""
    body = (
        "Hello,\n\n"
        f"The request to reset multi-factor authentication for your {settings.portal_name} "
        f"account (ticket {notice.ticket_number}) was not approved: nothing was reset, and your "
        "password and sign-in methods are unchanged.\n\n"
        f"If you still need a reset, or have questions, call {settings.helpdesk_contact} and "
        "quote the ticket number.\n"
        "If you did not ask for a reset, someone else may have: tell "
        f"{settings.helpdesk_contact}.\n"
    )
    return mailer.message(notice.to, f"Ticket {notice.ticket_number}: MFA reset not approved",
                          body, tagged=False)


def alert_mail(mailer: Mailer, alert: Alert, settings: Settings) -> EmailMessage:
    """To the security address: a rule flagged a reset (detection; the facts are on the ticket)."""
    body = (
        f"Rekey flagged ticket {alert.ticket_number} (account {alert.username}).\n\n"
        f"Rule: {alert.rule}\n{alert.summary}\n\n"
        "A flag stops nothing: look at the ticket in the help-desk console (its timeline shows the\n"
        "addresses the request and the new methods came from) or with `rekey tickets show`.\n"
    )
    return mailer.message(
        settings.security_address, f"Flagged reset {alert.ticket_number}: {alert.rule}", body,
        tagged=False,
    )


def proof_mail(mailer: Mailer, mail: ProofMail, settings: Settings) -> EmailMessage:
    """A code for the person to read back to the agent, or the manager's link."""
    if mail.kind == "email_code":
        body = (
            "Hello,\n\n"
            f"A help-desk agent is checking a request to reset the sign-in methods of your "
            f"{settings.portal_name} account (ticket {mail.ticket_number}).\n\n"
            f"If you are on the phone with the help desk, read them this code: {mail.secret}\n"
            f"It is valid for {settings.proof_code_minutes} minutes.\n\n"
            "If you did not ask for a reset, do not share the code with anyone, and tell "
            f"{settings.helpdesk_contact}.\n"
        )
        subject = f"Ticket {mail.ticket_number}: your help-desk code"
    else:
        body = (
            "Hello,\n\n"
            f"Someone asked the help desk to reset the sign-in methods of the "
            f"{settings.portal_name} account {mail.username}, for which you are the manager on "
            f"file (ticket {mail.ticket_number}).\n\n"
            "If you know this request is genuine, open the link below and approve it; if not,\n"
            "decline it:\n\n"
            f"{mail.secret}\n\n"
            f"The link works once, for {settings.manager_link_hours:g} hours. Questions: "
            f"{settings.helpdesk_contact}.\n"
        )
        subject = f"Ticket {mail.ticket_number}: please confirm a reset for {mail.username}"
    return mailer.message(mail.to, subject, body, tagged=False)
