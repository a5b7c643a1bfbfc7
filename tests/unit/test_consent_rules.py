"""The Data Access Agreement text and the rules of accepting it."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from services.consent.agreement import CURRENT, AgreementText, load
from services.consent.domain import (
    SYSTEM_SUBJECT,
    Agreement,
    ConfirmWithoutAccept,
    Consent,
    StaleAgreement,
)


def published(text: AgreementText = CURRENT) -> Agreement:
    return Agreement(
        version=text.version,
        title=text.title,
        content_hash=text.content_hash,
        clauses=len(text.clauses),
    )


def consent_file(username: str = "alice") -> Consent:
    consent = Consent(username=username)
    consent.collect_events()
    return consent


# --- the agreement text -------------------------------------------------------------------------
def test_the_agreement_has_exactly_21_clauses_numbered_in_order():
    assert len(CURRENT.clauses) == 21
    numbers = [int(m.group(1)) for line in CURRENT.text.splitlines() if (m := re.match(r"^(\d+)\. ", line))]
    assert numbers == list(range(1, 22))


def test_the_agreement_title_is_data_access_agreement():
    assert CURRENT.title == "Data Access Agreement"


def test_the_content_hash_is_sha256_of_the_file_bytes():
    raw = resources.files("services.consent").joinpath("agreement_v1.txt").read_bytes()

    assert CURRENT.content_hash == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", CURRENT.content_hash)


def test_any_change_to_the_text_changes_the_content_hash():
    edited = AgreementText(CURRENT.version, CURRENT.text.replace("21.", "21 .", 1))

    assert edited.content_hash != CURRENT.content_hash


def test_loading_version_1_gives_the_current_agreement():
    assert load(1) == CURRENT
    assert CURRENT.version == 1


def test_the_agreement_parts_are_title_audience_preamble_clauses_and_closing():
    parts = CURRENT.parts()

    assert parts["title"] == "Data Access Agreement"
    assert parts["audience"]
    assert str(parts["preamble"]).startswith("I acknowledge and agree")
    assert parts["clauses"] == CURRENT.clauses
    assert parts["closing"]
    assert not any(re.match(r"^\d+\. ", p) for p in parts["closing"])  # type: ignore[union-attr]


# --- the published agreement -------------------------------------------------------------------
def test_publishing_an_agreement_records_version_title_hash_and_clause_count():
    agreement = published()

    [event] = agreement.collect_events()
    assert type(event).__name__ == "AgreementPublished"
    assert (event.version, event.title, event.content_hash, event.clauses) == (
        1,
        "Data Access Agreement",
        CURRENT.content_hash,
        21,
    )
    assert agreement.subject == SYSTEM_SUBJECT


def test_an_agreement_version_has_a_stable_id():
    assert published().id == Agreement.create_id(1)
    assert Agreement.create_id(1) != Agreement.create_id(2)


# --- accepting ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("accepted", "confirmed"), [(False, True), (True, False), (False, False)])
def test_confirming_without_ticking_accept_is_refused_and_records_nothing(accepted: bool, confirmed: bool):
    consent = consent_file()

    with pytest.raises(ConfirmWithoutAccept) as refusal:
        consent.accept(published(), CURRENT.content_hash, accepted=accepted, confirmed=confirmed)

    assert refusal.value.code == "invalid_request"
    assert consent.collect_events() == []
    assert consent.accepted_version is None


def test_accepting_a_text_other_than_the_current_one_is_refused_as_stale():
    consent = consent_file()

    with pytest.raises(StaleAgreement):
        consent.accept(published(), "sha256:" + "0" * 64, accepted=True, confirmed=True)

    assert consent.collect_events() == []
    assert consent.accepted_hash is None


def test_a_missing_tick_is_reported_before_a_stale_text():
    consent = consent_file()

    with pytest.raises(ConfirmWithoutAccept):
        consent.accept(published(), "sha256:stale", accepted=False, confirmed=True)


def test_accepting_records_agreement_accepted_with_version_and_hash():
    consent = consent_file("alice")

    consent.accept(published(), CURRENT.content_hash, accepted=True, confirmed=True)

    [accepted] = consent.collect_events()
    assert type(accepted).__name__ == "AgreementAccepted"
    assert accepted.version == 1
    assert accepted.content_hash == CURRENT.content_hash
    assert accepted.actor == "alice"
    assert consent.accepted_version == 1
    assert consent.accepted_hash == CURRENT.content_hash


def test_presenting_the_agreement_is_recorded():
    consent = consent_file()

    consent.present(version=1, content_hash=CURRENT.content_hash, actor="alice")

    [presented] = consent.collect_events()
    assert type(presented).__name__ == "AgreementPresented"
    assert presented.content_hash == CURRENT.content_hash


def test_declining_withdraws_an_earlier_acceptance():
    consent = consent_file()
    consent.accept(published(), CURRENT.content_hash, accepted=True, confirmed=True)
    consent.collect_events()

    consent.decline(version=1, content_hash=CURRENT.content_hash, actor="alice")

    assert [type(e).__name__ for e in consent.collect_events()] == ["AgreementDeclined"]
    assert consent.accepted_version is None
    assert consent.accepted_hash is None


def test_a_consent_file_is_found_by_username_and_is_about_that_user():
    consent = Consent(username="alice")

    assert consent.id == Consent.id_for("Alice")
    assert consent.subject == "alice"
    assert [type(e).__name__ for e in consent.collect_events()] == ["ConsentFileOpened"]
