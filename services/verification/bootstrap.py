"""Wiring of the verification service."""

from __future__ import annotations

from services.verification import commands as c
from services.verification.application import VerificationApplication
from shared.bus.rpc import Endpoint
from shared.runtime import Wiring, in_thread
from shared.settings import Settings


def build(settings: Settings) -> Wiring:
    app = VerificationApplication(settings)
    return Wiring(
        name="verification",
        app=app,
        endpoints={
            "status": Endpoint(c.Status, in_thread(app.status)),
            "start_app_registration": Endpoint(
                c.StartAppRegistration, in_thread(app.start_app_registration)
            ),
            "verify_code": Endpoint(c.VerifyCode, in_thread(app.verify_code)),
        },
        handlers={("ticketing", "ResetApproved"): in_thread(app.on_reset_approved)},
    )
