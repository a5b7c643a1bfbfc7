"""Wiring of the credentials service, including the temporary password's secure email."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from services.credentials import commands as c
from services.credentials.application import CredentialsApplication, Delivery, Notice
from services.credentials.notices import notice_mail, temporary_password_mail
from shared.bus.rpc import Endpoint
from shared.contracts import EventEnvelope
from shared.mailer import Mailer
from shared.runtime import Wiring, in_thread
from shared.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["build", "temporary_password_mail"]


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

    claimed: set[str] = set()

    async def notify(notice: Notice) -> None:
        """Intent recorded (NoticeIntended) -> send -> record NoticeSent or NoticeFailed."""
        if notice.intent_id in claimed:  # the sweep and a fresh intent must not both send
            return
        claimed.add(notice.intent_id)
        error = await mailer.send_with_retries(notice_mail(mailer, notice, settings))
        await in_thread(lambda n: app.mark_notice(n, error))(notice)

    def later(work: Awaitable[None]) -> None:
        """Send off the consumer's path; a crash before Sent is healed by the start-up sweep."""
        task = asyncio.ensure_future(work)
        sending.add(task)
        task.add_done_callback(sending.discard)

    async def on_reset_approved(envelope: EventEnvelope) -> None:
        delivery = await in_thread(app.on_reset_approved)(envelope)
        if delivery is not None:
            later(deliver(delivery))
        send_fresh()

    async def on_methods_changed(envelope: EventEnvelope) -> None:
        await in_thread(app.on_methods_changed)(envelope)
        send_fresh()

    async def change_password(cmd: c.ChangePassword) -> object:
        try:
            return await in_thread(app.change_password)(cmd)
        finally:
            send_fresh()

    def send_fresh() -> None:
        for notice in app.take_fresh_notices():
            later(notify(notice))

    async def resend_undelivered() -> None:
        """At start, before the consumer runs, so a fresh ResetApproved cannot race it."""
        for delivery in await in_thread(lambda _: app.reissue_undelivered())(None):
            log.info("re-issuing an undelivered temporary password for %s", delivery.username)
            later(deliver(delivery))
        for notice in await in_thread(lambda _: app.unsent_notices())(None):
            later(notify(notice))

    async def finish_sending(stopping: asyncio.Event) -> None:
        await stopping.wait()
        for task in list(sending):
            task.cancel()
        await asyncio.gather(*sending, return_exceptions=True)

    return Wiring(
        name="credentials",
        app=app,
        endpoints={
            "register_account": Endpoint(c.RegisterAccount, in_thread(app.register_account)),
            "sign_in": Endpoint(c.SignIn, in_thread(app.sign_in)),
            "change_password": Endpoint(c.ChangePassword, change_password),
            "unlock": Endpoint(c.UnlockAccount, in_thread(app.unlock)),
            "account": Endpoint(
                c.AccountRef, in_thread(lambda cmd: app.account_status(cmd.username))
            ),
        },
        handlers={
            ("ticketing", "ResetApproved"): on_reset_approved,
            ("verification", "MethodRegistered"): on_methods_changed,
            ("verification", "MethodsRevoked"): on_methods_changed,
        },
        startup=[resend_undelivered],
        background=[finish_sending],
    )
