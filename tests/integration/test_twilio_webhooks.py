"""Twilio webhooks: only correctly signed callbacks count, and each counts once."""

from __future__ import annotations

import aiohttp
import pytest

from shared.caught import latest_call_to
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, eventually, start_verification

NUMBER = "+1 508 555 0142"
E164 = "+15085550142"


async def unanswered_call(system: System) -> dict:
    system.twilio.keypress = ""  # answered, and nobody has pressed anything yet
    await start_verification(system)
    token = issue_token(all_issuers(system.settings), USER, "password")
    started = await system.call("verification", "start_phone_registration", username=USER,
                                token=token, number=NUMBER, channel="call")
    await eventually(lambda: (c := latest_call_to(system.twilio.folder, E164)) and c.spoken,
                     what="the call to be answered")
    return started


def gather_url(system: System, challenge_id: str) -> str:
    return (f"{system.settings.webhook_base_url}/twilio/gather?"
            f"u={USER.replace('@', '%40')}&c={challenge_id}")


def call_params(digits: str = "#") -> dict[str, str]:
    return {"AccountSid": system_sid(), "CallSid": "CA" + "1" * 32, "From": "+15005550006",
            "To": E164, "CallStatus": "in-progress", "Digits": digits}


def system_sid() -> str:
    from tests.integration.conftest import TWILIO_SID

    return TWILIO_SID


async def post(url: str, params: dict[str, str], signature: str | None) -> int:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with aiohttp.ClientSession() as session, session.post(
        aiohttp.client.URL(url, encoded=True), data=params, headers=headers
    ) as response:
        return response.status


async def challenge_state(system: System, challenge_id: str) -> str:
    token = issue_token(all_issuers(system.settings), USER, "password")
    status = await system.call("verification", "challenge_status", username=USER, token=token,
                               challenge_id=challenge_id)
    return str(status["state"])


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
async def test_a_callback_without_a_valid_signature_gets_403_and_changes_nothing(
    phone_system: System, signature: str | None
):
    started = await unanswered_call(phone_system)
    before = phone_system.app("verification").max_notification_id()

    status = await post(gather_url(phone_system, started["challenge_id"]), call_params(), signature)

    assert status == 403
    assert phone_system.app("verification").max_notification_id() == before
    assert "MethodRegistered" not in phone_system.event_names("verification")
    assert await challenge_state(phone_system, started["challenge_id"]) == "pending"


async def test_a_signature_for_other_parameters_or_another_url_is_refused(phone_system: System):
    started = await unanswered_call(phone_system)
    url = gather_url(phone_system, started["challenge_id"])
    signed_for_star = phone_system.twilio.validator.compute_signature(url, call_params("*"))
    other_url = url.replace(started["challenge_id"], "c-000000000000")
    signed_elsewhere = phone_system.twilio.validator.compute_signature(other_url, call_params())
    before = phone_system.app("verification").max_notification_id()

    assert await post(url, call_params("#"), signed_for_star) == 403
    assert await post(url, call_params("#"), signed_elsewhere) == 403
    assert phone_system.app("verification").max_notification_id() == before


async def test_a_signed_callback_verifies_once_and_its_replay_changes_nothing(phone_system: System):
    started = await unanswered_call(phone_system)
    url = gather_url(phone_system, started["challenge_id"])

    status, twiml = await phone_system.twilio.post_signed(url, call_params())
    assert status == 200 and "verified" in twiml
    assert await challenge_state(phone_system, started["challenge_id"]) == "verified"
    before = phone_system.app("verification").max_notification_id()

    status, twiml = await phone_system.twilio.post_signed(url, call_params())  # replayed

    assert status == 200 and "no longer valid" in twiml
    assert phone_system.app("verification").max_notification_id() == before
    assert phone_system.event_names("verification").count("ChallengeVerified") == 1


async def test_the_voice_twiml_asks_for_the_pound_key_with_gather(phone_system: System):
    started = await unanswered_call(phone_system)
    url = gather_url(phone_system, started["challenge_id"]).replace("/gather?", "/voice?")

    status, twiml = await phone_system.twilio.post_signed(url, call_params())

    assert status == 200
    assert '<Gather numDigits="1"' in twiml
    assert "/twilio/gather?" in twiml
