"""SMS pumping and toll fraud: an attacker registers numbers that pay whoever rents them
(premium-rate, shared-cost, satellite, numbers abroad) and makes the portal text or call them.
Such numbers are refused at registration: no text or call goes out and nothing is recorded."""

from __future__ import annotations

import pytest

from services.verification.phone import PhonePolicy, parse_phone
from shared.caught import list_calls, list_texts
from shared.errors import InvalidRequest
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, start_verification

REFUSED = "This number can't receive sign-in codes. Use a mobile or landline number."

HIGH_RISK = {
    "+1 900 555 0123": "premium-rate (US)",
    "+44 909 123 4567": "premium-rate (UK)",
    "+44 871 234 5678": "premium-rate (UK 0871)",
    "+33 8 10 12 34 56": "shared-cost (France)",
    "+881 6 1234 5678": "satellite (Iridium), no country",
    "+44 55 1234 5678": "UAN (UK)",
    "+44 76 4012 3456": "pager (UK)",
    "+1 500 234 5678": "personal number (US)",
    "+44 70 1234 5678": "personal number (UK)",
    "+1 800 234 5678": "toll-free: cannot receive texts",
    "+1 876 234 5678": "Jamaica: +1, but not a region of the list",
    "+7 495 123 45 67": "Russia: a '+' overriding the country chosen",
}


async def register(system: System, number: str, channel: str, country: str = "US") -> dict:
    return await system.call(
        "verification", "start_phone_registration", username=USER, number=number, country=country,
        token=issue_token(all_issuers(system.settings), USER, "password"), channel=channel,
    )


@pytest.mark.parametrize("channel", ["sms", "call"])
async def test_sms_pumping_to_premium_rate_satellite_and_foreign_numbers_is_refused(
    phone_system: System, channel: str
):
    await start_verification(phone_system)
    app = phone_system.app("verification")
    before = app.max_notification_id()

    for number, kind in HIGH_RISK.items():
        with pytest.raises(InvalidRequest) as refused:
            await register(phone_system, number, channel)
        assert refused.value.code == "invalid_request", kind
        assert str(refused.value) == REFUSED, kind

    assert app.max_notification_id() == before
    assert list_texts(phone_system.twilio.folder) == []
    assert list_calls(phone_system.twilio.folder) == []
    # The real user's mobile is still welcome.
    assert (await register(phone_system, "(508) 555-0142", channel))["masked_phone"].endswith("0142")


async def test_sms_pumping_to_a_region_the_operator_left_out_is_refused(phone_system: System):
    phone_system.settings.phone_regions = "US"
    await start_verification(phone_system)
    before = phone_system.app("verification").max_notification_id()

    countries = await phone_system.call("verification", "phone_countries")
    with pytest.raises(InvalidRequest, match="Choose a country or region from the list"):
        await register(phone_system, "07911 123456", "sms", country="GB")
    with pytest.raises(InvalidRequest, match=REFUSED):  # a "+" does not get past the list
        await register(phone_system, "+44 20 7946 0958", "sms")

    assert [c["region"] for c in countries] == ["US"]
    assert phone_system.app("verification").max_notification_id() == before
    assert list_texts(phone_system.twilio.folder) == []


def test_mobile_and_landline_numbers_of_the_list_are_allowed():
    assert parse_phone("07400 123456", "GB") == "+447400123456"  # mobile
    assert parse_phone("+353 1 234 5678", "IE") == "+35312345678"  # landline
    assert parse_phone("(508) 555-0142") == "+15085550142"  # fixed line or mobile


def test_a_setting_that_names_no_known_region_or_type_stops_the_service_at_start():
    with pytest.raises(ValueError, match="REKEY_PHONE_REGIONS"):
        PhonePolicy.from_settings("US,XX", "mobile")
    with pytest.raises(ValueError, match="REKEY_PHONE_NUMBER_TYPES"):
        PhonePolicy.from_settings("", "mobile,premium")


@pytest.mark.parametrize("channel", ["sms", "call"])
async def test_sms_pumping_through_security_info_adding_a_phone_is_refused(
    phone_system: System, channel: str
):
    """The same numbers on the other way in: a signed-in user with a method already, adding a
    phone on the Security info page with a fresh MFA check (not the first method's setup)."""
    import pyotp

    from services.verification import totp

    await start_verification(phone_system)
    password = issue_token(all_issuers(phone_system.settings), USER, "password")
    app_setup = await phone_system.call("verification", "start_app_registration",
                                        username=USER, token=password)
    seed = totp.parse_uri(app_setup["otpauth_uri"]).secret
    verified = await phone_system.call("verification", "verify_code", username=USER,
                                       token=password, method_id=app_setup["method_id"],
                                       code=pyotp.TOTP(seed).now())
    mfa = verified["mfa_token"]
    app = phone_system.app("verification")
    before = app.max_notification_id()

    for number, kind in HIGH_RISK.items():
        with pytest.raises(InvalidRequest, match=REFUSED):
            await phone_system.call("verification", "start_phone_registration", username=USER,
                                    number=number, country="US", token=mfa, channel=channel)
        assert app.max_notification_id() == before, kind

    assert list_texts(phone_system.twilio.folder) == []
    assert list_calls(phone_system.twilio.folder) == []
    added = await phone_system.call("verification", "start_phone_registration", username=USER,
                                    number="(508) 555-0142", country="US", token=mfa,
                                    channel=channel)
    assert added["masked_phone"].endswith("0142")  # the way in works for a real number
