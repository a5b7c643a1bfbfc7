"""A text or call that does not go out: a typed reason recorded, plain words for the person."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from rekey.stack.ports import free_port
from services.verification.telephony import NOT_CONFIGURED, NotSent, Outgoing, Telephony
from shared.errors import Unavailable
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, start_verification

TEXT = Outgoing(username="jane", challenge_id="c-1", method_id="m-1", channel="sms",
                to="+15085550142", masked_to="+1 ••• ••• 0142", body="123456 is your code")


def test_without_an_auth_token_nothing_is_sent_and_the_reason_says_so(settings_factory):
    settings = settings_factory("nats://127.0.0.1:1", twilio_auth_token=SecretStr(""))

    assert Telephony(settings).send(TEXT) == NOT_CONFIGURED


def test_an_unreachable_provider_gives_the_reason_to_record_and_the_words_to_show(settings_factory):
    settings = settings_factory(
        "nats://127.0.0.1:1", twilio_api_url=f"http://127.0.0.1:{free_port()}",
        twilio_account_sid="AC" + "1" * 32, twilio_auth_token=SecretStr("token"),
    )

    outcome = Telephony(settings, attempts=2, first_delay=0.01).send(TEXT)

    assert isinstance(outcome, NotSent)
    assert outcome.reason.startswith("provider unreachable (")
    assert outcome.message == (
        f"We could not reach your phone: {outcome.reason}. Try again or choose another method."
    )
    assert "123456" not in outcome.reason + outcome.message


async def test_a_text_that_cannot_be_sent_is_recorded_as_failed_and_the_person_told(
    phone_system: System,
):
    phone_system.settings.twilio_api_url = f"http://127.0.0.1:{free_port()}"  # nobody listens
    await start_verification(phone_system)
    token = issue_token(all_issuers(phone_system.settings), USER, "password")

    with pytest.raises(Unavailable, match="We could not reach your phone: provider unreachable"):
        await phone_system.call("verification", "start_phone_registration", username=USER,
                                token=token, number="(508) 555-0142", channel="sms")

    events = list(phone_system.app("verification").envelopes())
    [failed] = [e for e in events if e.name == "CodeDeliveryFailed"]
    assert failed.body["reason"].startswith("provider unreachable (")
    assert "CodeDispatched" not in [e.name for e in events]
