"""Four eyes by default for privileged accounts, and the cancel window: an approved reset of a
privileged account is scheduled, the address on file gets a link to cancel it, and the reset
takes effect only when the window ends (ticketing's timer, on a ManualClock here), unless the
person cancels, which freezes the ticket until an agent closes the review."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from services.verification.domain import Enrollment
from shared.caught import latest_text_to, list_mails
from shared.clock import ManualClock
from tests.integration import conftest as harness
from tests.integration.conftest import System, eventually, provisioned_on_a_manual_clock

AGENT, AGENT_PASSWORD = harness.AGENT, harness.AGENT_PASSWORD
USER, USER_EMAIL = harness.USER, harness.USER_EMAIL

AGENT_EMAIL = "smith@example.org"
SECOND, THIRD = "agent.jones", "agent.brown"
LINK = re.compile(r"(https?://\S+)/reset/cancel/(\S+)")


async def more_agents(system: System) -> None:
    for name in (SECOND, THIRD):
        await system.call("credentials", "register_account", username=name,
                          email=f"{name}@example.org", display_name=name, role="agent",
                          password=AGENT_PASSWORD, principal=system.operator())
    await eventually(lambda: system._ticketing_knows(SECOND) and system._ticketing_knows(THIRD))


async def request_for(system: System, username: str, email: str) -> str:
    """A request, with the identity proofs its account's policy needs (run by another agent
    for the agent's own account)."""
    ticket = await system.call("ticketing", "request_reset", name="Someone", email=email,
                               username=username, reason="lost my phone")
    number = str(ticket["ticket_number"])
    own = username == AGENT
    await system.prove_identity(number, THIRD if own else AGENT, privileged=own)
    return number


def cancel_link(system: System, address: str) -> str | None:
    """The token of the newest cancel link mailed to ``address``."""
    for mail in reversed(list_mails(system.mail.folder)):
        found = LINK.search(mail.body) if address in mail.to else None
        if found:
            return found.group(2)
    return None


async def scheduled_reset_of_an_agent(system: System) -> tuple[ManualClock, str, dict]:
    """Agent Smith's account, reset by two other agents: four eyes, then the window."""
    clock = await provisioned_on_a_manual_clock(system)
    await more_agents(system)
    number = await request_for(system, AGENT, AGENT_EMAIL)
    first = await system.call("ticketing", "approve", ticket=number,
                              principal=system.principal(SECOND))
    assert first["state"] == "awaiting_second_approval"
    assert first["state_label"] == "Waiting for a second approval"
    second = await system.call("ticketing", "approve", ticket=number,
                               principal=system.principal(THIRD))
    return clock, number, second


async def test_a_privileged_reset_needs_two_agents_and_takes_effect_when_the_window_ends(
    system: System,
):
    clock, number, decided = await scheduled_reset_of_an_agent(system)
    assert decided["state"] == "reset_scheduled"
    assert decided["approvals"] == [SECOND] and decided["decided_by"] == THIRD
    assert decided["effective_at"] == (clock.now() + timedelta(minutes=60)).isoformat()
    # The address on file is told, with a link to cancel.
    token = await eventually(lambda: cancel_link(system, AGENT_EMAIL), what="the cancel link")
    mail = next(m for m in list_mails(system.mail.folder) if token in m.body)
    assert "if this wasn't you, cancel" in mail.body.lower()
    assert token not in str(system.app("credentials").history(AGENT))  # never recorded
    # Nothing happens before the window ends.
    ticketing = system.app("ticketing")
    clock.advance(59 * 60)
    assert await asyncio.to_thread(ticketing.take_effect_due) == []
    assert "ResetApproved" not in system.event_names("ticketing")
    assert "PasswordIssued" not in system.event_names("credentials")
    # Then the reset is approved, and credentials acts on it as on any approval.
    clock.advance(61)
    assert await asyncio.to_thread(ticketing.take_effect_due) == [number]
    assert await asyncio.to_thread(ticketing.take_effect_due) == []  # once
    await eventually(lambda: "PasswordIssued" in system.event_names("credentials"),
                     what="the temporary password")
    shown = await system.call("ticketing", "show", ticket=number)
    assert shown["state"] == "approved" and shown["decided_by"] == THIRD


