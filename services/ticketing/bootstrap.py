"""Wiring of the ticketing service: the one place its commands and subscriptions are named."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.ticketing import commands as c
from services.ticketing.application import (
    Acknowledgement,
    Alert,
    RejectionNotice,
    TicketingApplication,
)
from services.ticketing.intake import IntakeHandler, serve_intake
from services.ticketing.notices import acknowledgement_mail, alert_mail, proof_mail, rejection_mail
from services.ticketing.proving import ProofMail
from shared.application import AGENT_SESSION_ENDS
from shared.bus.rpc import Endpoint
from shared.clock import Clock
from shared.effects import SideEffects
from shared.health import smtp_check
from shared.indexes import backfill
from shared.mailer import Mailer
from shared.runtime import Wiring, in_thread
from shared.settings import Settings
from shared.sweeps import advanced

log = logging.getLogger(__name__)


def build(settings: Settings, mailer: Mailer | None = None, *, clock: Clock | None = None) -> Wiring:
    mailer = mailer or Mailer(settings)  # refuses mail in clear to a remote host: before any store
    app = TicketingApplication(settings, clock=clock)

    async def send(ack: Acknowledgement) -> str | None:
        return await mailer.send_with_retries(acknowledgement_mail(mailer, ack, settings))

    acknowledgements = SideEffects(
        "acknowledgement", send, app.mark_acknowledged, pending=app.acknowledgement_pending
    )
    app.send_acknowledgement = acknowledgements.later

    async def send_rejection(notice: RejectionNotice) -> str | None:
        return await mailer.send_with_retries(rejection_mail(mailer, notice, settings))

    rejections = SideEffects(
        "rejection notice", send_rejection, app.mark_rejection_noticed,
        pending=app.rejection_notice_pending,
    )
    app.send_rejection_notice = rejections.later

    async def send_alert(alert: Alert) -> str | None:
        return await mailer.send_with_retries(alert_mail(mailer, alert, settings))

    alerts = SideEffects("security alert", send_alert, app.mark_alerted, pending=app.alert_pending)
    app.send_alert = alerts.later

    async def send_proof(mail: ProofMail) -> str | None:
        return await mailer.send_with_retries(proof_mail(mailer, mail, settings))

    proof_mails = SideEffects(
        "proof mail", send_proof, app.mark_proof_mailed, pending=app.proof_mail_pending
    )
    app.send_proof_mail = proof_mails.later  # type: ignore[method-assign]

    async def fail_unmailed() -> None:
        if failed := await in_thread(app.fail_unmailed_proofs):
            log.info("%s proof mail(s) were not sent before the last stop: failed", failed)

    async def intake(stopping: asyncio.Event) -> None:
        if settings.intake_port:
            await serve_intake(settings, IntakeHandler(settings, app), stopping)

    async def expire(stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                for number in await in_thread(app.expire_stale):
                    log.info("ticket %s expired", number)
                for number in await in_thread(app.take_effect_due):
                    log.info("ticket %s: the cancel window ended, the reset takes effect", number)
            except Exception:
                log.exception("expiring tickets failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), settings.ticket_expiry_check_seconds)

    delivery = app.on_delivery_event
    return Wiring(
        on_close=[mailer.close],  # its kept SMTP connections
        name="ticketing",
        app=app,
        endpoints={
            "request_reset": Endpoint(c.RequestReset, app.request_reset),
            "start_proof": Endpoint(c.StartProof, app.start_proof),
            "answer_proof_code": Endpoint(c.AnswerProofCode, app.answer_proof_code),
            "attest_id_check": Endpoint(c.AttestIdCheck, app.attest_id_check),
            "manager_request": Endpoint(c.ManagerLinkRef, app.manager_request),
            "manager_decide": Endpoint(c.ManagerDecision, app.manager_decide),
            "approve": Endpoint(c.ApproveReset, app.approve),
            "reject": Endpoint(c.RejectReset, app.reject),
            "close_review": Endpoint(c.CloseReview, app.close_review),
            "cancel_link": Endpoint(c.CancelLink, app.cancel_link),
            "cancel_reset": Endpoint(c.CancelReset, app.cancel_reset),
            "list": Endpoint(c.ListTickets, app.list_tickets, spread=True),
            "show": Endpoint(c.ShowTicket, app.show, spread=True),
            "quarantine": Endpoint(c.ListQuarantine, app.quarantined, spread=True),
        },
        handlers={
            ("credentials", "AccountRegistered"): app.on_account_registered,
            ("consent", "AgreementAccepted"): app.on_agreement_accepted,
            ("credentials", "PasswordIssued"): delivery,
            ("credentials", "TemporaryPasswordSent"): delivery,
            ("credentials", "TemporaryPasswordDeliveryFailed"): delivery,
            ("verification", "MethodRegistered"): app.on_method_registered,
            ("verification", "CallBackAnswered"): app.on_call_back,
            ("verification", "CallBackFailed"): app.on_call_back,
            ("verification", "DeviceActivated"): app.on_method_change,
            ("verification", "MethodRemoved"): app.on_method_change,
            ("verification", "MethodsRevoked"): app.on_method_change,
            ("verification", "MethodChallengeAnswered"): app.on_method_challenge,
            ("verification", "MethodChallengeFailed"): app.on_method_challenge,
            **{key: app.on_reset for key in AGENT_SESSION_ENDS},  # the agent signs in again
        },
        # Indexes first: the sweep reads them.
        startup=[
            backfill(app.backfill_indexes), acknowledgements.sweep(app.unsent_acknowledgements),
            alerts.sweep(app.unsent_alerts), rejections.sweep(app.unsent_rejection_notices),
            fail_unmailed, advanced(app.sweeps),  # last: the next start reads what changed after
        ],
        background=[intake, expire, acknowledgements.run, alerts.run, rejections.run, proof_mails.run,
                    app.sweeps.keep_up],
        dependencies=[smtp_check(settings)],
    )
