"""Pure helpers shared by the services: sign-in tokens, the secret box, masking, contracts."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag

from services.consent.domain import Agreement, Consent
from services.credentials.domain import Account
from services.ticketing.domain import Ticket
from services.verification.domain import Enrollment
from shared.contracts import CONTRACTS, EventEnvelope, contract_for, subject_for
from shared.errors import AuthenticationFailed, Conflict, RekeyError, error_from_dict
from shared.masking import mask_email, mask_phone
from shared.secrets import SecretBox, keyed_hash
from shared.tokens import issue_token, verify_token

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- sign-in tokens ----------------------------------------------------------------------------
def test_a_token_verifies_for_its_stage_and_gives_back_the_username():
    token = issue_token(KEY, "alice", "password")

    assert verify_token(KEY, token, "password") == "alice"
    assert verify_token(KEY, token, "password", username="alice") == "alice"


def test_a_token_is_for_its_user_whatever_the_letter_case():
    token = issue_token(KEY, "Alice", "mfa")

    assert verify_token(KEY, token, "mfa", username="aLICE") == "Alice"


def test_a_token_of_another_stage_is_refused():
    token = issue_token(KEY, "alice", "password")

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, token, "mfa")


def test_an_expired_token_is_refused():
    token = issue_token(KEY, "alice", "mfa", ttl_seconds=-1)

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, token, "mfa")


def test_a_token_with_a_tampered_signature_is_refused():
    payload, signature = issue_token(KEY, "alice", "mfa").split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, f"{payload}.{flipped}", "mfa")


def test_a_token_whose_claims_were_rewritten_is_refused():
    payload, signature = issue_token(KEY, "alice", "password").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = b64(json.dumps({**claims, "stage": "mfa"}, separators=(",", ":")).encode())

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, f"{forged}.{signature}", "mfa")


def test_a_token_signed_with_another_key_is_refused():
    token = issue_token(OTHER_KEY, "alice", "mfa")

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, token, "mfa")


def test_a_token_for_another_user_is_refused():
    token = issue_token(KEY, "alice", "mfa")

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, token, "mfa", username="bob")


@pytest.mark.parametrize("garbage", ["", "no-dot-at-all", "a.b", "a.b.c", "ünïcode.sïgnature"])
def test_a_malformed_token_is_refused_as_authentication_failed(garbage: str):
    with pytest.raises(AuthenticationFailed) as refusal:
        verify_token(KEY, garbage, "mfa")
    assert refusal.value.code == "authentication_failed"


def test_a_token_cannot_be_issued_for_an_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage"):
        issue_token(KEY, "alice", "admin")


# --- the secret box ----------------------------------------------------------------------------
def test_a_sealed_secret_opens_with_the_same_context():
    box = SecretBox(os.urandom(32))

    sealed = box.seal(b"JBSWY3DPEHPK3PXP", "seed:alice:m1")

    assert box.open(sealed, "seed:alice:m1") == b"JBSWY3DPEHPK3PXP"
    assert b"JBSWY3DPEHPK3PXP" not in sealed


def test_a_sealed_secret_does_not_open_under_another_context():
    box = SecretBox(os.urandom(32))
    sealed = box.seal(b"secret", "seed:alice:m1")

    with pytest.raises(InvalidTag):
        box.open(sealed, "seed:bob:m1")


def test_a_sealed_secret_does_not_open_with_another_key():
    sealed = SecretBox(os.urandom(32)).seal(b"secret", "ref")

    with pytest.raises(InvalidTag):
        SecretBox(os.urandom(32)).open(sealed, "ref")


def test_a_tampered_sealed_secret_does_not_open():
    box = SecretBox(os.urandom(32))
    sealed = bytearray(box.seal(b"secret", "ref"))
    sealed[-1] ^= 0x01

    with pytest.raises(InvalidTag):
        box.open(bytes(sealed), "ref")


def test_sealing_the_same_secret_twice_gives_different_ciphertexts():
    box = SecretBox(os.urandom(32))

    assert box.seal(b"secret", "ref") != box.seal(b"secret", "ref")


def test_a_keyed_hash_depends_on_the_key_and_the_value():
    digest = keyed_hash(KEY, "123456")

    assert digest == keyed_hash(KEY, "123456")
    assert len(digest) == 64
    assert digest != keyed_hash(OTHER_KEY, "123456")
    assert digest != keyed_hash(KEY, "123457")


# --- masking -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jane.doe@example.org", "j•••@example.org"),
        ("a@example.org", "a•••@example.org"),
        ("not-an-address", "•••"),
    ],
)
def test_an_email_keeps_only_its_first_letter_and_domain(address: str, masked: str):
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+15085551234", "+1 ••• ••• 1234"),
        ("+447911123456", "+44 ••• ••• 3456"),
        ("+123", "•••"),
    ],
)
def test_a_phone_number_keeps_only_its_country_code_and_last_four_digits(number: str, masked: str):
    assert mask_phone(number) == masked


# --- public contracts --------------------------------------------------------------------------
def test_a_body_model_ignores_attributes_it_does_not_declare():
    expires = datetime(2025, 3, 2, tzinfo=UTC)
    body = contract_for("PasswordIssued").model_validate(  # type: ignore[union-attr]
        {"password_hash": "$argon2id$v=19$secret", "expires_at": expires, "ticket_id": "t-1"}
    )

    dumped = body.model_dump()
    assert "password_hash" not in dumped
    assert dumped == {"ticket_id": "t-1", "expires_at": expires}


def test_an_unknown_event_name_has_no_contract():
    assert contract_for("AccountFileOpened") is None
    assert contract_for("PasswordIssued") is CONTRACTS["PasswordIssued"]


def test_every_contract_is_named_in_the_past_tense():
    not_ending_in_ed = {"DefaultMethodSet", "TemporaryPasswordSent", "NoticeSent"}

    for name in CONTRACTS:
        assert name.endswith("ed") or name in not_ending_in_ed, name


def test_every_contract_is_named_after_its_model():
    assert all(model.__name__ == name for name, model in CONTRACTS.items())


def test_every_contract_names_an_event_some_aggregate_records():
    aggregates = (Ticket, Account, Enrollment, Consent, Agreement)

    for name in CONTRACTS:
        assert any(hasattr(aggregate, name) for aggregate in aggregates), name


def test_an_event_travels_on_a_subject_named_after_its_service_and_name():
    envelope = EventEnvelope(
        event_id="00000000-0000-0000-0000-000000000001",
        name="ResetApproved",
        schema_version=1,
        occurred_at=datetime(2025, 3, 1, tzinfo=UTC),
        source="ticketing",
        notification_id=7,
        subject="alice",
        body={},
    )

    assert subject_for("ticketing", "ResetApproved") == "rekey.events.ticketing.ResetApproved"
    assert envelope.bus_subject == "rekey.events.ticketing.ResetApproved"
    assert envelope.msg_id == "ticketing:7"


def test_an_error_survives_the_trip_over_the_bus_with_its_class_and_message():
    error = error_from_dict(Conflict("already approved").to_dict())

    assert type(error) is Conflict
    assert error.message == "already approved"
    assert type(error_from_dict({"code": "something-new", "message": "x"})) is RekeyError


def test_a_bound_token_stops_working_when_the_fact_it_is_bound_to_changes():
    from shared.tokens import issue_token, verify_token

    key = b"k" * 32
    token = issue_token(key, "jane", "password_change", bound_to="temporary-1")
    assert verify_token(key, token, "password_change", "jane", bound_to="temporary-1") == "jane"
    with pytest.raises(AuthenticationFailed):
        verify_token(key, token, "password_change", "jane", bound_to="temporary-2")
