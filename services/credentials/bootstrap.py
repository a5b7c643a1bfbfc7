"""Wiring of the credentials service, including the temporary password's secure email."""

from __future__ import annotations

import asyncio
import logging

from services.credentials import commands as c
from services.credentials.application import CredentialsApplication, Delivery
from services.credentials.mailer import Mailer
from shared.bus.rpc import Endpoint
from shared.contracts import EventEnvelope
from shared.runtime import Wiring, in_thread
from shared.settings import Settings

log = logging.getLogger(__name__)


def temporary_password_mail(mailer: Mailer, delivery: Delivery, portal: str):
    body = (
        f"Hello {delivery.display_name},\n\n"
        f"Your multi-factor authentication and password for the {portal} were reset"
        + (f" (ticket {delivery.ticket_id})" if delivery.ticket_id else "")
        + ".\n\n"
        f"Username: {delivery.username}\n"
        f"Temporary password: {delivery.password}\n\n"
        f"It works once, until {delivery.expires_at:%Y-%m-%d %H:%M} UTC. Sign in with it,\n"
        "choose a new password, then set up your sign-in method under\n"
        '"Keep your account secure".\n\n'
        "If you did not ask for this reset, call the help desk now.\n"
    )
    return mailer.message(delivery.email, f"Your temporary {portal} password", body)


def build(settings: Settings, mailer: Mailer | None = None) -> Wiring:
    app = CredentialsApplication(settings)
    mailer = mailer or Mailer(settings)
    sending: set[asyncio.Task[None]] = set()

    async def deliver(delivery: Delivery) -> None:
        """Intent recorded (PasswordIssued) -> send -> record Sent or DeliveryFailed."""
        msg = temporary_password_mail(mailer, delivery, settings.portal_name)
        error = await mailer.send_with_retries(msg)
        if error is None:
            await in_thread(app.mark_sent)(delivery)
        else:
            await in_thread(lambda d: app.mark_delivery_failed(d, error))(delivery)

    def deliver_later(delivery: Delivery) -> None:
        """Send off the consumer's path; a crash before Sent is healed by the start-up sweep."""
        task = asyncio.create_task(deliver(delivery))
        sending.add(task)
        task.add_done_callback(sending.discard)

    async def on_reset_approved(envelope: EventEnvelope) -> None:
        delivery = await in_thread(app.on_reset_approved)(envelope)
        if delivery is not None:
            deliver_later(delivery)

    async def resend_undelivered(stopping: asyncio.Event) -> None:
        for delivery in await in_thread(lambda _: app.reissue_undelivered())(None):
            log.info("re-issuing an undelivered temporary password for %s", delivery.username)
            deliver_later(delivery)

    return Wiring(
        name="credentials",
        app=app,
        endpoints={
            "register_account": Endpoint(c.RegisterAccount, in_thread(app.register_account)),
            "sign_in": Endpoint(c.SignIn, in_thread(app.sign_in)),
            "change_password": Endpoint(c.ChangePassword, in_thread(app.change_password)),
            "account": Endpoint(
                c.AccountRef, in_thread(lambda cmd: app.account_status(cmd.username))
            ),
        },
        handlers={("ticketing", "ResetApproved"): on_reset_approved},
        background=[resend_undelivered],
    )
