"""Push with number matching, through the reference authenticator and the device API."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from rekey.authenticator.app import Authenticator, parse_uri
from shared.clock import SYSTEM_CLOCK, Clock, ManualClock
from shared.errors import AuthenticationFailed, Conflict, Expired, InvalidRequest, RekeyError
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, start_verification


def token_for(system: System, username: str = USER) -> str:
    return issue_token(all_issuers(system.settings), username, "password")


async def registered_with_push(system: System, tmp_path: Path, username: str = USER,
                               clock: Clock = SYSTEM_CLOCK):
    """Start app registration, activate the reference authenticator from the QR's URI
    (``clock``: the phone's)."""
    token = token_for(system, username)
    registration = await system.call("verification", "start_app_registration", username=username,
                                     token=token)
    phone = Authenticator(tmp_path / f"{username}.json", system.client, clock)
    account = await phone.activate(registration["otpauth_uri"])
    return token, registration, phone, account


async def try_it_out(system: System, token: str, username: str = USER) -> dict:
    return await system.call("verification", "start_push", username=username, token=token,
                             location="Boston, MA, United States")


async def test_the_qr_code_carries_a_standard_uri_and_the_cant_scan_data(system: System):
    await start_verification(system)
    registration = await system.call("verification", "start_app_registration", username=USER,
                                     token=token_for(system))

    assert registration["otpauth_uri"].startswith("otpauth://totp/")
    assert registration["qr_svg"].startswith("<svg")
    assert registration["issuer"] == "PASRR Portal"
    assert registration["account_name"] == USER
    account, activation = parse_uri(registration["otpauth_uri"])
    assert account.secret.lower() == registration["secret_key"].replace(" ", "")
    assert activation and account.method_id == registration["method_id"]
    # Any authenticator app works: the plain TOTP code registers the method.
    verified = await system.call("verification", "verify_code", username=USER, token=token_for(system),
                                 code=pyotp.TOTP(account.secret).now(),
                                 method_id=registration["method_id"])
    assert verified["default_label"] == "Microsoft Authenticator"


async def test_approving_with_the_number_shown_registers_the_app_and_makes_it_the_default(
    system: System, tmp_path: Path
):
    await start_verification(system)
    token, _, phone, account = await registered_with_push(system, tmp_path)
    assert account.push_capable
    shown = await try_it_out(system, token)
    assert len(shown["number"]) == 2

    [pending] = await phone.pending()
    assert pending["challenge_id"] == shown["challenge_id"]
    assert pending["application"] == "PASRR Portal"
    assert pending["location"] == "Boston, MA, United States"
    assert "number" not in pending  # number matching: the device must be told it by the person
    result = await phone.approve(shown["challenge_id"], shown["number"])

    assert result["state"] == "verified"
    status = await system.call("verification", "challenge_status", username=USER, token=token,
                               challenge_id=shown["challenge_id"])
    assert status["message"] == "Notification approved"
    assert status["mfa_token"]
    assert status["default_label"] == "Microsoft Authenticator"
    names = system.event_names("verification")
    expected = ["DeviceActivated", "ChallengeIssued", "ChallengeVerified", "MethodRegistered",
                "DefaultMethodSet"]
    assert [n for n in names if n != "EnrollmentOpened"][-5:] == expected
    assert await phone.pending() == []


async def test_a_wrong_number_fails_and_three_wrong_numbers_kill_the_challenge(
    system: System, tmp_path: Path
):
    await start_verification(system)
    token, _, phone, _ = await registered_with_push(system, tmp_path)
    shown = await try_it_out(system, token)
    wrong = "10" if shown["number"] != "10" else "11"

    for attempt in range(3):
        with pytest.raises(InvalidRequest, match="not the one shown"):
            await phone.approve(shown["challenge_id"], wrong) if attempt < 2 else await phone.send(
                phone.response(phone.accounts()[0], shown["challenge_id"], "approve", wrong)
            )
    failed = [e for e in system.app("verification").envelopes() if e.name == "ChallengeFailed"]
    assert [e.body["reason"] for e in failed] == ["wrong number"] * 3
    assert failed[-1].body["dead"] is True
    # Dead: even the right number is refused now, and nothing more is recorded.
    before = system.app("verification").max_notification_id()
    with pytest.raises(Conflict, match="already failed"):
        await phone.send(phone.response(phone.accounts()[0], shown["challenge_id"], "approve",
                                        shown["number"]))
    assert system.app("verification").max_notification_id() == before
    status = await system.call("verification", "challenge_status", username=USER, token=token,
                               challenge_id=shown["challenge_id"])
    assert status["state"] == "failed"


async def test_a_replayed_signed_answer_changes_nothing(system: System, tmp_path: Path):
    await start_verification(system)
    token, _, phone, account = await registered_with_push(system, tmp_path)
    first = await try_it_out(system, token)
    answer = phone.response(account, first["challenge_id"], "approve", first["number"])
    await phone.send(answer)
    before = system.app("verification").max_notification_id()

    with pytest.raises(Conflict, match="already received"):
        await phone.send(answer)  # the same challenge
    second = await try_it_out(system, token)
    moved = {**answer, "challenge_id": second["challenge_id"]}
    with pytest.raises(AuthenticationFailed):  # the signature names the first challenge
        await phone.send(moved)

    after = [e.name for e in system.app("verification").envelopes()][-1:]
    assert after == ["ChallengeIssued"]  # only the second challenge was recorded
    assert system.app("verification").max_notification_id() == before + 1


async def test_an_expired_challenge_cannot_be_approved(system: System, tmp_path: Path):
    system.settings.push_ttl_seconds = 1
    clock = ManualClock()
    await start_verification(system, clock)
    token, _, phone, account = await registered_with_push(system, tmp_path, clock=clock)
    shown = await try_it_out(system, token)
    clock.advance(1.3)

    assert await phone.pending() == []
    before = system.app("verification").max_notification_id()
    with pytest.raises(Expired):
        await phone.send(phone.response(account, shown["challenge_id"], "approve", shown["number"]))
    assert system.app("verification").max_notification_id() == before
    status = await system.call("verification", "challenge_status", username=USER, token=token,
                               challenge_id=shown["challenge_id"])
    assert status["state"] == "expired"


async def test_an_expired_sign_in_request_says_so_in_plain_words(system: System, tmp_path: Path):
    clock = ManualClock()
    await start_verification(system, clock)
    token, _, phone, _ = await registered_with_push(system, tmp_path, clock=clock)
    shown = await try_it_out(system, token)
    await phone.approve(shown["challenge_id"], shown["number"])
    sign_in = await system.call("verification", "start_challenge", username=USER, token=token)

    clock.advance(system.settings.push_ttl_seconds + 1)

    status = await system.call("verification", "challenge_status", username=USER, token=token,
                               challenge_id=sign_in["challenge_id"])
    assert (status["state"], status["message"]) == (
        "expired", "This request has expired. Send a new request, or sign in another way.")


async def test_a_device_request_signed_too_long_ago_is_refused(system: System, tmp_path: Path):
    clock = ManualClock()
    await start_verification(system, clock)
    token, _, phone, account = await registered_with_push(system, tmp_path, clock=clock)
    shown = await try_it_out(system, token)
    answer = phone.response(account, shown["challenge_id"], "approve", shown["number"])

    clock.advance(301)  # sent five minutes and a second after the phone signed it
    with pytest.raises(AuthenticationFailed, match="too old"):
        await phone.send(answer)
    # A phone whose clock stands more than five minutes behind: what it signs now is too old.
    phone.clock = ManualClock(start=clock.now() - timedelta(seconds=301))
    with pytest.raises(AuthenticationFailed, match="too old"):
        await phone.pending()


async def test_another_devices_key_is_refused(system: System, tmp_path: Path):
    await start_verification(system)
    token, _, phone, account = await registered_with_push(system, tmp_path)
    _, _, other_phone, other = await registered_with_push(system, tmp_path, "someone.else@masspasrr.org")
    shown = await try_it_out(system, token)
    before = system.app("verification").max_notification_id()

    # The other device signs, claiming to be this user's device.
    forged = other_phone.response(other, shown["challenge_id"], "approve", shown["number"])
    forged.update(username=USER, method_id=account.method_id, device_id=account.device_id)
    forged["signature"] = other_phone.response(other, "x", "approve")["signature"]
    with pytest.raises(AuthenticationFailed):
        await phone.send(forged)
    # Its own identity is not a device of this user's method either.
    own = other_phone.response(other, shown["challenge_id"], "approve", shown["number"])
    with pytest.raises(RekeyError):
        await phone.send(own)

    assert system.app("verification").max_notification_id() == before
    with pytest.raises(AuthenticationFailed):  # nor may it list this user's requests
        bad = Authenticator(tmp_path / "stolen.json", system.client)
        stolen = account.__class__(**{**account.__dict__, "private_key": other.private_key})
        bad._save([stolen])
        await bad.pending()


async def test_a_denied_challenge_is_recorded_for_the_security_team(system: System, tmp_path: Path):
    await start_verification(system)
    token, _, phone, _ = await registered_with_push(system, tmp_path)
    shown = await try_it_out(system, token)

    result = await phone.deny(shown["challenge_id"])

    assert result["state"] == "denied"
    [denied] = [e for e in system.app("verification").envelopes() if e.name == "ChallengeDenied"]
    assert denied.body["context"]["location"] == "Boston, MA, United States"
    assert denied.actor == USER
    status = await system.call("verification", "challenge_status", username=USER, token=token,
                               challenge_id=shown["challenge_id"])
    assert status["state"] == "denied" and "mfa_token" not in status
    with pytest.raises(Conflict):
        await phone.approve(shown["challenge_id"], shown["number"])


async def test_an_activation_code_works_once(system: System, tmp_path: Path):
    await start_verification(system)
    token = token_for(system)
    registration = await system.call("verification", "start_app_registration", username=USER,
                                     token=token)
    await Authenticator(tmp_path / "a.json", system.client).activate(registration["otpauth_uri"])

    with pytest.raises(Conflict, match="already used"):
        await Authenticator(tmp_path / "b.json", system.client).activate(registration["otpauth_uri"])
    assert system.event_names("verification").count("DeviceActivated") == 1


async def test_six_digit_numbers_when_the_setting_asks_for_them(system: System, tmp_path: Path):
    system.settings.push_number_digits = 6
    await start_verification(system)
    token, _, phone, _ = await registered_with_push(system, tmp_path)
    shown = await try_it_out(system, token)

    assert len(shown["number"]) == 6
    assert (await phone.approve(shown["challenge_id"], shown["number"]))["state"] == "verified"


async def test_push_events_and_history_hold_no_secret(system: System, tmp_path: Path):
    await start_verification(system)
    token, registration, phone, account = await registered_with_push(system, tmp_path)
    shown = await try_it_out(system, token)
    await phone.approve(shown["challenge_id"], shown["number"])

    history = str(await system.call("verification", "history", username=USER))
    _, activation = parse_uri(registration["otpauth_uri"])
    for secret in (account.secret, registration["secret_key"], activation, account.private_key):
        assert secret not in history
    assert f"'number': '{shown['number']}'" not in history


def step_of(reply: dict) -> dict:
    return {k: reply[k] for k in ("channel", "takes_code", "code_length")}


APP_STEP = {"channel": "app", "takes_code": True, "code_length": 6}
PUSH_STEP = {"channel": "push", "takes_code": False, "code_length": None}


async def test_a_push_takes_no_code_and_the_app_gives_its_code_when_asked(system: System, tmp_path: Path):
    await start_verification(system)
    token, registration, phone, account = await registered_with_push(system, tmp_path)
    assert step_of(registration) == APP_STEP
    shown = await try_it_out(system, token)
    waiting = await system.call("verification", "challenge_status", username=USER, token=token,
                                challenge_id=shown["challenge_id"])
    assert [step_of(shown), step_of(waiting)] == [PUSH_STEP] * 2
    await phone.approve(shown["challenge_id"], shown["number"])

    status = await system.call("verification", "status", username=USER, token=token)
    sign_in = await system.call("verification", "start_challenge", username=USER, token=token)
    assert [step_of(m) for m in status["methods"]] == [PUSH_STEP]
    assert step_of(sign_in) == PUSH_STEP
    by_code = await system.call("verification", "start_challenge", username=USER, token=token,
                                channel="app")
    assert step_of(by_code) == APP_STEP and by_code["kind"] == "totp"
    verified = await system.call("verification", "verify_code", username=USER, token=token,
                                 method_id=by_code["method_id"],
                                 code=pyotp.TOTP(account.secret).now())
    assert verified["verified"] is True
