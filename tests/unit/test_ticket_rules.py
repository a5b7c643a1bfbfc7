"""Rules of a reset ticket and of ticketing's per-account file, on the aggregates alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from services.ticketing.domain import (
    APPROVED,
    CLOSED,
    OPEN,
    REJECTED,
    AccountFile,
    SelfApprovalRefused,
    Ticket,
    TicketNotOpen,
)
from tests.unit.recorded import names

NOW = datetime.now(UTC)
FAR = NOW + timedelta(hours=1)


def new_ticket(username: str = "alice", requested_by: str = "carol") -> Ticket:
    return Ticket(
        name="Alice Example",
        email="alice@example.org",
        username=username,
        reason="lost my phone",
        requested_by=requested_by,
        channel="api",
    )


def decision_by_bob(ticket: Ticket, event_name: str) -> Any:
    """The one event a decision recorded: ``event_name``, by bob, who is now the decider."""
    [decision] = ticket.collect_events()
    assert type(decision).__name__ == event_name
    assert decision.agent == "bob"
    assert ticket.decided_by == "bob"
    return decision


def proven(ticket: Ticket) -> Ticket:
    """The ticket with a call-back to the phone on file answered (enough for an ordinary
    account under the default policy)."""
    ticket.start_proof("p-call", "call_back", "erin", "+1 ••• ••• 0142", FAR)
    ticket.conclude_proof("p-call", "call_back", NOW, True, "system", "pressed #")
    return ticket


def opened(ticket: Ticket) -> Ticket:
    """The ticket with its identity proven and its events so far already collected."""
    proven(ticket).collect_events()
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
@pytest.mark.parametrize(
    ("username", "requested_by", "refusal"),
    [("alice", "bob", "they requested"), ("bob", "carol", "own account")],
    ids=["a reset they requested", "a reset of their own account"],
)
def test_an_agent_cannot_approve(username: str, requested_by: str, refusal: str):
    ticket = opened(new_ticket(username=username, requested_by=requested_by))

    with pytest.raises(SelfApprovalRefused, match=refusal):
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

    approved = decision_by_bob(ticket, "ResetApproved")
    assert approved.username == "alice"
    assert ticket.state == APPROVED


# --- decisions are final -----------------------------------------------------------------------
DECIDE = {
    "approved": lambda ticket, agent: ticket.approve(agent),
    "rejected": lambda ticket, agent: ticket.reject(agent, "caller could not confirm their manager"),
}


@pytest.mark.parametrize(
    ("first", "then", "state"),
    [("approved", "approved", APPROVED), ("rejected", "approved", REJECTED),
     ("approved", "rejected", APPROVED)],
    ids=["a second approval", "an approval of a rejected ticket", "a rejection of an approved ticket"],
)
def test_a_decided_ticket_refuses_another_decision_because_it_is_no_longer_open(
    first: str, then: str, state: str
):
    ticket = opened(new_ticket())
    DECIDE[first](ticket, "bob")
    ticket.collect_events()

    with pytest.raises(TicketNotOpen, match=f"already {first}"):
        DECIDE[then](ticket, "dave")

    assert ticket.collect_events() == []
    assert ticket.state == state
    assert ticket.decided_by == "bob"


def test_rejecting_records_the_agent_and_the_reason():
    ticket = opened(new_ticket())

    ticket.reject("bob", "not the account holder")

    rejected = decision_by_bob(ticket, "ResetRejected")
    assert rejected.reason == "not the account holder"
    assert ticket.state == REJECTED
    assert ticket.decision_reason == "not the account holder"


def test_refusals_carry_stable_error_codes():
    assert TicketNotOpen("x").code == "conflict"
    assert SelfApprovalRefused("x").code == "not_allowed"


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


def test_the_system_s_own_mails_and_flags_do_not_keep_an_undecided_ticket_from_expiring():
    from datetime import timedelta

    after = timedelta(hours=72)
    ticket = new_ticket()
    filed = ticket.created_on
    later = filed + timedelta(hours=70)  # e.g. the mail server was down, the sweep retried
    ticket.trigger_event(Ticket.AcknowledgementIntended, timestamp=later, intent_id="i", to="a@x")
    ticket.trigger_event(Ticket.AcknowledgementSent, timestamp=later, intent_id="i", error=None)
    ticket.trigger_event(Ticket.ResetFlagged, timestamp=later, rule="r", summary="s", evidence={},
                          alert=False)
    assert ticket.modified_on == later
    assert ticket.expire(filed + after, after) is True


def test_a_person_handling_an_undecided_ticket_restarts_its_expiry_clock():
    from datetime import timedelta

    after = timedelta(hours=72)
    ticket = new_ticket()
    later = ticket.created_on + timedelta(hours=70)
    ticket.trigger_event(Ticket.RequestJoined, timestamp=later, name="Alice", email="a@x",
                         reason="again", channel="web", sender_verified=True, client=None)
    ticket.trigger_event(Ticket.AcknowledgementSent, timestamp=later + after, intent_id="i",
                         error=None)
    assert ticket.expire(ticket.created_on + after, after) is False
    assert ticket.expire(later + after, after) is True


# --- what an agent may do next (the facts screens show) ---------------------------------------
def test_an_open_ticket_offers_another_agent_every_action():
    ticket = opened(new_ticket(username="alice", requested_by="carol"))

    assert ticket.next_actions("bob") == ["prove", "approve", "reject"]
    assert ticket.state_label == "Open"


def test_the_requester_and_the_account_owner_are_not_offered_approve():
    ticket = opened(new_ticket(username="alice", requested_by="carol"))

    assert ticket.next_actions("Carol") == ["prove", "reject"]
    assert ticket.next_actions("alice") == ["reject"]


def test_with_four_eyes_a_second_agent_is_offered_approve_and_the_first_is_not():
    ticket = opened(new_ticket())
    ticket.approve("bob", four_eyes=True)

    assert ticket.state_label == "Waiting for a second approval"
    assert "approve" in ticket.next_actions("dave", four_eyes=True)
    assert "approve" not in ticket.next_actions("BOB", four_eyes=True)


def test_a_decided_ticket_offers_nothing():
    ticket = opened(new_ticket())
    ticket.approve("bob", four_eyes=True)
    ticket.approve("dave", four_eyes=True)
    ticket.close("agreement accepted")

    assert ticket.next_actions("erin", four_eyes=True) == []
    assert ticket.state_label == "Closed"


def test_the_cli_says_a_second_agent_must_approve_only_while_one_must():
    from rekey.cli.ticket_views import ticket_summary

    facts = {"ticket_number": "RK-1", "name": "A", "email": "a•••@example.org",
             "username": "alice", "reason": "r", "approvals": ["bob"]}
    waiting = ticket_summary({**facts, "state": "awaiting_second_approval"})
    closed = ticket_summary({**facts, "state": "closed"})

    assert "a second agent must approve" in waiting
    assert "first approval by bob" in closed and "second agent" not in closed
