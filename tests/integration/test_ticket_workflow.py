"""Ticket rules over the bus: four eyes, self-approval, unverified senders, joining, limits, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import NotAllowed, RekeyError
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    USER,
    USER_EMAIL,
    System,
    eventually,
    provisioned_on_a_manual_clock,
    start_all,
)

SECOND = "agent.jones"


async def second_agent(system: System) -> None:
    await system.call("credentials", "register_account", username=SECOND, email="jones@example.org",
                      display_name="Agent Jones", role="agent", password=AGENT_PASSWORD + " two",
                      principal=system.operator())
    await eventually(lambda: system._ticketing_knows(SECOND))


async def request(system: System, email: str = USER_EMAIL, username: str = USER, **extra) -> dict:
    return await system.call("ticketing", "request_reset", name="Jane Doe", email=email,
                             username=username, reason="new phone", **extra)


async def test_with_four_eyes_a_second_different_agent_must_approve(system: System):
    system.settings.four_eyes = "all"
    await start_all(system)
    await system.provision()
    await second_agent(system)
    number = (await request(system))["ticket_number"]
    await system.prove_identity(number)

    first = await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    assert first["state"] == "awaiting_second_approval"
    assert "ResetApproved" not in system.event_names("ticketing")
    with pytest.raises(NotAllowed, match="second agent"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    second = await system.call("ticketing", "approve", ticket=number, principal=system.principal(SECOND))
    assert second["state"] == "approved"
    assert second["approvals"] == [AGENT]
    assert second["decided_by"] == SECOND
    names = system.event_names("ticketing")
    assert names.count("ApprovalRecorded") == 1 and names.count("ResetApproved") == 1
    await eventually(lambda: "PasswordIssued" in system.event_names("credentials"))


async def test_with_four_eyes_the_second_agent_is_offered_approve_and_the_first_is_not(
    system: System,
):
    system.settings.four_eyes = "all"
    await start_all(system)
    await system.provision()
    await second_agent(system)
    number = (await request(system))["ticket_number"]
    plain = await system.call("ticketing", "show", ticket=number)
    assert plain["next_actions"] == [] and plain["can_approve"] is False
    stranger = await system.call("ticketing", "show", ticket=number,
                                 principal=system.principal(USER))  # not an agent
    assert stranger["next_actions"] == []
    await system.prove_identity(number)

    await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    [mine] = await system.call("ticketing", "list", state="open", principal=system.principal())
    [theirs] = await system.call("ticketing", "list", state="open", principal=system.principal(SECOND))
    assert mine["state_label"] == theirs["state_label"] == "Waiting for a second approval"
    assert mine["next_actions"] == ["prove", "reject"] and not mine["can_approve"]
    assert theirs["next_actions"] == ["prove", "approve", "reject"]
    assert theirs["can_approve"] is True

    await system.call("ticketing", "approve", ticket=number, principal=system.principal(SECOND))
    done = await system.call("ticketing", "show", ticket=number, principal=system.principal(SECOND))
    assert done["state_label"] == "Approved" and done["next_actions"] == []
    assert (await system.call("ticketing", "show", ticket=number,
                              principal=system.principal(USER)))["next_actions"] == []


async def test_four_eyes_still_refuses_the_requester_and_the_account_owner(system: System):
    system.settings.four_eyes = "all"
    await start_all(system)
    await system.provision()
    await second_agent(system)
    own = (await request(system, email="jones@example.org", username=SECOND,
                         principal=system.principal(USER)))["ticket_number"]
    asked = (await request(system, principal=system.principal()))["ticket_number"]
    before = system.app("ticketing").max_notification_id()
    with pytest.raises(NotAllowed, match="own account"):
        await system.call("ticketing", "approve", ticket=own, principal=system.principal(SECOND))
    with pytest.raises(NotAllowed, match="requested"):
        await system.call("ticketing", "approve", ticket=asked, principal=system.principal())
    assert system.app("ticketing").max_notification_id() == before


async def test_a_request_from_another_address_needs_proofs_that_go_to_the_facts_on_file(
    system: System,
):
    await start_all(system)
    await system.provision()
    answer_other = await request(system, email="attacker@evil.example")
    shown = await system.call("ticketing", "show", ticket=answer_other["ticket_number"])
    assert shown["address_on_file"] == "The address typed is not the one on file"
    with pytest.raises(NotAllowed, match="proof of identity"):
        await system.call("ticketing", "approve", ticket=answer_other["ticket_number"],
                          principal=system.principal())
    await system.prove_identity(answer_other["ticket_number"])  # the code goes to the address on file
    approved = await system.call("ticketing", "approve", ticket=answer_other["ticket_number"],
                                 principal=system.principal())
    assert approved["state"] == "approved"


async def test_the_answer_is_the_same_whether_or_not_the_account_exists(system: System):
    await start_all(system)
    await system.provision()
    known = await request(system)
    unknown = await request(system, email="n@example.org", username="nobody@masspasrr.org")
    assert set(known) == set(unknown) == {"ticket_id", "ticket_number", "joined"}
    assert known["joined"] == unknown["joined"] is False


async def test_a_second_request_for_the_same_account_joins_the_open_ticket(system: System):
    await start_all(system)
    await system.provision()
    first = await request(system)
    again = await request(system, email="jane.other@example.org")
    assert again["ticket_number"] == first["ticket_number"]
    assert again["joined"] is True
    tickets = await system.call("ticketing", "list", state="open")
    assert [t["ticket_number"] for t in tickets] == [first["ticket_number"]]
    assert tickets[0]["joined_requests"] == 1
    assert system.event_names("ticketing").count("ResetRequested") == 1
    # Once decided, a new request opens a new ticket.
    await system.call("ticketing", "reject", ticket=first["ticket_number"], principal=system.principal(),
                      reason="could not reach the user")
    third = await request(system)
    assert third["ticket_number"] != first["ticket_number"]


async def test_requests_are_rate_limited_per_sender_and_per_account(system: System):
    system.settings.requests_per_sender = 2
    system.settings.requests_per_account = 3
    await start_all(system)
    await system.provision()
    await request(system, email="spam@example.org", username="a@masspasrr.org")
    await request(system, email="spam@example.org", username="b@masspasrr.org")
    before = system.app("ticketing").max_notification_id()
    with pytest.raises(RekeyError, match="Too many") as limited:
        await request(system, email="spam@example.org", username="c@masspasrr.org")
    assert limited.value.code == "rate_limited"
    assert system.app("ticketing").max_notification_id() == before
    for sender in ("x@example.org", "y@example.org", "w@example.org"):
        await request(system, email=sender, username="victim@masspasrr.org")
    with pytest.raises(RekeyError, match="Too many"):
        await request(system, email="z@example.org", username="victim@masspasrr.org")


async def test_tickets_nobody_handles_expire(system: System):
    system.settings.ticket_expiry_hours = 72
    system.settings.ticket_expiry_check_seconds = 0.2
    clock = await provisioned_on_a_manual_clock(system)
    number = (await request(system))["ticket_number"]
    # The acknowledgement mailed to the address on file is recorded on the ticket once sent,
    # which touches it: under load that came after the clock moved, and the ticket was fresh.
    await eventually(lambda: not system.app("ticketing").ticket(number).pending_acks,
                     what="the acknowledgement to be recorded as sent")
    # Expiry counts from the ticket's last handling, stamped by the wall clock, which ran on
    # while this clock stood still (for seconds, on a loaded machine).
    handled_on = system.app("ticketing").ticket(number).handled_on
    clock.advance_to(handled_on + timedelta(hours=72, seconds=1))

    async def expired():
        return (await system.call("ticketing", "show", ticket=number))["state"] == "expired"

    await eventually(expired, what="the ticket to expire")
    with pytest.raises(RekeyError, match="already expired"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    [event] = [e for e in system.app("ticketing").envelopes() if e.name == "TicketExpired"]
    assert event.actor == "system" and event.correlation_id
    assert await system.call("ticketing", "list", state="open") == []
