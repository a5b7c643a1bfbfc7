"""Rules of a portal account, temporary passwords, hashing and the new-password policy.

Argon2 costs tens of milliseconds per hash or verify, so one hash is shared by the module and
the aggregate tests use placeholder hash strings.
"""

from __future__ import annotations

import string
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest

from services.credentials.domain import (
    Account,
    DelaySchedule,
    SignInDelayed,
    TemporaryPasswordExpired,
    refused,
)
from services.credentials.passwords import (
    MAX_LENGTH,
    MIN_LENGTH,
    TEMPORARY_ALPHABET,
    TEMPORARY_LENGTH,
    check_new_password,
    hash_password,
    new_temporary_password,
    same_password,
    verify_password,
)
from shared.errors import InvalidRequest
from tests.unit.recorded import names

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# A password with accents, as the NFC (composed) form most keyboards produce.
ACCENTED = unicodedata.normalize("NFC", "crème brûlée à la café")


def new_account(username: str = "alice") -> Account:
    account = Account(
        username=username,
        email=f"{username}@example.org",
        display_name=username.title(),
        role="user",
        actor="operator",
    )
    account.collect_events()
    return account


DELAY = DelaySchedule(after=5, first=1.0, cap=60.0)


def fail(account: Account, times: int, now: datetime = NOW) -> None:
    for _ in range(times):
        account.record_failure("wrong password", now=now, delay=DELAY)


@pytest.fixture(scope="module")
def accented_hash() -> str:
    return hash_password(ACCENTED)


# --- the account aggregate ---------------------------------------------------------------------
def test_registering_an_account_records_account_registered_without_any_password():
    account = Account(
        username="alice", email="alice@example.org", display_name="Alice", role="user", actor="operator"
    )

    [registered] = account.collect_events()
    assert type(registered).__name__ == "AccountRegistered"
    assert (registered.username, registered.email, registered.role) == ("alice", "alice@example.org", "user")
    assert account.password_hash is None
    assert account.temporary is False
    assert account.retry_at is None
    assert account.failures == 0
    assert account.subject == "alice"


def test_an_account_is_found_by_username_whatever_its_case():
    assert new_account("alice").id == Account.id_for("ALICE")


def test_issuing_a_temporary_password_records_its_expiry_and_ticket_and_awaits_delivery():
    account = new_account()

    account.issue_temporary_password("hash-1", NOW + timedelta(hours=24), "ticket-1")

    [issued] = account.collect_events()
    assert type(issued).__name__ == "PasswordIssued"
    assert issued.expires_at == NOW + timedelta(hours=24)
    assert issued.ticket_id == "ticket-1"
    assert account.temporary is True
    assert account.delivery_pending is True
    assert account.pending_ticket == "ticket-1"
    assert account.password_hash == "hash-1"


@pytest.mark.parametrize("outcome", ["sent", "failed"])
def test_a_delivery_outcome_ends_the_pending_delivery(outcome: str):
    account = new_account()
    account.issue_temporary_password("hash-1", NOW, "ticket-1")
    account.collect_events()

    if outcome == "sent":
        account.mark_sent("ticket-1", "a•••@example.org")
    else:
        account.mark_delivery_failed("ticket-1", "mail server refused")

    expected = "TemporaryPasswordSent" if outcome == "sent" else "TemporaryPasswordDeliveryFailed"
    assert names(account) == [expected]
    assert account.delivery_pending is False


def test_each_failed_sign_in_is_recorded_with_the_running_count():
    account = new_account()

    fail(account, 2)

    events = account.collect_events()
    assert [type(e).__name__ for e in events] == ["SignInFailed", "SignInFailed"]
    assert [e.failures for e in events] == [1, 2]
    assert events[0].actor == "alice"
    assert events[0].reason == "wrong password"


def test_four_failed_sign_ins_do_not_delay_the_next_attempt():
    account = new_account()

    fail(account, DELAY.after - 1)

    assert account.retry_at is None
    account.check_not_delayed(NOW)


