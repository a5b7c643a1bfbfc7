"""Wiring of the consent service."""

from __future__ import annotations

from services.consent import commands as c
from services.consent.application import ConsentApplication
from shared.bus.rpc import Endpoint
from shared.runtime import Wiring, in_thread
from shared.settings import Settings


def build(settings: Settings) -> Wiring:
    app = ConsentApplication(settings)
    app.publish_current()
    return Wiring(
        name="consent",
        app=app,
        endpoints={
            "present": Endpoint(c.Present, in_thread(app.present)),
            "accept": Endpoint(c.Accept, in_thread(app.accept)),
            "decline": Endpoint(c.Decline, in_thread(app.decline)),
            "status": Endpoint(c.StatusQuery, in_thread(lambda cmd: app.status(cmd.username))),
        },
    )
