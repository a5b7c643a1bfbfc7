"""Wiring of the ticketing service: the one place its commands and subscriptions are named."""

from __future__ import annotations

from services.ticketing import commands as c
from services.ticketing.application import TicketingApplication
from shared.bus.rpc import Endpoint
from shared.runtime import Wiring, in_thread
from shared.settings import Settings


def build(settings: Settings) -> Wiring:
    app = TicketingApplication(settings)
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
        },
        handlers={
            ("credentials", "AccountRegistered"): in_thread(app.on_account_registered),
            ("consent", "AgreementAccepted"): in_thread(app.on_agreement_accepted),
        },
    )
