"""Rules of a reset ticket and of ticketing's per-account file, on the aggregates alone."""

from __future__ import annotations

from uuid import uuid4

import pytest

from services.ticketing.domain import (
    APPROVED,
    CLOSED,
    OPEN,
    REJECTED,
    VERIFIED,
    AccountFile,
    SelfApprovalRefused,
    Ticket,
    TicketNotOpen,
)


def new_ticket(username: str = "alice", requested_by: str = "carol") -> Ticket:
    return Ticket(
        name="Alice Example",
        email="alice@example.org",
        username=username,
        reason="lost my phone",
        requested_by=requested_by,
        channel="api",
    )


def names(aggregate: Ticket | AccountFile) -> list[str]:
    return [type(e).__name__ for e in aggregate.collect_events()]


def opened(ticket: Ticket) -> Ticket:
    """The ticket with its creation event already collected."""
    ticket.collect_events()
    return ticket


# --- filing ------------------------------------------------------------------------------------
def test_a_new_ticket_is_open_and_records_reset_requested_with_its_facts():
    ticket = new_ticket()

    assert ticket.state == OPEN
    assert ticket.subject == "alice"
    [requested] = ticket.collect_events()
    assert type(requested).__name__ == "ResetRequested"
    assert requested.username == "alice"
    assert requested.requested_by == "carol"
    assert requested.email == "alice@example.org"
    assert requested.channel == "api"


# --- who may approve ---------------------------------------------------------------------------
def test_an_agent_cannot_approve_a_reset_they_requested():
    ticket = opened(new_ticket(username="alice", requested_by="bob"))

    with pytest.raises(SelfApprovalRefused, match="they requested"):
        ticket.approve("bob")

    assert ticket.collect_events() == []
    assert ticket.state == OPEN


def test_an_agent_cannot_approve_a_reset_of_their_own_account():
    ticket = opened(new_ticket(username="bob", requested_by="carol"))

    with pytest.raises(SelfApprovalRefused, match="own account"):
        ticket.approve("bob")

    assert ticket.collect_events() == []
    assert ticket.state == OPEN


def test_the_self_approval_rule_ignores_letter_case():
    requested = opened(new_ticket(username="alice", requested_by="Bob"))
    own = opened(new_ticket(username="Bob", requested_by="carol"))

    with pytest.raises(SelfApprovalRefused):
        requested.approve("bOB")
    with pytest.raises(SelfApprovalRefused):
        own.approve("BOB")


@pytest.mark.parametrize(
    ("username", "requested_by", "agent"),
    [
        ("dave", "alice", "alice "),
        ("alice", "carol", " alice"),
        ("dave", " alice", "alice"),
    ],
)
def test_the_self_approval_rule_identifies_agents_like_account_lookup_does(
    username: str, requested_by: str, agent: str
):
    ticket = opened(new_ticket(username=username, requested_by=requested_by))

    with pytest.raises(SelfApprovalRefused):
        ticket.approve(agent)


def test_another_agent_can_approve_an_open_ticket():
    ticket = opened(new_ticket(username="alice", requested_by="alice"))

    ticket.approve("bob")

    [approved] = ticket.collect_events()
    assert type(approved).__name__ == "ResetApproved"
    assert approved.agent == "bob"
    assert approved.username == "alice"
    assert ticket.state == APPROVED
    assert ticket.decided_by == "bob"


# --- decisions are final -----------------------------------------------------------------------
def test_a_second_approval_is_refused_because_the_ticket_is_no_longer_open():
    ticket = opened(new_ticket())
    ticket.approve("bob")
    ticket.collect_events()

    with pytest.raises(TicketNotOpen, match="already approved"):
        ticket.approve("dave")

    assert ticket.collect_events() == []
    assert ticket.decided_by == "bob"


def test_a_rejected_ticket_cannot_then_be_approved():
    ticket = opened(new_ticket())
    ticket.reject("bob", "caller could not confirm their manager")
    ticket.collect_events()

    with pytest.raises(TicketNotOpen, match="already rejected"):
        ticket.approve("dave")

    assert ticket.collect_events() == []
    assert ticket.state == REJECTED


def test_an_approved_ticket_cannot_then_be_rejected():
    ticket = opened(new_ticket())
    ticket.approve("bob")
    ticket.collect_events()

    with pytest.raises(TicketNotOpen):
        ticket.reject("dave", "changed my mind")

    assert ticket.collect_events() == []
    assert ticket.state == APPROVED


def test_rejecting_records_the_agent_and_the_reason():
    ticket = opened(new_ticket())

    ticket.reject("bob", "not the account holder")

    [rejected] = ticket.collect_events()
    assert type(rejected).__name__ == "ResetRejected"
    assert rejected.agent == "bob"
    assert rejected.reason == "not the account holder"
    assert ticket.state == REJECTED
    assert ticket.decided_by == "bob"
    assert ticket.decision_reason == "not the account holder"


def test_refusals_carry_stable_error_codes():
    assert TicketNotOpen("x").code == "conflict"
    assert SelfApprovalRefused("x").code == "not_allowed"


# --- identity verification ---------------------------------------------------------------------
def test_verifying_identity_records_the_check_and_moves_the_ticket_to_identity_verified():
    ticket = opened(new_ticket())

    ticket.verify_identity("bob", "call_back", "called the number on file")

    [verified] = ticket.collect_events()
    assert type(verified).__name__ == "IdentityVerified"
    assert (verified.agent, verified.method, verified.note) == (
        "bob",
        "call_back",
        "called the number on file",
    )
    assert ticket.state == VERIFIED
    assert ticket.identity_check == "call_back"


