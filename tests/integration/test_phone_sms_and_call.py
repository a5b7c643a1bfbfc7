"""Phone methods end to end: the real twilio SDK -> the local Twilio server -> our webhooks."""

from __future__ import annotations

import re

import pytest

from services.verification import totp
from shared.caught import latest_call_to, latest_text_to, list_texts
from shared.errors import InvalidRequest, Locked, RekeyError
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, eventually, start_verification

NUMBER = "(508) 555-0142"
E164 = "+15085550142"
MASKED = "+1 ••• ••• 0142"
CODE = re.compile(r"^(\d{6}) is your")


def token_for(system: System, username: str = USER) -> str:
    return issue_token(all_issuers(system.settings), username, "password")


async def text_me(system: System, number: str = NUMBER, username: str = USER,
                  channel: str = "sms") -> dict:
    return await system.call("verification", "start_phone_registration", username=username,
                             token=token_for(system, username), number=number, channel=channel)


async def call_me(system: System, username: str = USER) -> dict:
    return await text_me(system, username=username, channel="call")


def texted_code(system: System, to: str = E164) -> str:
    text = latest_text_to(system.twilio.folder, to)
    assert text is not None, "no text arrived"
    return CODE.match(text.body).group(1)


async def verify(system: System, code: str, method_id: str | None = None, username: str = USER) -> dict:
    return await system.call("verification", "verify_code", username=username,
                             token=token_for(system, username), code=code, method_id=method_id)


async def status_of(system: System, challenge_id: str) -> dict:
    return await system.call("verification", "challenge_status", username=USER,
                             token=token_for(system), challenge_id=challenge_id)


async def test_text_me_a_code_registers_the_phone_shown_masked(phone_system: System):
    await start_verification(phone_system)
    started = await text_me(phone_system)

    assert started["masked_phone"] == MASKED
    assert "direct line" in started["note"]
    verified = await verify(phone_system, texted_code(phone_system), started["method_id"])

    assert verified["default_label"] == f"Phone {MASKED}"
    events = list(phone_system.app("verification").envelopes())
    names = [e.name for e in events]
    assert {"MethodRegistrationStarted", "ChallengeIssued", "CodeDispatched", "ChallengeVerified",
            "MethodRegistered", "DefaultMethodSet"} <= set(names)
    [registered] = [e for e in events if e.name == "MethodRegistered"]
    assert registered.body["masked_phone"] == MASKED
    text = str([e.model_dump() for e in events])
    assert E164 not in text and "5550142" not in text


async def test_a_resent_code_replaces_the_old_one_which_then_fails(phone_system: System):
    await start_verification(phone_system)
    started = await text_me(phone_system)
    await verify(phone_system, texted_code(phone_system), started["method_id"])
    first = await phone_system.call("verification", "start_challenge", username=USER,
                                    token=token_for(phone_system))
    old = texted_code(phone_system)
    second = await phone_system.call("verification", "start_challenge", username=USER,
                                     token=token_for(phone_system))
    new = texted_code(phone_system)
    assert first["challenge_id"] != second["challenge_id"]

    if old != new:
        with pytest.raises(InvalidRequest, match="not right"):
            await verify(phone_system, old)
    assert (await verify(phone_system, new))["verified"] is True
    with pytest.raises(InvalidRequest, match="No code is waiting"):  # single use
        await verify(phone_system, new)
    assert (await status_of(phone_system, first["challenge_id"]))["state"] == "superseded"


async def test_an_invalid_number_is_refused_and_records_nothing(phone_system: System):
    await start_verification(phone_system)
    before = phone_system.app("verification").max_notification_id()

    for number in ("123", "not a number", "+1 (000) 000-0000", "+44 20"):
        with pytest.raises(InvalidRequest, match=r"phone number|not a phone"):
            await text_me(phone_system, number)

    assert phone_system.app("verification").max_notification_id() == before
    assert list_texts(phone_system.twilio.folder) == []


