"""Wiring of the ticketing service: the one place its commands and subscriptions are named."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.ticketing import commands as c
from services.ticketing.application import Acknowledgement, TicketingApplication
from services.ticketing.intake import IntakeHandler, serve_intake
from shared.bus.rpc import Endpoint
from shared.mailer import Mailer
from shared.runtime import Wiring, in_thread
from shared.settings import Settings

log = logging.getLogger(__name__)


def acknowledgement_mail(mailer: Mailer, ack: Acknowledgement, settings: Settings):
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


def build(settings: Settings, mailer: Mailer | None = None) -> Wiring:
    app = TicketingApplication(settings)
    mailer = mailer or Mailer(settings)
    sending: set[asyncio.Task[None]] = set()
    claimed: set[str] = set()
    loop: asyncio.AbstractEventLoop | None = None

    async def acknowledge(ack: Acknowledgement) -> None:
        if ack.intent_id in claimed:
            return
        claimed.add(ack.intent_id)
        error = await mailer.send_with_retries(acknowledgement_mail(mailer, ack, settings))
        await in_thread(lambda a: app.mark_acknowledged(a, error))(ack)

    def send_fresh() -> None:
        for ack in app.take_fresh_acknowledgements():
            task = asyncio.ensure_future(acknowledge(ack))
            sending.add(task)
            task.add_done_callback(sending.discard)

    def send_fresh_threadsafe() -> None:
        if loop is not None:
            loop.call_soon_threadsafe(send_fresh)

    async def intake(stopping: asyncio.Event) -> None:
        nonlocal loop
        loop = asyncio.get_running_loop()
        for ack in await in_thread(lambda _: app.unsent_acknowledgements())(None):
            task = asyncio.ensure_future(acknowledge(ack))
            sending.add(task)
            task.add_done_callback(sending.discard)
        if settings.intake_port:
            handler = IntakeHandler(settings, app, on_ticket=send_fresh_threadsafe)
            await serve_intake(settings, handler, stopping)
        else:
            await stopping.wait()
        for task in list(sending):
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)

    async def expire(stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                for number in await in_thread(lambda _: app.expire_stale())(None):
                    log.info("ticket %s expired", number)
            except Exception:
                log.exception("expiring tickets failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), settings.ticket_expiry_check_seconds)

    delivery = in_thread(app.on_delivery_event)
    return Wiring(
        name="ticketing",
        app=app,
        endpoints={
            "request_reset": Endpoint(c.RequestReset, in_thread(app.request_reset)),
            "verify_identity": Endpoint(c.VerifyIdentity, in_thread(app.verify_identity)),
            "approve": Endpoint(c.ApproveReset, in_thread(app.approve)),
            "reject": Endpoint(c.RejectReset, in_thread(app.reject)),
            "list": Endpoint(c.ListTickets, in_thread(lambda cmd: app.list_tickets(cmd.state))),
            "show": Endpoint(c.TicketRef, in_thread(lambda cmd: app.show(cmd.ticket))),
            "quarantine": Endpoint(c.ListQuarantine, in_thread(lambda _: app.quarantined())),
        },
        handlers={
            ("credentials", "AccountRegistered"): in_thread(app.on_account_registered),
            ("consent", "AgreementAccepted"): in_thread(app.on_agreement_accepted),
            ("credentials", "PasswordIssued"): delivery,
            ("credentials", "TemporaryPasswordSent"): delivery,
            ("credentials", "TemporaryPasswordDeliveryFailed"): delivery,
        },
        background=[intake, expire],
    )
