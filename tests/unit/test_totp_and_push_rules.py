"""Rules of codes and challenges, without a network: TOTP replay, push numbers, sent codes."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.verification import presenter, push, totp
from services.verification.domain import (
    APP,
    CALL,
    PHONE,
    PUSH,
    SMS,
    TOTP,
    Challenge,
    ChallengeClosed,
    ChallengeExpired,
    CodeRejected,
    Enrollment,
    MethodLockedError,
    UnknownDevice,
    activation_hash,
    code_hash,
)
from services.verification.phone import COUNTRIES, PHONE_COUNTRIES, masked, parse_phone
from shared.errors import InvalidRequest
from tests.unit.recorded import SEED, T0, names


def with_push_device() -> Enrollment:
    e = Enrollment(username="alice")
    e.start_registration(method_id="m1", method_type=APP, secret_ref="r", started_at=T0,
                         activation_hash="h")
    e.activate_device("m1", True, "d1", "pk", "phone", "fp", T0)
    e.issue_challenge("c1", "m1", APP, "registration", kind=PUSH, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=2), code_hash="x")
    e.collect_events()
    return e


def with_phone() -> Enrollment:
    e = Enrollment(username="alice")
    e.start_registration(method_id="p1", method_type=PHONE, secret_ref="r", started_at=T0,
                         channel="sms", masked_phone="+1 ••• ••• 0142")
    e.issue_challenge("s1", "p1", PHONE, "registration", kind=SMS, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=10), code_hash="h1")
    e.collect_events()
    return e


# --- TOTP: the window and replay (property tests) -----------------------------------------------
@settings(database=None, max_examples=150)
@given(steps=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=25))
def test_a_step_is_accepted_only_if_later_than_every_step_accepted_before(steps: list[int]):
    e = Enrollment(username="alice")
    e.start_registration(method_id="m1", method_type=APP, secret_ref="r", started_at=T0)
    accepted: list[int] = []
    for n, step in enumerate(steps):
        if e.methods["m1"].locked:
            break
        ok = e.verify("m1", f"c{n}", step, lock_after=10**6)
        assert ok == (not accepted or step > max(accepted))
        if ok:
            accepted.append(step)
    assert accepted == sorted(set(accepted))


@settings(database=None, max_examples=150)
@given(t=st.integers(min_value=10_000, max_value=4_000_000_000))
def test_the_same_code_is_accepted_once_within_its_window(t: int):
    e = Enrollment(username="alice")
    e.start_registration(method_id="m1", method_type=APP, secret_ref="r", started_at=T0)
    code = pyotp.TOTP(SEED).at(t)

    first = totp.matching_step(SEED, code, now=t)
    assert e.verify("m1", "c1", first) is True
    for later in (t, t + 29, t + 30):  # the code is still inside the window, but used
        assert e.verify("m1", "c2", totp.matching_step(SEED, code, now=later)) is False
    assert e.collect_events()[-1].reason in ("code already used", "wrong code")


def test_a_key_uri_reads_back_the_seed_the_names_and_the_activation_it_was_made_with():
    uri = totp.provisioning_uri(SEED, "a.user@example.org", "PASRR Portal")
    uri += f"&{totp.METHOD_PARAMETER}=m1&{totp.ACTIVATION_PARAMETER}=act"

    key = totp.parse_uri(f" {uri} ")

    assert (key.secret, key.issuer, key.account_name) == (SEED, "PASRR Portal", "a.user@example.org")
    assert (key.digits, key.period, key.method_id, key.activation) == (6, 30, "m1", "act")
    assert SEED not in repr(key) and "act" not in repr(key)
    assert totp.parse_uri(totp.provisioning_uri(SEED, "b", "X")).activation is None


@pytest.mark.parametrize("uri", [
    "https://example.org/?secret=JBSWY3DPEHPK3PXP",
    "otpauth://hotp/X:b?secret=JBSWY3DPEHPK3PXP",
    "otpauth://totp/X:b?issuer=X",
    "otpauth://totp/X:b?secret=not-base32!",
])
def test_a_uri_that_is_not_a_totp_key_is_refused(uri: str):
    with pytest.raises(ValueError):
        totp.parse_uri(uri)


# --- push numbers -------------------------------------------------------------------------------
@pytest.mark.parametrize("digits", [2, 6])
def test_push_numbers_have_the_configured_number_of_digits(digits: int):
    numbers = {push.new_number(digits) for _ in range(200)}
    assert all(len(n) == digits and n.isdigit() for n in numbers)
    assert len(numbers) > 10


def test_three_wrong_numbers_kill_a_push_challenge():
    e = with_push_device()
    for n in range(3):
        assert e.answer_push("c1", "d1", False, f"n{n}", T0) is False
    failed = e.collect_events()
    assert [f.dead for f in failed] == [False, False, True]
    with pytest.raises(ChallengeClosed):
        e.answer_push("c1", "d1", True, "n9", T0)


def test_a_push_answer_after_two_minutes_is_expired_and_records_nothing():
    e = with_push_device()
    with pytest.raises(ChallengeExpired):
        e.answer_push("c1", "d1", True, "n1", T0 + timedelta(minutes=2, seconds=1))
    assert e.collect_events() == []


def test_an_unknown_device_cannot_answer():
    e = with_push_device()
    with pytest.raises(UnknownDevice):
        e.answer_push("c1", "d-other", True, "n1", T0)


def test_a_reused_nonce_is_refused():
    e = with_push_device()
    e.answer_push("c1", "d1", False, "n1", T0)
    with pytest.raises(ChallengeClosed, match="already received"):
        e.answer_push("c1", "d1", False, "n1", T0)


def test_a_signature_covers_every_field():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    fields = {"challenge_id": "c1", "number": "42", "nonce": "n"}
    signature = push.sign(key, "respond", fields)
    public = push.public_key_text(key)
    assert push.signature_ok(public, signature, "respond", fields)
    assert not push.signature_ok(public, signature, "respond", {**fields, "number": "43"})
    assert not push.signature_ok(public, signature, "pending", fields)
    other = push.public_key_text(Ed25519PrivateKey.generate())
    assert not push.signature_ok(other, signature, "respond", fields)


# --- codes sent by text or call -----------------------------------------------------------------
def test_a_new_code_supersedes_the_pending_one():
    e = with_phone()
    e.issue_challenge("s2", "p1", PHONE, "registration", kind=SMS, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=10), code_hash="h2")
    assert e.issued["s1"].state == "superseded"
    assert e.latest_challenge("p1", (SMS,)).challenge_id == "s2"


def test_a_new_push_replaces_the_pending_one_so_the_phone_shows_one_request():
    e = with_push_device()
    e.issue_challenge("c2", "m1", APP, "registration", kind=PUSH, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=2), code_hash="y")
    assert e.issued["c1"].state == "superseded"
    assert e.issued["c2"].state == "pending"


def test_the_help_desk_s_identity_proof_push_neither_replaces_nor_is_replaced():
    e = with_push_device()
    e.issue_challenge("p1", "m1", APP, "identity_proof", kind=PUSH, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=2), code_hash="y")
    e.issue_challenge("c2", "m1", APP, "registration", kind=PUSH, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=2), code_hash="z")
    assert e.issued["p1"].state == "pending" and e.issued["c1"].state == "superseded"


def test_a_sent_code_expires_after_its_minutes_and_the_refusal_records_nothing():
    e = with_phone()
    with pytest.raises(ChallengeExpired):
        e.verify_sent_code("p1", True, T0 + timedelta(minutes=10, seconds=1))
    assert e.collect_events() == []


def test_a_sent_code_is_single_use():
    e = with_phone()
    assert e.verify_sent_code("p1", True, T0) is True
    assert names(e) == ["ChallengeVerified", "MethodRegistered", "DefaultMethodSet"]
    with pytest.raises(CodeRejected, match="No code is waiting"):
        e.verify_sent_code("p1", True, T0)


def test_failures_count_across_new_codes_until_the_method_locks():
    e = with_phone()
    for n in range(5):
        e.issue_challenge(f"s{n + 2}", "p1", PHONE, "registration", kind=SMS, issued_at=T0,
                          expires_at=T0 + timedelta(minutes=10), code_hash="h")
        e.verify_sent_code("p1", False, T0, lock_after=5)
    assert "MethodLocked" in names(e)
    with pytest.raises(MethodLockedError):
        e.verify_sent_code("p1", True, T0)


def test_only_a_registered_method_can_become_the_default():
    e = with_phone()
    with pytest.raises(InvalidRequest):
        e.set_default("p1")


# --- codes as kept: keyed hashes bound to their challenge ---------------------------------------
KEY = b"k" * 32


def test_a_code_matches_only_the_challenge_it_was_issued_for():
    issued = Challenge("c1", "p1", SMS, "registration", code_hash=code_hash(KEY, "c1", "123456"))
    other = Challenge("c2", "p1", SMS, "registration", code_hash=code_hash(KEY, "c1", "123456"))

    assert issued.matches(KEY, "123456")
    assert not issued.matches(KEY, "123457")
    assert not issued.matches(b"x" * 32, "123456")
    assert not other.matches(KEY, "123456")  # the same code, another challenge
    assert not Challenge("c3", "p1", CALL, "registration").matches(KEY, "123456")  # no code


def test_an_activation_code_matches_until_it_is_used():
    e = Enrollment(username="alice")
    e.start_registration(method_id="m1", method_type=APP, secret_ref="r", started_at=T0,
                         activation_hash=activation_hash(KEY, "act-code"))
    method = e.methods["m1"]
    assert method.activation_matches(KEY, "act-code")
    assert not method.activation_matches(KEY, "act-codf")
    e.activate_device("m1", True, "d1", "pk", "phone", "fp", T0)
    assert not method.activation_matches(KEY, "act-code")


@pytest.mark.parametrize(
    ("kind", "has_code", "channel", "takes_code"),
    [(TOTP, False, "app", True), (PUSH, True, "push", False), (SMS, True, "sms", True),
     (CALL, False, "call", False), (CALL, True, "call", True)],
)
def test_a_challenge_says_its_channel_and_whether_a_typed_code_answers_it(
    kind: str, has_code: bool, channel: str, takes_code: bool
):
    challenge = Challenge("c1", "m1", kind, "sign_in", code_hash="h" if has_code else None)
    assert (challenge.channel, challenge.takes_code) == (channel, takes_code)


# --- phone numbers ------------------------------------------------------------------------------
def test_numbers_are_stored_as_e164_and_shown_masked():
    assert parse_phone("(508) 555-0142") == "+15085550142"
    assert parse_phone("+44 20 7946 0958", "US") == "+442079460958"
    assert masked("+15085550142") == "+1 ••• ••• 0142"
    assert COUNTRIES[0] == ("US", "United States (+1)")


@pytest.mark.parametrize("number", ["", "abc", "555", "+1 000 000 0000"])
def test_an_invalid_number_is_refused_clearly(number: str):
    with pytest.raises(InvalidRequest):
        parse_phone(number)


def test_the_countries_offered_are_one_list_united_states_first_with_calling_codes():
    assert PHONE_COUNTRIES[0] == {"region": "US", "name": "United States", "calling_code": 1}
    assert {"region": "IE", "name": "Ireland", "calling_code": 353} in PHONE_COUNTRIES
    assert [c["region"] for c in PHONE_COUNTRIES] == [region for region, _ in COUNTRIES]


def test_a_number_in_a_country_not_offered_is_refused():
    with pytest.raises(InvalidRequest, match="Choose a country or region from the list"):
        parse_phone("03-1234-5678", "JP")


# --- what the waiting page says -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "state", "purpose", "said"),
    [
        (PUSH, "expired", "sign_in",
         "This request has expired. Send a new request, or sign in another way."),
        (CALL, "expired", "sign_in", "This request has expired."),
        (CALL, "superseded", "sign_in", "A newer request replaced this one."),
        (PUSH, "denied", "sign_in", "The request was denied on your device. Send a new request, "
                                    "or sign in another way. If you did not deny it, tell your "
                                    "help desk."),
        (PUSH, "failed", "sign_in", "The number entered in your app was wrong too many times, so "
                                    "this request is closed. Send a new request, or sign in "
                                    "another way."),
        (CALL, "failed", "registration", "The call was not answered with the # key."),
        (CALL, "expired", "registration", "The call has expired."),
        (PUSH, "failed", "registration", "Too many wrong numbers: this request is closed. Try again."),
        (PUSH, "verified", "sign_in", "Notification approved"),
    ],
)
def test_an_ended_challenge_is_told_in_the_words_of_the_page_that_waits_for_it(
    kind: str, state: str, purpose: str, said: str
):
    assert presenter.status_message(kind, state, purpose) == said


# --- what an enrollment keeps of its challenges --------------------------------------------------
def test_an_enrollment_keeps_a_day_of_challenges_and_its_events_keep_them_all():
    """Every sign-in issues a challenge: the state keeps those of the last day (the longest a
    challenge lives or a send window counts back), so it does not grow with years of use."""
    e = with_phone()
    for n in range(1, 6):  # five texts in the first hour
        e.issue_challenge(f"s{n + 1}", "p1", PHONE, "sign_in", kind=SMS,
                          issued_at=T0 + timedelta(minutes=10 * n),
                          expires_at=T0 + timedelta(minutes=10 * n + 10), code_hash="h")
    assert e.sends_since(T0) == 6
    e.issue_challenge("next-day", "p1", PHONE, "sign_in", kind=SMS,
                      issued_at=T0 + timedelta(hours=25),
                      expires_at=T0 + timedelta(hours=25, minutes=10), code_hash="h")
    assert list(e.issued) == ["next-day"] and e.methods["p1"].challenges == ["next-day"]
    assert e.sends_since(T0) == 1
    assert names(e).count("ChallengeIssued") == 6  # nothing of the record lost


def test_an_enrollment_keeps_at_most_its_latest_hundred_challenges():
    e = with_phone()
    for n in range(250):
        e.issue_challenge(f"c{n}", "p1", PHONE, "sign_in", kind=SMS,
                          issued_at=T0 + timedelta(seconds=n),
                          expires_at=T0 + timedelta(seconds=n + 600), code_hash="h")
    assert list(e.issued) == [f"c{n}" for n in range(150, 250)]
    assert e.methods["p1"].challenges == [f"c{n}" for n in range(150, 250)]
    assert e.latest_challenge("p1", (SMS,)).challenge_id == "c249"
