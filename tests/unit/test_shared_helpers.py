"""Pure helpers shared by the services: sign-in tokens, the secret box, masking, contracts."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag

from services.consent.domain import Agreement, Consent
from services.credentials.domain import Account
from services.ticketing.domain import Ticket
from services.verification.callbacks import CallBack
from services.verification.domain import Enrollment
from services.verification.method_challenges import MethodChallenge
from shared import errors
from shared.contracts import CONTRACTS, EventEnvelope, contract_for, subject_for
from shared.errors import AuthenticationFailed, Conflict, RekeyError, error_from_dict
from shared.masking import mask_email, mask_phone
from shared.secrets import SecretBox, keyed_hash
from shared.tokens import TokenKeys, issue_token, verify_token

KEY = TokenKeys.fresh()
OTHER_KEY = TokenKeys.fresh()


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
    signed, signature = issue_token(KEY, "alice", "mfa").rsplit(".", 1)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, f"{signed}.{flipped}", "mfa")


def test_a_token_whose_claims_were_rewritten_is_refused():
    header, payload, signature = issue_token(KEY, "alice", "password").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = b64(json.dumps({**claims, "stage": "mfa", "iss": "verification"},
                            separators=(",", ":")).encode())

    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, f"{header}.{forged}.{signature}", "mfa")


def test_a_service_cannot_issue_a_step_it_does_not_run():
    consent = TokenKeys(trusted=KEY.trusted)  # trusts every issuer, signs as none
    verification = TokenKeys(own={"verification": KEY.own["verification"]}, trusted=KEY.trusted)

    with pytest.raises(ValueError, match="only credentials issues"):
        issue_token(consent, "alice", "password")
    with pytest.raises(ValueError, match="only credentials issues"):
        issue_token(verification, "alice", "password")
    assert verify_token(consent, issue_token(verification, "alice", "mfa"), "mfa") == "alice"


def test_a_password_token_signed_with_verifications_key_is_refused():
    """A verification service that signs a claim to a password step is not believed."""
    import jwt

    forged = jwt.encode({"iss": "credentials", "aud": "rekey-sign-in", "sub": "alice",
                         "stage": "password", "iat": 1, "exp": 4_000_000_000},
                        KEY.own["verification"], algorithm="EdDSA")
    with pytest.raises(AuthenticationFailed):
        verify_token(KEY, forged, "password")


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
    key, other_key = b"k" * 32, b"o" * 32
    digest = keyed_hash(key, "123456")

    assert digest == keyed_hash(key, "123456")
    assert len(digest) == 64
    assert digest != keyed_hash(other_key, "123456")
    assert digest != keyed_hash(key, "123457")


# --- masking -----------------------------------------------------------------------------------
EMAIL = "an email keeps only its first letter and domain"
PHONE = "a phone number keeps only its country code and last four digits"


@pytest.mark.parametrize(
    ("mask", "address", "masked"),
    [
        pytest.param(mask_email, "jane.doe@example.org", "j•••@example.org", id=EMAIL),
        pytest.param(mask_email, "a@example.org", "a•••@example.org", id=EMAIL),
        pytest.param(mask_email, "not-an-address", "•••", id=EMAIL),
        pytest.param(mask_phone, "+15085551234", "+1 ••• ••• 1234", id=PHONE),
        pytest.param(mask_phone, "+447911123456", "+44 ••• ••• 3456", id=PHONE),
        pytest.param(mask_phone, "+123", "•••", id=PHONE),
    ],
)
def test_a_masked_address_keeps_only_what_the_person_needs_to_recognise_it(
    mask: Callable[[str], str], address: str, masked: str
):
    assert mask(address) == masked


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
    aggregates = (Ticket, Account, Enrollment, CallBack, MethodChallenge, Consent, Agreement)

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


def test_every_stable_code_comes_back_as_the_class_that_declared_it():
    codes = {
        "refused": RekeyError, "not_found": errors.NotFound, "invalid_request": errors.InvalidRequest,
        "not_allowed": errors.NotAllowed, "conflict": Conflict,
        "authentication_failed": AuthenticationFailed, "expired": errors.Expired,
        "locked": errors.Locked, "unavailable": errors.Unavailable,
        "rate_limited": errors.RateLimited, "integrity_failed": errors.IntegrityFailed,
        "erased": errors.DataErased, "deadline_exceeded": errors.DeadlineExceeded,
        "caller_unverified": errors.CallerUnverified,
    }

    assert codes == errors.ERRORS_BY_CODE
    for code, cls in codes.items():
        assert type(error_from_dict(cls("x").to_dict())) is cls
        assert cls("x").code == code


def test_a_bound_token_stops_working_when_the_fact_it_is_bound_to_changes():
    key = TokenKeys.fresh()
    token = issue_token(key, "jane", "password_change", bound_to="temporary-1")
    assert verify_token(key, token, "password_change", "jane", bound_to="temporary-1") == "jane"
    with pytest.raises(AuthenticationFailed):
        verify_token(key, token, "password_change", "jane", bound_to="temporary-2")


def test_a_free_port_is_bindable_and_below_the_ephemeral_range():
    """Outgoing connections take their source ports from the ephemeral range; a server port
    chosen there could be taken before the server binds it."""
    import socket

    from rekey.stack.ports import _ephemeral_start, free_port

    ports = {free_port() for _ in range(20)}
    assert all(1024 < port < _ephemeral_start() for port in ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))


def test_a_fact_on_file_seals_to_the_same_bytes_each_time_and_opens_only_where_it_belongs(
    settings_factory,
):
    from shared.sealed import open_fact, seal_fact

    settings = settings_factory("nats://127.0.0.1:1")
    first = seal_fact(settings, "ada@masspasrr.org", "phone", "+15085550142")
    # Published and read back, the same event must give the same copy (auditors compare them).
    assert seal_fact(settings, "ada@masspasrr.org", "phone", "+15085550142") == first
    assert seal_fact(settings, "ada@masspasrr.org", "phone", "+15085550143") != first
    assert open_fact(settings, "ada@masspasrr.org", "phone", first) == "+15085550142"
    with pytest.raises(InvalidTag):
        open_fact(settings, "bob@masspasrr.org", "phone", first)
