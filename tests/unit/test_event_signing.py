"""Event signatures: what a consumer accepts as published by a service."""

from __future__ import annotations

import pytest

from rekey.stack.buskeys import new_seed
from shared.bus.signing import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    ForgedEvent,
    NkeySigner,
    SignatureCheck,
    public_key_bytes,
)

SUBJECT = "rekey.events.ticketing.ResetApproved"
DATA = b'{"name": "ResetApproved"}'


@pytest.fixture
def ticketing() -> NkeySigner:
    return NkeySigner.from_seed(new_seed())


@pytest.fixture
def check(ticketing: NkeySigner) -> SignatureCheck:
    return SignatureCheck({"ticketing": frozenset([ticketing.public_key])})


def test_the_services_own_signature_is_accepted(ticketing, check) -> None:
    check.check("ticketing", SUBJECT, DATA, ticketing.headers(SUBJECT, DATA))


def test_an_unsigned_event_is_refused(check) -> None:
    with pytest.raises(ForgedEvent, match="unsigned"):
        check.check("ticketing", SUBJECT, DATA, {})


def test_a_key_not_listed_for_the_source_is_refused(check) -> None:
    stranger = NkeySigner.from_seed(new_seed())
    with pytest.raises(ForgedEvent, match="not a key of ticketing"):
        check.check("ticketing", SUBJECT, DATA, stranger.headers(SUBJECT, DATA))


def test_a_signature_over_other_bytes_or_another_subject_is_refused(ticketing, check) -> None:
    headers = ticketing.headers(SUBJECT, DATA)
    with pytest.raises(ForgedEvent, match="bad signature"):
        check.check("ticketing", SUBJECT, DATA + b" ", headers)
    with pytest.raises(ForgedEvent, match="bad signature"):
        check.check("ticketing", "rekey.events.ticketing.TicketClosed", DATA, headers)


def test_a_garbled_signature_is_refused_not_a_crash(ticketing, check) -> None:
    headers = {**ticketing.headers(SUBJECT, DATA), SIGNATURE_HEADER: "not base64!"}
    with pytest.raises(ForgedEvent):
        check.check("ticketing", SUBJECT, DATA, headers)


def test_during_a_rotation_both_keys_are_trusted(ticketing) -> None:
    new = NkeySigner.from_seed(new_seed())
    check = SignatureCheck({"ticketing": frozenset([ticketing.public_key, new.public_key])})
    for signer in (ticketing, new):
        check.check("ticketing", SUBJECT, DATA, signer.headers(SUBJECT, DATA))


@pytest.mark.parametrize("key", ["", "UNOTAKEY", "S" + "A" * 55])
def test_public_keys_that_are_not_nkey_user_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError):
        public_key_bytes(key)


def test_a_public_key_with_one_changed_character_fails_its_checksum(ticketing) -> None:
    key = ticketing.public_key
    changed = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    with pytest.raises(ValueError):
        public_key_bytes(changed)
    assert SIGNER_HEADER in ticketing.headers(SUBJECT, DATA)
