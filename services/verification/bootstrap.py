"""Wiring of the verification service: bus endpoints, the device API, Twilio webhooks."""

from __future__ import annotations

import asyncio
from typing import Any

from services.verification import commands as c
from services.verification.application import VerificationApplication
from services.verification.telephony import Outgoing, Telephony
from services.verification.webhooks import webhook_server
from shared.bus.rpc import Endpoint
from shared.errors import Unavailable
from shared.runtime import Wiring, in_thread
from shared.settings import Settings


def build(settings: Settings, telephony: Telephony | None = None) -> Wiring:
    app = VerificationApplication(settings)
    phone = telephony or Telephony(settings)

    async def deliver(outgoing: Outgoing) -> None:
        """Intent recorded (ChallengeIssued) -> send -> CodeDispatched or CodeDeliveryFailed."""
        try:
            sid = await asyncio.to_thread(phone.send, outgoing)
        except Unavailable as exc:
            reason = exc.message.split(":")[-1].split(".")[0].strip() or "unavailable"
            await in_thread(lambda o: app.mark_failed(o, reason))(outgoing)
            raise
        await in_thread(lambda o: app.mark_sent(o, sid))(outgoing)

    def sending(method: Any) -> Any:
        issue = in_thread(method)

        async def handler(cmd: Any) -> Any:
            result, outgoing = await issue(cmd)
            if outgoing is not None:
                await deliver(outgoing)
            return result

        return handler

    return Wiring(
        name="verification",
        app=app,
        endpoints={
            "status": Endpoint(c.Status, in_thread(app.status)),
            "start_app_registration": Endpoint(
                c.StartAppRegistration, in_thread(app.start_app_registration)
            ),
            "verify_code": Endpoint(c.VerifyCode, in_thread(app.verify_code)),
            "start_push": Endpoint(c.StartPush, in_thread(app.start_push)),
            "challenge_status": Endpoint(c.ChallengeStatus, in_thread(app.challenge_status)),
            "start_phone_registration": Endpoint(
                c.StartPhoneRegistration, sending(app.start_phone_registration)
            ),
            "start_challenge": Endpoint(c.StartChallenge, sending(app.start_challenge)),
            "resend_code": Endpoint(c.ResendCode, sending(app.resend_code)),
            "set_default_method": Endpoint(c.SetDefaultMethod, in_thread(app.set_default_method)),
            # the authenticator device API
            "device_activate": Endpoint(c.ActivateDevice, in_thread(app.activate_device)),
            "device_pending": Endpoint(c.DevicePending, in_thread(app.device_pending)),
            "device_respond": Endpoint(c.DeviceRespond, in_thread(app.device_respond)),
        },
        handlers={("ticketing", "ResetApproved"): in_thread(app.on_reset_approved)},
        background=[webhook_server(app)],
    )
