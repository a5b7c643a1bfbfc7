"""Rules of a user's MFA enrolment and the TOTP helpers it relies on."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.verification import totp
from services.verification.domain import (
    APP,
    LOCK_AFTER_FAILURES,
    DefaultNotRemovable,
    Enrollment,
    LastMethod,
    MethodLockedError,
    UnknownMethod,
)
from tests.unit.recorded import SEED, T0, names

APPROVED_AT = T0  # when the reset was approved
NOW = 1_700_000_015.0  # 15 s into time step 56_666_667
STEP = int(NOW // totp.PERIOD)


def enrollment_with(*methods: tuple[str, datetime], method_type: str = APP) -> Enrollment:
    """An enrolment with the given (method_id, started_at) registrations begun, events collected."""
    enrollment = Enrollment(username="alice")
    for method_id, started_at in methods:
        enrollment.start_registration(
            method_id=method_id,
            method_type=method_type,
            secret_ref=f"ref-{method_id}",
            started_at=started_at,
        )
    enrollment.collect_events()
    return enrollment


def code_at(step: int, seed: str = SEED) -> str:
    return pyotp.TOTP(seed, digits=totp.DIGITS, interval=totp.PERIOD).generate_otp(step)


def fail(enrollment: Enrollment, method_id: str, times: int) -> None:
    for n in range(times):
        assert enrollment.verify(method_id, f"c-fail-{n}", None) is False


# --- setting up ---------------------------------------------------------------------------------
def test_a_new_app_setup_replaces_the_unfinished_ones_and_they_stop_taking_codes():
    enrollment = enrollment_with(("m1", APPROVED_AT), ("m2", APPROVED_AT))
    assert enrollment.verify("m2", "c1", STEP) is True  # m2 is registered; m1 never finished
    enrollment.collect_events()

    replaced = enrollment.replace_setups(APP)

    assert [m.method_id for m in replaced] == ["m1"]
    assert names(enrollment) == ["MethodSetupsReplaced"]
    with pytest.raises(UnknownMethod):
        enrollment.verify("m1", "c2", STEP)
    assert [m.method_id for m in enrollment.registered] == ["m2"]  # a working app stays


def test_nothing_is_replaced_when_no_setup_of_that_kind_is_unfinished():
    enrollment = enrollment_with(("p1", APPROVED_AT), method_type="phone")
    assert enrollment.replace_setups(APP) == []
    assert names(enrollment) == []
    assert enrollment.method("p1").registered is False


def test_starting_a_registration_records_it_as_not_yet_registered():
    enrollment = Enrollment(username="alice")
    enrollment.collect_events()

    enrollment.start_registration(
        method_id="m1", method_type=APP, secret_ref="ref-m1", started_at=APPROVED_AT
    )

    [started] = enrollment.collect_events()
    assert type(started).__name__ == "MethodRegistrationStarted"
    assert (started.method_id, started.method_type, started.secret_ref) == ("m1", APP, "ref-m1")
    method = enrollment.method("m1")
    assert method.label == "Microsoft Authenticator"
    assert method.registered is False
    assert enrollment.registered == []
    assert enrollment.default_method is None


def test_an_unknown_method_is_not_found():
    enrollment = enrollment_with()

    with pytest.raises(UnknownMethod) as refusal:
        enrollment.verify("nope", "c1", STEP)
    assert refusal.value.code == "not_found"
    assert enrollment.collect_events() == []


def test_issuing_a_challenge_is_recorded_against_the_method():
    enrollment = enrollment_with(("m1", APPROVED_AT))

    enrollment.issue_challenge(challenge_id="c1", method_id="m1", method_type=APP, purpose="sign_in")

    assert names(enrollment) == ["ChallengeIssued"]
    assert enrollment.method("m1").challenges == ["c1"]


# --- revocation on an approved reset ------------------------------------------------------------
def test_revoking_keeps_methods_started_after_the_approval_and_revokes_older_ones():
    enrollment = enrollment_with(
        ("old", APPROVED_AT - timedelta(days=30)),
        ("at", APPROVED_AT),
        ("new", APPROVED_AT + timedelta(seconds=5)),
    )

    revoked = enrollment.revoke_before(APPROVED_AT, "ticket-1")

    assert sorted(m.method_id for m in revoked) == ["at", "old"]
    assert list(enrollment.methods) == ["new"]
    [event] = enrollment.collect_events()
    assert type(event).__name__ == "MethodsRevoked"
    assert event.revoked == ["at", "old"]
    assert event.ticket_id == "ticket-1"


def test_revoking_the_default_method_clears_the_default():
    enrollment = enrollment_with(("old", APPROVED_AT - timedelta(days=1)))
    enrollment.verify("old", "c1", STEP)
    assert enrollment.default_method == "old"

    enrollment.revoke_before(APPROVED_AT, "ticket-1")

    assert enrollment.default_method is None
    assert enrollment.registered == []


def test_revoking_keeps_a_default_method_set_up_after_the_approval():
    enrollment = enrollment_with(
        ("old", APPROVED_AT - timedelta(days=1)), ("new", APPROVED_AT + timedelta(minutes=1))
    )
    enrollment.verify("new", "c1", STEP)

    enrollment.revoke_before(APPROVED_AT, "ticket-1")

    assert enrollment.default_method == "new"
    assert [m.method_id for m in enrollment.registered] == ["new"]


# --- verifying codes ----------------------------------------------------------------------------
def test_the_first_good_code_registers_the_method_and_makes_it_the_default():
    enrollment = enrollment_with(("m1", APPROVED_AT))

    assert enrollment.verify("m1", "c1", STEP) is True

    events = enrollment.collect_events()
    assert [type(e).__name__ for e in events] == [
        "ChallengeVerified",
        "MethodRegistered",
        "DefaultMethodSet",
    ]
    assert events[0].step == STEP
    assert events[0].challenge_id == "c1"
    assert events[1].label == "Microsoft Authenticator"
    assert events[2].method_id == "m1"
    assert enrollment.default_method == "m1"
    assert enrollment.method("m1").registered is True


def test_a_good_code_for_a_registered_method_records_only_challenge_verified():
    enrollment = enrollment_with(("m1", APPROVED_AT))
    enrollment.verify("m1", "c1", STEP)
    enrollment.collect_events()

    assert enrollment.verify("m1", "c2", STEP + 1) is True

    assert names(enrollment) == ["ChallengeVerified"]


def test_a_second_method_is_registered_without_taking_over_the_default():
    enrollment = enrollment_with(("m1", APPROVED_AT), ("m2", APPROVED_AT), method_type="phone")
    enrollment.verify("m1", "c1", STEP)
    enrollment.collect_events()

    enrollment.verify("m2", "c2", STEP)

    assert names(enrollment) == ["ChallengeVerified", "MethodRegistered"]
    assert enrollment.default_method == "m1"
    assert enrollment.method("m2").label == "Phone"


def test_a_wrong_code_is_a_challenge_failed_with_reason_wrong_code():
    enrollment = enrollment_with(("m1", APPROVED_AT))

    assert enrollment.verify("m1", "c1", None) is False

    [failed] = enrollment.collect_events()
    assert type(failed).__name__ == "ChallengeFailed"
    assert failed.reason == "wrong code"
    assert failed.failures == 1
    assert enrollment.method("m1").registered is False


@pytest.mark.parametrize("replayed", [STEP, STEP - 1])
def test_a_replayed_or_older_step_is_refused_as_code_already_used(replayed: int):
    enrollment = enrollment_with(("m1", APPROVED_AT))
    enrollment.verify("m1", "c1", STEP)
    enrollment.collect_events()

    assert enrollment.verify("m1", "c2", replayed) is False

    [failed] = enrollment.collect_events()
    assert type(failed).__name__ == "ChallengeFailed"
    assert failed.reason == "code already used"
    assert enrollment.method("m1").last_step == STEP


def test_five_consecutive_failures_lock_the_method():
    enrollment = enrollment_with(("m1", APPROVED_AT))

    fail(enrollment, "m1", LOCK_AFTER_FAILURES)

    events = enrollment.collect_events()
    assert [type(e).__name__ for e in events] == ["ChallengeFailed"] * 5 + ["MethodLocked"]
    assert events[4].failures == 5
    assert events[5].method_id == "m1"
    with pytest.raises(MethodLockedError) as refusal:
        enrollment.check_usable(enrollment.method("m1"))
    assert refusal.value.code == "locked"


def test_a_locked_method_refuses_even_a_good_code_and_records_nothing():
    enrollment = enrollment_with(("m1", APPROVED_AT))
    fail(enrollment, "m1", 5)
    enrollment.collect_events()

    with pytest.raises(MethodLockedError):
        enrollment.verify("m1", "c-good", STEP)

    assert enrollment.collect_events() == []


def test_four_failures_do_not_lock_the_method():
    enrollment = enrollment_with(("m1", APPROVED_AT))

    fail(enrollment, "m1", 4)

    assert "MethodLocked" not in names(enrollment)
    enrollment.check_usable(enrollment.method("m1"))


def test_a_success_resets_the_failure_count():
    enrollment = enrollment_with(("m1", APPROVED_AT))
    fail(enrollment, "m1", 4)

    enrollment.verify("m1", "c-good", STEP)
    fail(enrollment, "m1", 4)

    assert "MethodLocked" not in names(enrollment)
    assert enrollment.method("m1").failures == 4
    assert enrollment.method("m1").locked is False


def test_locking_one_method_leaves_the_others_usable():
    enrollment = enrollment_with(("m1", APPROVED_AT), ("m2", APPROVED_AT))

    fail(enrollment, "m1", 5)

    assert enrollment.verify("m2", "c1", STEP) is True


# --- TOTP ---------------------------------------------------------------------------------------
def test_the_current_code_matches_the_current_step():
    assert totp.matching_step(SEED, code_at(STEP), now=NOW) == STEP


@pytest.mark.parametrize("offset", [-1, 1])
def test_a_code_one_step_either_side_matches_that_step(offset: int):
    assert totp.matching_step(SEED, code_at(STEP + offset), now=NOW) == STEP + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_a_code_two_steps_away_does_not_match(offset: int):
    assert totp.matching_step(SEED, code_at(STEP + offset), now=NOW) is None


def test_spaces_typed_in_a_code_are_ignored():
    code = code_at(STEP)

    assert totp.matching_step(SEED, f" {code[:3]} {code[3:]} ", now=NOW) == STEP


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "abcdef", "-12345", "12.345"])
def test_a_code_that_is_not_six_digits_matches_nothing(code: str):
    assert totp.matching_step(SEED, code, now=NOW) is None


def test_a_new_seed_is_32_base32_characters_holding_160_bits():
    seeds = {totp.new_seed() for _ in range(20)}

    assert len(seeds) == 20
    for seed in seeds:
        assert len(seed) == 32
        assert set(seed) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        assert len(base64.b32decode(seed)) * 8 == 160


def test_the_readable_key_is_the_seed_in_lower_case_groups_of_four():
    key = totp.readable_key(SEED)

    assert key.split(" ") == [SEED[i : i + 4].lower() for i in range(0, 32, 4)]


def test_the_provisioning_uri_names_the_issuer_and_carries_the_seed():
    uri = totp.provisioning_uri(SEED, "alice", "PASRR Portal")

    assert uri.startswith("otpauth://totp/")
    assert f"secret={SEED}" in uri
    assert "issuer=PASRR%20Portal" in uri


@settings(database=None, max_examples=200)
@given(
    t=st.floats(min_value=60.0, max_value=4_102_444_800.0, allow_nan=False, allow_infinity=False),
    offset=st.sampled_from([-1, 0, 1]),
)
def test_any_code_within_one_step_matches_and_yields_its_step(t: float, offset: int):
    expected = int(t // totp.PERIOD) + offset
    code = code_at(expected)

    found = totp.matching_step(SEED, code, now=t)

    assert found is not None
    # The window is scanned oldest first: an earlier step may share the code by coincidence.
    assert found == expected or (found < expected and code_at(found) == code)


@settings(database=None, max_examples=200)
@given(
    t=st.floats(min_value=3600.0, max_value=4_102_444_800.0, allow_nan=False, allow_infinity=False),
    offset=st.integers(min_value=2, max_value=100).flatmap(lambda n: st.sampled_from([-n, n])),
)
def test_a_code_two_or_more_steps_away_never_matches_its_own_step(t: float, offset: int):
    step = int(t // totp.PERIOD)
    code = code_at(step + offset)

    found = totp.matching_step(SEED, code, now=t)

    # Only a coincidental collision with a step inside the window may match, never step+offset.
    assert found is None or (abs(found - step) <= totp.WINDOW and code_at(found) == code)


# --- Security info: remove a method, change the default ----------------------------------------
def two_registered() -> Enrollment:
    """m1 (the default) and m2, both set up; events collected."""
    enrollment = enrollment_with(("m1", APPROVED_AT), ("m2", APPROVED_AT))
    enrollment.verify("m1", "c1", STEP, now=APPROVED_AT + timedelta(minutes=1))
    enrollment.verify("m2", "c2", STEP, now=APPROVED_AT + timedelta(minutes=2))
    enrollment.collect_events()
    return enrollment


def test_a_method_records_when_it_was_added_and_last_used():
    enrollment = two_registered()
    enrollment.verify("m1", "c3", STEP + 1, now=APPROVED_AT + timedelta(hours=1))
    m1 = enrollment.methods["m1"]
    assert m1.registered_at == APPROVED_AT + timedelta(minutes=1)
    assert m1.last_used == APPROVED_AT + timedelta(hours=1)


def test_removing_a_method_that_is_not_the_default_records_method_removed():
    enrollment = two_registered()
    enrollment.remove("m2")
    assert names(enrollment) == ["MethodRemoved"]
    assert [m.method_id for m in enrollment.registered] == ["m1"]


def test_the_last_method_cannot_be_removed_and_nothing_is_recorded():
    enrollment = two_registered()
    enrollment.remove("m2")
    enrollment.collect_events()
    with pytest.raises(LastMethod, match="only sign-in method"):
        enrollment.remove("m1")
    assert enrollment.collect_events() == []


def test_the_default_method_cannot_be_removed_until_another_is_the_default():
    enrollment = two_registered()
    with pytest.raises(DefaultNotRemovable, match="default"):
        enrollment.remove("m1")
    assert enrollment.collect_events() == []
    assert enrollment.change_default("m2") is True
    enrollment.remove("m1")
    assert names(enrollment) == ["DefaultMethodChanged", "MethodRemoved"]
    assert enrollment.default_method == "m2"


def test_choosing_the_current_default_again_records_nothing():
    enrollment = two_registered()
    assert enrollment.change_default("m1") is False
    assert enrollment.collect_events() == []


def test_a_locked_method_cannot_become_the_default():
    enrollment = two_registered()
    fail(enrollment, "m2", LOCK_AFTER_FAILURES)
    enrollment.collect_events()
    with pytest.raises(MethodLockedError):
        enrollment.change_default("m2")
    assert enrollment.collect_events() == []