async def test_call_me_and_press_pound_registers_the_phone(phone_system: System):
    await start_verification(phone_system)
    started = await call_me(phone_system)
    assert "press the # key" in started["prompt"]

    async def answered():
        return (await status_of(phone_system, started["challenge_id"]))["state"] == "verified"

    await eventually(answered, what="the call to be answered")
    status = await status_of(phone_system, started["challenge_id"])
    assert status["message"] == "Call answered. Your phone was registered successfully."
    assert status["default_label"] == f"Phone {MASKED}"
    call = latest_call_to(phone_system.twilio.folder, E164)
    assert call.pressed == "#"
    assert any("press the pound key" in s for s in call.spoken)
    await eventually(lambda: latest_call_to(phone_system.twilio.folder, E164).status == "completed")


async def test_a_call_answered_with_another_key_fails(phone_system: System):
    phone_system.twilio.keypress = "1"
    await start_verification(phone_system)
    started = await call_me(phone_system)

    async def failed():
        return (await status_of(phone_system, started["challenge_id"]))["state"] == "failed"

    await eventually(failed, what="the call to fail")
    assert "MethodRegistered" not in phone_system.event_names("verification")


async def test_the_stronger_call_mode_reads_out_a_code_to_type(phone_system: System):
    phone_system.settings.call_mode = "read_code"
    await start_verification(phone_system)
    started = await call_me(phone_system)

    async def spoken():
        call = latest_call_to(phone_system.twilio.folder, E164)
        return call and call.spoken and call.spoken[0]

    said = await eventually(spoken, what="the call to read out a code")
    code = "".join(re.findall(r"\d", said.split("Again")[0]))
    assert len(code) == 6
    verified = await verify(phone_system, code, started["method_id"])
    assert verified["verified"] is True


async def test_failures_count_across_new_codes_and_lock_the_method(phone_system: System):
    phone_system.settings.method_lock_after = 3
    phone_system.settings.send_limit_per_user = 10
    phone_system.settings.send_limit_per_number = 10
    await start_verification(phone_system)
    started = await text_me(phone_system)
    for attempt in range(3):
        code = texted_code(phone_system)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        with pytest.raises(RekeyError) as refused:
            await verify(phone_system, wrong, started["method_id"])
        if attempt < 2:
            assert ["2 tries left", "1 try left"][attempt] in refused.value.message
            # a new code for the same method: the counter does not reset
            await resend(phone_system, started["method_id"])
        else:
            assert "locked" in refused.value.message
    assert "MethodLocked" in phone_system.event_names("verification")
    with pytest.raises(Locked):
        await verify(phone_system, texted_code(phone_system), started["method_id"])


async def resend(system: System, method_id: str) -> None:
    """Send a fresh code to a method still being set up (its "Resend code" link)."""
    await system.call("verification", "resend_code", username=USER, token=token_for(system),
                      method_id=method_id)


async def test_sends_are_rate_limited_per_user_and_per_number(phone_system: System):
    phone_system.settings.send_limit_per_user = 2
    phone_system.settings.send_limit_per_number = 3
    await start_verification(phone_system)
    await text_me(phone_system)
    await text_me(phone_system)
    before = len(list_texts(phone_system.twilio.folder))

    with pytest.raises(RekeyError, match="Too many texts and calls for your account") as refused:
        await text_me(phone_system)
    assert refused.value.code == "rate_limited"

    await text_me(phone_system, username="other.one@masspasrr.org")
    with pytest.raises(RekeyError, match="to this phone number"):  # SMS pumping: per number
        await text_me(phone_system, username="third.one@masspasrr.org")
    assert len(list_texts(phone_system.twilio.folder)) == before + 1