def test_a_ticket_with_verified_identity_is_still_undecided_and_can_be_approved():
    ticket = opened(new_ticket())
    ticket.verify_identity("bob", "id_check", "")

    ticket.approve("bob")

    assert names(ticket) == ["IdentityVerified", "ResetApproved"]
    assert ticket.state == APPROVED


def test_a_ticket_with_verified_identity_can_be_rejected():
    ticket = opened(new_ticket())
    ticket.verify_identity("bob", "manager_confirmation", "")

    ticket.reject("bob", "manager said no")

    assert ticket.state == REJECTED


def test_identity_cannot_be_verified_on_a_decided_ticket():
    ticket = opened(new_ticket())
    ticket.reject("bob", "duplicate")
    ticket.collect_events()

    with pytest.raises(TicketNotOpen):
        ticket.verify_identity("bob", "call_back", "")

    assert ticket.collect_events() == []
    assert ticket.identity_check is None


# --- closing -----------------------------------------------------------------------------------
def test_closing_records_ticket_closed_with_the_reason():
    ticket = opened(new_ticket())
    ticket.approve("bob")
    ticket.collect_events()

    ticket.close("the user accepted the agreement")

    [closed] = ticket.collect_events()
    assert type(closed).__name__ == "TicketClosed"
    assert closed.reason == "the user accepted the agreement"
    assert ticket.state == CLOSED


def test_closing_a_closed_ticket_again_records_nothing():
    ticket = opened(new_ticket())
    ticket.close("done")
    ticket.collect_events()

    ticket.close("done")
    ticket.close("something else")

    assert ticket.collect_events() == []
    assert ticket.state == CLOSED


def test_a_closed_ticket_cannot_be_approved():
    ticket = opened(new_ticket())
    ticket.close("withdrawn by the requester")

    with pytest.raises(TicketNotOpen, match="already closed"):
        ticket.approve("bob")


# --- ticketing's account file ------------------------------------------------------------------
def test_an_account_file_is_found_by_username_whatever_its_case_or_surrounding_spaces():
    file = AccountFile(username="alice")

    assert file.id == AccountFile.id_for("alice")
    assert AccountFile.id_for(" Alice ") == file.id
    assert AccountFile.id_for("bob") != file.id


def test_a_new_account_file_does_not_yet_know_the_account():
    file = AccountFile(username="alice")

    assert names(file) == ["AccountFileOpened"]
    assert file.known is False
    assert file.role is None
    assert file.tickets == []
    assert file.subject == "alice"


def test_noting_an_account_makes_it_known_with_its_role():
    file = AccountFile(username="bob")
    file.collect_events()

    file.note_account(role="agent")

    [noted] = file.collect_events()
    assert type(noted).__name__ == "AccountNoted"
    assert noted.role == "agent"
    assert file.known is True
    assert file.role == "agent"


def test_filed_tickets_are_kept_in_order():
    file = AccountFile(username="alice")
    first, second = uuid4(), uuid4()

    file.file_ticket(first)
    file.file_ticket(second)

    assert file.tickets == [first, second]
    assert names(file) == ["AccountFileOpened", "TicketFiled", "TicketFiled"]


# --- four eyes, unverified senders, joining, expiry (issue 4) ----------------------------------
def test_with_four_eyes_the_first_approval_only_records_it():
    from services.ticketing.domain import AWAITING_SECOND

    ticket = opened(new_ticket())

    assert ticket.approve("bob", four_eyes=True) is False

    assert names(ticket) == ["ApprovalRecorded"]
    assert ticket.state == AWAITING_SECOND
    assert ticket.approve("dave", four_eyes=True) is True
    assert names(ticket) == ["ResetApproved"]
    assert ticket.state == APPROVED


def test_with_four_eyes_the_same_agent_cannot_approve_twice_whatever_the_case():
    from services.ticketing.domain import SecondApprovalRequired

    ticket = opened(new_ticket())
    ticket.approve("bob", four_eyes=True)
    ticket.collect_events()

    with pytest.raises(SecondApprovalRequired):
        ticket.approve(" BOB", four_eyes=True)
    assert ticket.collect_events() == []


def test_a_ticket_from_an_address_not_on_file_needs_the_identity_check_before_approval():
    from services.ticketing.domain import IdentityCheckRequired

    ticket = Ticket(name="A", email="x@evil.example", username="alice", reason="r",
                    requested_by="alice", channel="email", sender_verified=False)
    ticket.collect_events()

    with pytest.raises(IdentityCheckRequired):
        ticket.approve("bob")
    ticket.verify_identity("bob", "call_back", "called the number on file")
    assert ticket.approve("bob") is True


def test_a_request_joins_an_open_ticket_but_not_a_decided_one():
    ticket = opened(new_ticket())
    ticket.join("Alice", "alice@example.org", "again", "email", True)
    assert names(ticket) == ["RequestJoined"] and ticket.joined == 1
    ticket.reject("bob", "no")
    with pytest.raises(TicketNotOpen):
        ticket.join("Alice", "alice@example.org", "again", "email", True)


def test_an_undecided_ticket_expires_after_the_set_time_and_a_decided_one_never():
    from datetime import timedelta

    from services.ticketing.domain import EXPIRED

    ticket = opened(new_ticket())
    after = timedelta(hours=72)
    assert ticket.expire(ticket.modified_on + timedelta(hours=71), after) is False
    assert ticket.expire(ticket.modified_on + after, after) is True
    assert ticket.state == EXPIRED
    assert names(ticket) == ["TicketExpired"]

    decided = opened(new_ticket())
    decided.approve("bob")
    assert decided.expire(decided.modified_on + timedelta(days=365), after) is False
