"""Wiring of the consent service."""

from __future__ import annotations

from services.consent import commands as c
from services.consent.application import ConsentApplication
from shared.application import RESET_EVENTS
from shared.bus.rpc import Endpoint
from shared.clock import Clock
from shared.runtime import Wiring
from shared.settings import Settings


def build(settings: Settings, *, clock: Clock | None = None) -> Wiring:
    app = ConsentApplication(settings, clock=clock)
    app.publish_current()
    return Wiring(
        name="consent",
        app=app,
        endpoints={
            "present": Endpoint(c.Present, app.present),
            "accept": Endpoint(c.Accept, app.accept),
            "decline": Endpoint(c.Decline, app.decline),
            "status": Endpoint(c.StatusQuery, app.status, spread=True),
        },
        handlers={key: app.on_reset for key in RESET_EVENTS},  # sign-ins before it end
    )