async def test_a_later_sign_in_challenges_the_default_and_offers_the_others(phone_system: System):
    import pyotp

    await start_verification(phone_system)
    registration = await phone_system.call("verification", "start_app_registration", username=USER,
                                           token=token_for(phone_system))
    seed = totp.parse_uri(registration["otpauth_uri"]).secret
    first = await verify(phone_system, pyotp.TOTP(seed).now(), registration["method_id"])
    mfa = first["mfa_token"]  # adding or changing a method needs a completed MFA sign-in
    started = await phone_system.call("verification", "start_phone_registration", username=USER,
                                      token=mfa, number=NUMBER, channel="sms")
    await verify(phone_system, texted_code(phone_system), started["method_id"])

    sign_in = await phone_system.call("verification", "start_challenge", username=USER,
                                      token=token_for(phone_system))
    assert sign_in["method_id"] == registration["method_id"]
    assert sign_in["kind"] == "totp"
    assert [o["method_id"] for o in sign_in["others"]] == [started["method_id"]]

    changed = await phone_system.call("verification", "set_default_method", username=USER,
                                      token=mfa, method_id=started["method_id"])
    assert changed["default_label"] == f"Phone {MASKED}"
    sign_in = await phone_system.call("verification", "start_challenge", username=USER,
                                      token=token_for(phone_system))
    assert sign_in["kind"] == "sms" and sign_in["method_id"] == started["method_id"]
    assert (await verify(phone_system, texted_code(phone_system)))["verified"] is True
    names = phone_system.event_names("verification")
    assert names.count("DefaultMethodSet") == 1  # the first method, by itself
    assert names.count("DefaultMethodChanged") == 1  # the user's choice


# --- the facts a screen needs, so the portal keeps no copy of the rules ------------------------
TEXT_STEP = {"channel": "sms", "takes_code": True, "code_length": 6}


def step_of(reply: dict) -> dict:
    return {k: reply[k] for k in ("channel", "takes_code", "code_length")}


async def test_every_reply_about_a_text_says_it_takes_a_six_digit_code(phone_system: System):
    await start_verification(phone_system)
    started = await text_me(phone_system)
    resent = await phone_system.call("verification", "resend_code", username=USER,
                                     token=token_for(phone_system), method_id=started["method_id"])
    waiting = await status_of(phone_system, resent["challenge_id"])
    assert [step_of(r) for r in (started, resent, waiting)] == [TEXT_STEP] * 3

    await verify(phone_system, texted_code(phone_system), started["method_id"])
    status = await phone_system.call("verification", "status", username=USER,
                                     token=token_for(phone_system))
    sign_in = await phone_system.call("verification", "start_challenge", username=USER,
                                      token=token_for(phone_system))
    assert [step_of(m) for m in status["methods"]] == [TEXT_STEP]
    assert step_of(sign_in) == TEXT_STEP
    with pytest.raises(InvalidRequest, match="Only an authenticator app"):
        await phone_system.call("verification", "start_challenge", username=USER,
                                token=token_for(phone_system), channel="app")


async def test_a_press_pound_call_takes_no_code_and_a_read_code_call_takes_one(phone_system: System):
    await start_verification(phone_system)
    pound = await call_me(phone_system)
    assert step_of(pound) == {"channel": "call", "takes_code": False, "code_length": None}

    phone_system.settings.call_mode = "read_code"
    other = "other.one@masspasrr.org"
    reads = await call_me(phone_system, other)
    assert step_of(reads) == {"channel": "call", "takes_code": True, "code_length": 6}
    # A challenge keeps what it was issued as: the first call still takes no code.
    assert step_of(await status_of(phone_system, pound["challenge_id"]))["takes_code"] is False


async def test_phone_countries_is_the_one_list_united_states_first(phone_system: System):
    await start_verification(phone_system)

    countries = await phone_system.call("verification", "phone_countries")

    assert countries[0] == {"region": "US", "name": "United States", "calling_code": 1}
    assert {"region": "GB", "name": "United Kingdom", "calling_code": 44} in countries
    assert [c["name"] for c in countries[1:]] == sorted(c["name"] for c in countries[1:])


async def test_a_number_in_a_country_not_offered_is_refused_and_records_nothing(phone_system: System):
    await start_verification(phone_system)
    before = phone_system.app("verification").max_notification_id()

    with pytest.raises(InvalidRequest, match="Choose a country or region from the list"):
        await phone_system.call("verification", "start_phone_registration", username=USER,
                                token=token_for(phone_system), number="03-1234-5678", country="JP",
                                channel="sms")

    assert phone_system.app("verification").max_notification_id() == before
    assert list_texts(phone_system.twilio.folder) == []