def test_the_fifth_failed_sign_in_makes_the_next_attempt_wait_a_second_and_locks_nothing():
    account = new_account()

    fail(account, 5)

    events = account.collect_events()
    assert [type(e).__name__ for e in events] == ["SignInFailed"] * 5
    assert events[-1].failures == 5 and events[-1].retry_at == NOW + timedelta(seconds=1)
    with pytest.raises(SignInDelayed) as refusal:
        account.check_not_delayed(NOW)
    assert refusal.value.code == "rate_limited"
    assert "wait 1 second," in refusal.value.message
    account.check_not_delayed(NOW + timedelta(seconds=1))  # once it passed: checked again


def test_the_delay_doubles_with_each_further_failure_up_to_the_cap():
    assert [DELAY.seconds(n) for n in range(1, 14)] == [
        0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60
    ]
    assert DelaySchedule(after=1, first=2.0, cap=5.0).seconds(1000) == 5.0


def test_the_wait_is_said_in_whole_seconds_left():
    account = new_account()
    fail(account, 8)  # 8 seconds

    with pytest.raises(SignInDelayed, match="wait 6 seconds"):
        account.check_not_delayed(NOW + timedelta(seconds=2.5))


def test_a_successful_sign_in_resets_the_failures_and_the_delay():
    account = new_account()
    fail(account, 7)

    account.record_sign_in(temporary=False, actor="alice")

    assert account.failures == 0 and account.retry_at is None
    fail(account, 4)
    account.check_not_delayed(NOW)


def test_a_new_temporary_password_resets_the_failures_and_the_delay():
    account = new_account()
    fail(account, 6)

    account.issue_temporary_password("hash-2", NOW + timedelta(hours=24), "ticket-2")

    assert account.failures == 0
    account.check_not_delayed(NOW)


def test_a_lock_recorded_by_an_earlier_version_replays_as_a_delay_until_its_end():
    account = new_account()
    fail(account, 5)
    account._locked(failures=5, until=NOW + timedelta(minutes=15))

    with pytest.raises(SignInDelayed, match="wait 900 seconds"):
        account.check_not_delayed(NOW)
    account.check_not_delayed(NOW + timedelta(minutes=15))



def test_an_expired_temporary_password_is_refused():
    account = new_account()
    account.issue_temporary_password("hash-1", NOW, "ticket-1")

    with pytest.raises(TemporaryPasswordExpired) as refusal:
        account.check_temporary_unexpired(NOW + timedelta(seconds=1))
    assert refusal.value.code == "expired"


def test_a_temporary_password_is_usable_until_its_expiry():
    account = new_account()
    account.issue_temporary_password("hash-1", NOW, "ticket-1")

    account.check_temporary_unexpired(NOW - timedelta(hours=23))
    account.check_temporary_unexpired(NOW)


def test_a_password_the_user_chose_never_expires():
    account = new_account()
    account.issue_temporary_password("hash-1", NOW, "ticket-1")

    account.change_password("hash-2", "changed at first sign-in", actor="alice")

    [changed] = [e for e in account.collect_events() if type(e).__name__ == "PasswordChanged"]
    assert changed.reason == "changed at first sign-in"
    assert account.temporary is False
    assert account.expires_at is None
    account.check_temporary_unexpired(NOW + timedelta(days=3650))


def test_unknown_user_and_wrong_password_get_the_same_answer():
    first, second = refused(), refused()

    assert first.code == "authentication_failed"
    assert first.message == second.message


# --- temporary passwords -----------------------------------------------------------------------
def test_the_temporary_alphabet_has_no_look_alike_characters():
    look_alikes = set("0Oo1lIi5S2Z8B")

    assert look_alikes.isdisjoint(TEMPORARY_ALPHABET)


def test_the_temporary_alphabet_has_no_repeated_or_unprintable_characters():
    assert len(set(TEMPORARY_ALPHABET)) == len(TEMPORARY_ALPHABET)
    assert set(TEMPORARY_ALPHABET) <= set(string.ascii_letters + string.digits)


def test_a_temporary_password_is_16_characters_from_the_alphabet():
    passwords = [new_temporary_password() for _ in range(200)]

    assert TEMPORARY_LENGTH == 16
    assert all(len(p) == 16 for p in passwords)
    assert all(set(p) <= set(TEMPORARY_ALPHABET) for p in passwords)
    assert len(set(passwords)) == len(passwords)