async def test_an_ordinary_account_is_reset_at_once_by_one_agent_by_default(system: System):
    await provisioned_on_a_manual_clock(system)
    number = await request_for(system, USER, USER_EMAIL)
    decided = await system.call("ticketing", "approve", ticket=number,
                                principal=system.principal())
    assert decided["state"] == "approved" and decided["effective_at"] is None


async def test_the_person_cancels_from_the_link_and_an_agent_closes_the_review(system: System):
    clock, number, _ = await scheduled_reset_of_an_agent(system)
    token = await eventually(lambda: cancel_link(system, AGENT_EMAIL), what="the cancel link")
    shown = await system.call("ticketing", "cancel_link", token=token)
    assert shown["ticket_number"] == number and shown["state"] == "reset_scheduled"

    cancelled = await system.call("ticketing", "cancel_reset", token=token,
                                  client={"address": "203.0.113.9", "user_agent": "Firefox"})
    assert cancelled["state"] == "under_review"
    assert cancelled["state_label"] == "Cancelled by the person: under review"
    # Frozen: the window's end changes nothing, and it is listed for review.
    clock.advance(2 * 3600)
    assert await asyncio.to_thread(system.app("ticketing").take_effect_due) == []
    assert "ResetApproved" not in system.event_names("ticketing")
    listed = await system.call("ticketing", "list", state="under_review",
                               principal=system.principal(SECOND))
    assert [t["ticket_number"] for t in listed] == [number]
    assert listed[0]["next_actions"] == ["close_review"]
    history = [e for e in system.app("ticketing").history(AGENT) if e.name == "ResetCancelled"]
    assert history[0].body["client"]["address"] == "203.0.113.9" and history[0].actor == AGENT

    closed = await system.call("ticketing", "close_review", ticket=number,
                               principal=system.principal(SECOND), note="the agent did not ask")
    assert closed["state"] == "closed"
    assert "PasswordIssued" not in system.event_names("credentials")


async def test_the_console_filter_lists_tickets_waiting_for_a_second_approval(system: System):
    await provisioned_on_a_manual_clock(system)
    await more_agents(system)
    waiting = await request_for(system, AGENT, AGENT_EMAIL)
    await request_for(system, USER, USER_EMAIL)  # an open ticket that waits for nobody
    await system.call("ticketing", "approve", ticket=waiting, principal=system.principal(SECOND))
    listed = await system.call("ticketing", "list", state="awaiting_second_approval",
                               principal=system.principal(THIRD))
    assert [t["ticket_number"] for t in listed] == [waiting]
    assert listed[0]["can_approve"] is True


async def test_a_phone_that_survives_is_texted_about_the_scheduled_reset(phone_system: System):
    """Besides the mail with the link, a registered phone that takes texts is told."""
    from tests.integration.test_phone_sms_and_call import E164, text_me, texted_code, verify

    system = phone_system
    system.settings.cancel_window_minutes = 60  # ordinary accounts too, here
    await provisioned_on_a_manual_clock(system)
    await system.start("verification")
    started = await text_me(system)
    await verify(system, texted_code(system), started["method_id"])

    number = await request_for(system, USER, USER_EMAIL)
    decided = await system.call("ticketing", "approve", ticket=number,
                                principal=system.principal())
    assert decided["state"] == "reset_scheduled"

    def told() -> bool:
        text = latest_text_to(system.twilio.folder, E164)
        return text is not None and "a reset of your sign-in methods was approved" in text.body

    await eventually(told, what="the text to the phone on file")
    await eventually(lambda: "ResetNoticeTexted" in [
        type(e).__name__ for e in system.app("verification").events.get(
            Enrollment.id_for(USER))], what="the text's outcome recorded")
    assert "MethodsRevoked" not in system.event_names("verification")  # nothing reset yet
