"""Forger of provider callbacks: without the Twilio auth token nobody may sign a webhook.

An empty ``REKEY_TWILIO_AUTH_TOKEN`` once made the validator's key ``"-"``, which anyone can
sign with. Now the listener refuses to start without a token, and with one a signature made
with ``"-"`` is refused like any other wrong signature.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from rekey.stack.ports import free_port
from services.verification.webhooks import LISTENER_REFUSED, NoWebhookToken, webhook_app
from tests.integration.conftest import System, connected, eventually, start_verification
from tests.integration.test_twilio_webhooks import (
    call_params,
    challenge_state,
    gather_url,
    post,
    unanswered_call,
)

pytestmark = pytest.mark.security
DASH = RequestValidator("-")


async def test_a_webhook_signed_with_the_dash_key_is_refused_and_changes_nothing(
    phone_system: System,
) -> None:
    started = await unanswered_call(phone_system)
    url = gather_url(phone_system, started["challenge_id"])
    before = phone_system.app("verification").max_notification_id()

    status = await post(url, call_params(), DASH.compute_signature(url, call_params()))

    assert status == 403
    assert phone_system.app("verification").max_notification_id() == before
    assert "MethodRegistered" not in phone_system.event_names("verification")
    assert await challenge_state(phone_system, started["challenge_id"]) == "pending"


async def test_the_webhook_listener_does_not_start_without_a_twilio_token(
    nats_server, mail_sink, settings_factory, store, caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_factory(
        nats_server, store=store.name, postgres_db=store.postgres_db, smtp_port=mail_sink.port,
        twilio_auth_token=SecretStr(""), webhook_port=free_port(),
    )
    caplog.set_level(logging.ERROR, logger="services.verification.webhooks")
    async with connected(System(settings, nats_server, mail_sink)) as system:
        await start_verification(system)
        await eventually(lambda: LISTENER_REFUSED in caplog.messages, what="the refusal to be logged")
        before = system.app("verification").max_notification_id()
        url = f"{settings.webhook_base_url}/twilio/gather?u=jane&c=c-000000000000"

        with pytest.raises(aiohttp.ClientConnectionError):  # nothing listens
            await post(url, call_params(), DASH.compute_signature(url, call_params()))

        with pytest.raises(NoWebhookToken, match="REKEY_TWILIO_AUTH_TOKEN"):
            webhook_app(system.app("verification"))
        assert caplog.messages.count(LISTENER_REFUSED) == 1
        assert system.app("verification").max_notification_id() == before