# --- hashing -----------------------------------------------------------------------------------
def test_a_hash_is_argon2id_with_the_owasp_parameters(accented_hash: str):
    assert accented_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert ACCENTED not in accented_hash


def test_a_password_verifies_against_its_own_hash(accented_hash: str):
    assert verify_password(accented_hash, ACCENTED) is True


def test_a_wrong_password_does_not_verify(accented_hash: str):
    assert verify_password(accented_hash, ACCENTED + "!") is False


def test_a_password_typed_in_nfd_verifies_against_the_nfc_hashed_one(accented_hash: str):
    decomposed = unicodedata.normalize("NFD", ACCENTED)
    assert decomposed != ACCENTED

    assert verify_password(accented_hash, decomposed) is True


@pytest.mark.parametrize("other", [ACCENTED, unicodedata.normalize("NFD", ACCENTED), ACCENTED + "!",
                                   ACCENTED.upper(), ""])
def test_two_typed_passwords_are_the_same_exactly_when_one_verifies_against_the_others_hash(
        accented_hash: str, other: str):
    assert same_password(ACCENTED, other) is verify_password(accented_hash, other)


@pytest.mark.parametrize("missing", [None, ""])
def test_verifying_against_no_hash_is_false(missing: str | None):
    assert verify_password(missing, ACCENTED) is False


def test_verifying_against_a_malformed_hash_is_false():
    assert verify_password("not-an-argon2-hash", ACCENTED) is False


# --- new-password rules ------------------------------------------------------------------------
def test_a_password_of_15_characters_is_accepted_and_14_refused():
    assert MIN_LENGTH == 15
    check_new_password("correct horse b", username="alice")

    with pytest.raises(InvalidRequest, match="at least 15"):
        check_new_password("correct horse ", username="alice")


def test_a_password_of_64_characters_is_accepted_and_65_refused():
    assert MAX_LENGTH == 64
    long = ("correct horse battery staple " * 3)[:64]
    check_new_password(long, username="alice")

    with pytest.raises(InvalidRequest, match="at most 64"):
        check_new_password(long + "x", username="alice")


def test_length_is_counted_after_nfc_normalisation():
    # 10 accented letters: 20 code points typed as NFD, 10 once composed.
    decomposed = unicodedata.normalize("NFD", "éèêëàâäîïô")
    assert len(decomposed) == 20

    with pytest.raises(InvalidRequest, match="at least"):
        check_new_password(decomposed, username="alice")


@pytest.mark.parametrize(
    ("password", "username"),
    [
        ("my name is Alice-Smith ok", "alice-smith"),
        ("ALICE.SMITH likes long walks", "alice.smith@example.org"),
    ],
)
def test_a_password_containing_the_username_is_refused(password: str, username: str):
    with pytest.raises(InvalidRequest, match="username"):
        check_new_password(password, username=username)


def test_a_password_containing_a_context_word_is_refused():
    with pytest.raises(InvalidRequest):
        check_new_password("I love the PASRR Portal a lot", username="alice", context=("PASRR Portal",))
    with pytest.raises(InvalidRequest):
        check_new_password("my-rekey-password-2025", username="alice", context=("rekey",))


def test_words_shorter_than_four_characters_are_not_held_against_the_password():
    check_new_password("bob wrote abc in a passphrase", username="bob", context=("abc",))


def test_one_character_repeated_is_refused():
    with pytest.raises(InvalidRequest, match="repeated"):
        check_new_password("ab" * 10, username="alice")


# --- the help desk resets the delay (rekey accounts unlock) -----------------------------------
def test_a_help_desk_reset_of_the_delay_is_recorded_and_clears_the_failures():
    from shared.errors import Conflict

    account = new_account()
    fail(account, 6)
    account.collect_events()

    account.reset_delay("agent.smith", "called back")

    [unlocked] = account.collect_events()
    assert type(unlocked).__name__ == "AccountUnlocked" and unlocked.agent == "agent.smith"
    assert not account.is_delayed(NOW) and account.failures == 0
    with pytest.raises(Conflict, match="no failed sign-ins"):
        account.reset_delay("agent.smith", "again")
