"""Wiring of the verification service: bus endpoints, the device API, Twilio webhooks."""

from __future__ import annotations

import asyncio
from typing import Any

from services.verification import commands as c
from services.verification.application import VerificationApplication
from services.verification.telephony import NotSent, Outgoing, Sent, Telephony
from services.verification.webhooks import webhook_server
from shared.bus.rpc import Endpoint
from shared.clock import Clock
from shared.effects import SideEffects
from shared.errors import Unavailable
from shared.health import twilio_check
from shared.runtime import Wiring, in_thread
from shared.settings import Settings


def build(
    settings: Settings, telephony: Telephony | None = None, *, clock: Clock | None = None
) -> Wiring:
    app = VerificationApplication(settings, clock=clock)
    phone = telephony or Telephony(settings)

    async def send(outgoing: Outgoing) -> Sent | NotSent:
        return await asyncio.to_thread(phone.send, outgoing)

    def record(outgoing: Outgoing, outcome: Sent | NotSent) -> None:
        if isinstance(outcome, Sent):
            app.mark_sent(outgoing, outcome.sid)
        else:
            app.mark_failed(outgoing, outcome.reason)

    # Intent recorded (ChallengeIssued) -> send -> CodeDispatched or CodeDeliveryFailed, within
    # the request that asked for it (no sweep: the person asks for a new code).
    texts_and_calls = SideEffects("text or call", send, record)

    # A scheduled reset's text to a surviving phone: intent (ResetNoticeIntended) -> send ->
    # ResetNoticeTexted with the outcome.
    reset_texts = SideEffects(
        "reset notice text", send,
        lambda outgoing, outcome: app.mark_reset_notice(
            outgoing, None if isinstance(outcome, Sent) else outcome.reason),
    )

    async def reset_scheduled(envelope: Any) -> None:
        outgoing = await in_thread(app.on_reset_scheduled, envelope)
        if outgoing is not None:
            await reset_texts.now(outgoing)

    def record_call_back(outgoing: Outgoing, outcome: Sent | NotSent) -> None:
        if isinstance(outcome, NotSent):
            app.call_back_not_placed(outgoing.challenge_id, outgoing.username, outcome.reason)

    # A help-desk call-back: CallBackRequested recorded -> the call placed (or
    # CallBackFailed). The number exists only in memory meanwhile, so there is no sweep: an
    # unplaced call lets the proof expire and the agent starts another.
    call_backs = SideEffects("call-back", send, record_call_back)

    async def on_proof_started(envelope: Any) -> None:
        outgoing = await in_thread(app.on_proof_started, envelope)
        if outgoing is not None:
            call_backs.later(outgoing)

    def sending(method: Any) -> Any:
        async def handler(cmd: Any) -> Any:
            result, outgoing = await in_thread(method, cmd)
            if outgoing is not None:
                outcome = await texts_and_calls.now(outgoing)
                if isinstance(outcome, NotSent):
                    raise Unavailable(outcome.message)
            return result

        return handler

    return Wiring(
        name="verification",
        app=app,
        endpoints={
            "status": Endpoint(c.Status, app.status),
            "start_app_registration": Endpoint(c.StartAppRegistration, app.start_app_registration),
            "verify_code": Endpoint(c.VerifyCode, app.verify_code),
            "start_push": Endpoint(c.StartPush, app.start_push),
            "challenge_status": Endpoint(c.ChallengeStatus, app.challenge_status),
            "start_phone_registration": Endpoint(
                c.StartPhoneRegistration, sending(app.start_phone_registration)
            ),
            "start_challenge": Endpoint(c.StartChallenge, sending(app.start_challenge)),
            "resend_code": Endpoint(c.ResendCode, sending(app.resend_code)),
            "set_default_method": Endpoint(c.SetDefaultMethod, app.set_default_method),
            "remove_method": Endpoint(c.RemoveMethod, app.remove_method),
            "security_info": Endpoint(c.SecurityInfo, app.security_info),
            "start_passkey_registration": Endpoint(c.StartPasskeyRegistration,
                                                   app.start_passkey_registration),
            "finish_passkey_registration": Endpoint(c.PasskeyAnswer,
                                                    app.finish_passkey_registration),
            "verify_passkey": Endpoint(c.PasskeyAnswer, app.verify_passkey),
            "phone_countries": Endpoint(c.PhoneCountries, app.phone_countries),
            # the authenticator device API
            "device_activate": Endpoint(c.ActivateDevice, app.activate_device),
            "device_pending": Endpoint(c.DevicePending, app.device_pending),
            "device_respond": Endpoint(c.DeviceRespond, app.device_respond),
        },
        handlers={
            ("ticketing", "ResetApproved"): app.on_reset_approved,
            ("ticketing", "ResetScheduled"): reset_scheduled,
            ("credentials", "PasswordIssued"): app.on_reset,
            ("ticketing", "ProofStarted"): on_proof_started,
        },
        background=[webhook_server(app), call_backs.run],
        dependencies=[twilio_check(settings)],
    )
