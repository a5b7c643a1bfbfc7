"""The verification service's small HTTP side: Twilio's voice and status webhooks.

Thin on purpose: a request is checked with the SDK's ``RequestValidator`` against the public
URL Twilio called and every form parameter, then becomes one application call. A missing or
wrong ``X-Twilio-Signature`` gets 403 and changes nothing; a replayed callback finds its
challenge already answered and changes nothing. Without ``REKEY_TWILIO_AUTH_TOKEN`` there is
no key to check a signature with, so the listener refuses to start rather than accept webhooks
anyone could sign.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from twilio.request_validator import RequestValidator

from services.verification.application import VerificationApplication
from shared.runtime import in_thread

log = logging.getLogger(__name__)
TWIML = "application/xml"
LISTENER_REFUSED = (
    "refusing to start the Twilio webhook listener: REKEY_TWILIO_AUTH_TOKEN is not set, "
    "so no webhook signature could be checked"
)


class NoWebhookToken(RuntimeError):
    """The listener was asked for without the token that checks Twilio's signatures."""


def webhook_app(app: VerificationApplication) -> web.Application:
    settings = app.settings
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        raise NoWebhookToken(LISTENER_REFUSED)
    validator = RequestValidator(token)

    async def checked(request: web.Request) -> tuple[dict[str, str], str, str] | None:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        url = settings.webhook_base_url + request.raw_path  # as sent, query included
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not validator.validate(url, params, signature):
            log.warning("refused a webhook to %s with a missing or wrong signature", request.path)
            return None
        user = request.query.get("u", "")
        challenge = request.query.get("c", "")
        if not user or not challenge:
            return None
        return params, user, challenge

    def route(
        handler: Callable[[dict[str, str], str, str], Awaitable[web.Response]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            found = await checked(request)
            if found is None:
                return web.Response(status=403, text="Forbidden")
            return await handler(*found)

        return wrapped

    async def on_voice(params: dict[str, str], user: str, challenge: str) -> web.Response:
        return web.Response(text=await in_thread(app.voice_twiml, user, challenge), content_type=TWIML)

    async def on_gather(params: dict[str, str], user: str, challenge: str) -> web.Response:
        twiml = await in_thread(app.call_gathered, user, challenge, params.get("Digits", ""))
        return web.Response(text=twiml, content_type=TWIML)

    async def on_status(params: dict[str, str], user: str, challenge: str) -> web.Response:
        outcome = params.get("CallStatus") or params.get("MessageStatus", "")
        await in_thread(app.call_status, user, challenge, outcome)
        return web.Response(status=204)

    async def on_call_back_voice(params: dict[str, str], user: str, proof: str) -> web.Response:
        twiml = await in_thread(app.call_back_twiml, user, proof)
        return web.Response(text=twiml, content_type=TWIML)

    async def on_call_back_gather(params: dict[str, str], user: str, proof: str) -> web.Response:
        twiml = await in_thread(app.call_back_gathered, user, proof, params.get("Digits", ""))
        return web.Response(text=twiml, content_type=TWIML)

    async def on_call_back_status(params: dict[str, str], user: str, proof: str) -> web.Response:
        await in_thread(app.call_back_status, user, proof, params.get("CallStatus", ""))
        return web.Response(status=204)

    web_app = web.Application()
    web_app.router.add_post("/twilio/call-back/voice", route(on_call_back_voice))
    web_app.router.add_post("/twilio/call-back/gather", route(on_call_back_gather))
    web_app.router.add_post("/twilio/call-back/status", route(on_call_back_status))
    web_app.router.add_post("/twilio/voice", route(on_voice))
    web_app.router.add_post("/twilio/gather", route(on_gather))
    web_app.router.add_post("/twilio/status", route(on_status))
    return web_app


def webhook_server(app: VerificationApplication) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A background task for the runtime: listen until the service stops."""

    async def serve(stopping: asyncio.Event) -> None:
        if not app.settings.webhook_port:
            log.info("no Twilio webhook listener (REKEY_WEBHOOK_PORT is not set)")
            return
        if not app.settings.twilio_auth_token.get_secret_value():
            log.error(LISTENER_REFUSED)  # the bus side keeps working; calls in press-# mode do not
            return
        runner = web.AppRunner(webhook_app(app), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, app.settings.webhook_host, app.settings.webhook_port)
        try:
            await site.start()
        except OSError as exc:  # the bus side keeps working; calls in press-# mode do not
            log.error("cannot listen for Twilio webhooks on port %s: %s", app.settings.webhook_port, exc)
            await runner.cleanup()
            await stopping.wait()
            return
        log.info("Twilio webhooks on %s", app.settings.webhook_base_url)
        try:
            await stopping.wait()
        finally:
            await runner.cleanup()

    return serve
