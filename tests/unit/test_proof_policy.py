"""The identity proof policy: points per kind, what ordinary and privileged accounts need,
kinds that never count alone; and the proofs a ticket records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.ticketing.domain import ProofNotRunning, Ticket
from services.ticketing.proofs import PolicyNotMet, ProofPolicy
from shared.settings import Settings

POLICY = ProofPolicy()
NOW = datetime.now(UTC)


def ticket() -> Ticket:
    t = Ticket(name="Alice", email="alice@example.org", username="alice", reason="lost phone",
               requested_by="alice", channel="web")
    t.collect_events()
    return t


@pytest.mark.parametrize(
    ("proofs", "privileged", "met"),
    [
        ((), False, False),
        (("call_back",), False, True),
        (("manager_approval",), False, True),
        (("email_code",), False, False),
        (("id_check",), False, False),
        (("email_code", "id_check"), False, True),
        (("call_back",), True, False),
        (("call_back", "id_check"), True, True),
        (("email_code", "id_check"), True, False),
        (("call_back", "manager_approval"), True, True),
    ],
)
def test_the_default_policy(proofs: tuple[str, ...], privileged: bool, met: bool):
    assert POLICY.is_met(proofs, privileged) is met


def test_a_kind_that_never_counts_alone_counts_nothing_alone_and_a_kind_counts_once():
    assert POLICY.score(["id_check"]) == 0
    assert POLICY.score(["call_back", "call_back"]) == 2
    assert POLICY.counted(["id_check", "email_code"]) == {"email_code": 1, "id_check": 1}


def test_the_refusal_says_how_many_points_are_missing_and_from_what():
    with pytest.raises(PolicyNotMet) as refused:
        POLICY.check_met(["id_check"], privileged=True)
    message = str(refused.value.message)
    assert "0 of the 3 points a privileged account needs" in message
    assert "Needs 3 more points" in message
    assert "call-back to the phone on file (2)" in message
    assert "never counts alone" in message


def test_an_operator_tunes_the_policy_in_settings_and_a_wrong_setting_stops_the_service():
    settings = Settings(proof_points="call_back=3,id_check=1", proof_points_ordinary=3,
                        proof_never_alone="id_check")
    policy = ProofPolicy.from_settings(settings)
    assert policy.is_met(["call_back"], privileged=False)
    assert not policy.is_met(["manager_approval", "id_check"], privileged=False)
    with pytest.raises(ValueError, match="REKEY_PROOF_POINTS"):
        ProofPolicy.from_settings(Settings(proof_points="typed_address=5"))
    with pytest.raises(ValueError, match="REKEY_PROOF_NEVER_ALONE"):
        ProofPolicy.from_settings(Settings(proof_never_alone="nonsense"))


def test_an_agent_cannot_approve_without_the_policy_met_and_nothing_is_recorded():
    t = ticket()
    with pytest.raises(PolicyNotMet):
        t.approve("bob")
    t.attest_id_check("p-1", "bob", "passport seen at the desk")
    with pytest.raises(PolicyNotMet):
        t.approve("bob")
    assert [type(e).__name__ for e in t.collect_events()] == ["ProofSucceeded"]
    assert t.state == "open"


def test_a_typed_address_matching_the_one_on_file_proves_nothing():
    t = Ticket(name="Alice", email="alice@example.org", username="alice", reason="r",
               requested_by="alice", channel="web", sender_verified=True)
    with pytest.raises(PolicyNotMet):
        t.approve("bob")
    assert "approve" not in t.next_actions("bob")


def test_a_mailed_code_succeeds_once_and_fails_after_too_many_wrong_codes():
    t = ticket()
    t.start_proof("p-1", "email_code", "bob", "a•••@example.org", NOW + timedelta(minutes=5),
                  code_hash="h")
    assert t.answer_code("p-1", False, NOW, 2, "bob") is False
    assert t.answer_code("p-1", False, NOW, 2, "bob") is False
    assert t.proofs["p-1"]["state"] == "failed"
    with pytest.raises(ProofNotRunning, match="already failed"):
        t.answer_code("p-1", True, NOW, 2, "bob")

    t.start_proof("p-2", "email_code", "bob", "a•••@example.org", NOW + timedelta(minutes=5),
                  code_hash="h")
    assert t.answer_code("p-2", True, NOW, 2, "bob") is True
    with pytest.raises(ProofNotRunning, match="already succeeded"):
        t.answer_code("p-2", True, NOW, 2, "bob")
    assert t.proven_kinds == {"email_code"}


def test_an_expired_proof_cannot_succeed():
    t = ticket()
    t.start_proof("p-1", "manager_approval", "bob", "m•••@example.org", NOW)
    with pytest.raises(ProofNotRunning, match="expired"):
        t.conclude_proof("p-1", "manager_approval", NOW + timedelta(seconds=1), True, "m", "ok")
    assert t.proof_facts(NOW + timedelta(seconds=1))[0]["state"] == "expired"


def test_an_agent_cannot_prove_the_identity_behind_a_reset_of_their_own_account():
    from services.ticketing.domain import SelfApprovalRefused

    t = ticket()
    with pytest.raises(SelfApprovalRefused):
        t.attest_id_check("p-1", "ALICE", "my own passport")
    with pytest.raises(SelfApprovalRefused):
        t.start_proof("p-1", "email_code", "alice", "a•••@example.org", NOW, code_hash="h")


def test_proof_facts_never_show_a_code_hash():
    t = ticket()
    t.start_proof("p-1", "email_code", "bob", "a•••@example.org", NOW + timedelta(minutes=5),
                  code_hash="secret-hash")
    assert "secret-hash" not in str(t.proof_facts(NOW))


def test_a_sealed_fact_opens_only_for_its_account_and_kind_and_seals_the_same_every_time():
    from cryptography.exceptions import InvalidTag

    from shared.sealed import open_fact, seal_fact
    from shared.settings import new_key

    settings = Settings(vault_key=new_key())
    sealed = seal_fact(settings, "alice", "phone", "+15085550142")
    assert sealed == seal_fact(settings, "Alice ", "phone", "+15085550142")  # rebuilt events match
    assert "5550142" not in sealed
    assert open_fact(settings, "alice", "phone", sealed) == "+15085550142"
    for username, kind in (("bob", "phone"), ("alice", "manager_email")):
        with pytest.raises(InvalidTag):
            open_fact(settings, username, kind, sealed)
