"""The cancel window and the end of earlier sign-ins, on the aggregates and pure helpers alone
(times given, never slept)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.portal.sessions import SessionStore
from services.ticketing.domain import (
    APPROVED,
    CLOSE_REVIEW,
    CLOSED,
    SCHEDULED,
    STATE_LABELS,
    UNDER_REVIEW,
    ResetNotCancellable,
    SelfApprovalRefused,
)
from shared.application import ResetMark
from shared.clock import ManualClock
from shared.errors import AuthenticationFailed
from shared.settings import Settings
from shared.tokens import (
    TokenKeys,
    check_not_before_reset,
    issue_token,
    unverified_binding,
    verify_token,
)
from tests.unit.recorded import names
from tests.unit.test_ticket_rules import new_ticket as unproven_ticket
from tests.unit.test_ticket_rules import proven


def new_ticket():
    """A ticket whose identity is proven (the proofs are not what these rules are about)."""
    return proven(unproven_ticket())

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def scheduled():
    ticket = new_ticket()
    assert ticket.approve("bob", effective_at=LATER) is True
    return ticket


def test_an_approval_with_a_window_is_scheduled_and_approved_only_when_it_ends():
    ticket = scheduled()
    assert ticket.state == SCHEDULED and ticket.effective_at == LATER
    assert STATE_LABELS[SCHEDULED] == "Approved: takes effect when the cancel window ends"
    assert ticket.take_effect(LATER - timedelta(seconds=1)) is False
    assert names(ticket)[-1] == "ResetScheduled"
    assert ticket.take_effect(LATER) is True
    assert ticket.state == APPROVED and ticket.decided_by == "bob"
    assert names(ticket) == ["ResetApproved"]
    assert ticket.take_effect(LATER + timedelta(hours=1)) is False  # once


def test_a_cancelled_reset_is_frozen_for_review_and_never_takes_effect():
    ticket = scheduled()
    ticket.cancel("link", {"address": "203.0.113.9", "network": "203.0.113.0/24",
                           "user_agent": "Firefox"})
    assert ticket.state == UNDER_REVIEW
    assert STATE_LABELS[UNDER_REVIEW] == "Cancelled by the person: under review"
    assert ticket.take_effect(LATER + timedelta(days=1)) is False
    with pytest.raises(ResetNotCancellable, match="already cancelled"):
        ticket.cancel("link")
    assert ticket.next_actions("dave") == [CLOSE_REVIEW]
    assert ticket.next_actions("alice") == []  # not one's own account
    with pytest.raises(SelfApprovalRefused):
        ticket.close_review("alice", "mine")
    ticket.close_review("dave", "the person did not ask for it")
    assert ticket.state == CLOSED and ticket.next_actions("dave") == []


def test_a_reset_that_took_effect_or_never_was_scheduled_cannot_be_cancelled():
    at_once = new_ticket()
    at_once.approve("bob")
    took_effect = scheduled()
    took_effect.take_effect(LATER)
    for ticket in (at_once, took_effect, new_ticket()):
        with pytest.raises(ResetNotCancellable, match="no longer be cancelled"):
            ticket.cancel("link")


def test_with_four_eyes_the_second_approval_schedules_the_reset():
    ticket = new_ticket()
    assert ticket.approve("bob", four_eyes=True, effective_at=LATER) is False
    assert ticket.state != SCHEDULED
    assert ticket.approve("dave", four_eyes=True, effective_at=LATER) is True
    assert ticket.state == SCHEDULED and ticket.approvals == ["bob"]


def test_a_reset_mark_only_moves_forward():
    mark = ResetMark(username="Alice")
    mark.note(LATER)
    mark.note(NOW)
    assert mark.reset_at == LATER
    assert names(mark).count("ResetTookEffect") == 1


def test_anything_issued_before_the_last_reset_is_refused_in_words():
    check_not_before_reset(LATER.timestamp(), LATER)
    check_not_before_reset(NOW.timestamp(), None)
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        check_not_before_reset(LATER.timestamp() - 0.001, LATER)


def test_a_token_past_its_expiry_counts_only_for_a_session_check_within_its_age():
    clock = ManualClock(NOW)
    keys = TokenKeys.fresh(clock)
    token = issue_token(keys, "alice", "password", ttl_seconds=60)
    clock.advance(3600)
    with pytest.raises(AuthenticationFailed):
        verify_token(keys, token, "password", "alice")
    assert verify_token(keys, token, "password", "alice", max_age=8 * 3600) == "alice"
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        verify_token(keys, token, "password", "alice", max_age=8 * 3600,
                     issued_after=NOW + timedelta(seconds=1))
    clock.advance(8 * 3600)
    with pytest.raises(AuthenticationFailed):
        verify_token(keys, token, "password", "alice", max_age=8 * 3600)


def test_a_cancel_link_is_bound_to_its_ticket():
    keys = TokenKeys.fresh(ManualClock(NOW))
    link = issue_token(keys, "alice", "reset_cancel", bound_to="ticket-1")
    assert unverified_binding(link) == "ticket-1" and unverified_binding("junk") == ""
    assert verify_token(keys, link, "reset_cancel", "alice", bound_to="ticket-1") == "alice"
    with pytest.raises(AuthenticationFailed):
        verify_token(keys, link, "reset_cancel", "alice", bound_to="ticket-2")


def test_a_reset_ends_every_session_of_that_user_and_no_other():
    store = SessionStore(idle_seconds=600, absolute_seconds=3600, clock=ManualClock(NOW))
    phone, desk, other = store.new(), store.new(), store.new()
    phone.username, desk.username, other.username = "alice", " ALICE", "bob"
    desk.password_token = "t"
    assert store.drop_user("Alice") == 2
    assert store.get(phone.id) == (None, False) and store.get(desk.id) == (None, False)
    assert desk.password_token is None  # forgotten, tokens first
    assert store.get(other.id)[0] is other


def test_four_eyes_is_required_for_privileged_accounts_by_default():
    assert Settings().four_eyes == "privileged"
    assert Settings(four_eyes="true").four_eyes == "all"
    assert Settings(four_eyes=False).four_eyes == "off"
    assert (Settings().cancel_window_minutes, Settings().cancel_window_privileged_minutes) == (0, 60)


def test_a_cancel_link_in_a_failing_request_is_not_logged():
    from services.portal.app import loggable_path

    assert loggable_path("/reset/cancel/eyJhbGciOi.secret.sig") == "/reset/cancel/…"
    assert loggable_path("/console/invite/abc") == "/console/invite/…"
    assert loggable_path("/console/tickets/RK-1") == "/console/tickets/RK-1"
