"""Four eyes by default for privileged accounts, the cancel window and the end of sessions at a
reset, in Chromium against the real system with its default settings: a second agent finds
the ticket under "Waiting for a second approval" and approves it; the person is mailed a link
and cancels; an agent closes the review. A signed-in person's session ends when their reset
takes effect."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_console_four_eyes import console, signed_in
from tests.browser.test_portal_guide import click_when_offered, heading, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CFO = "chief.finance@masspasrr.org"
CFO_EMAIL = "chief.finance@example.org"
SECOND = "second.agent"
SECOND_PASSWORD = "amber falcon meadow quartz lilac"
PLAIN = "plain.user@masspasrr.org"
PLAIN_PASSWORD = "a long user passphrase for tests"
LINK = re.compile(r"https?://\S+/reset/cancel/\S+")


def open_ticket(desk: Any, username: str, state: str | None = None) -> None:
    desk.goto("/console" + (f"?state={state}" if state else ""))
    desk.locator("tr", has_text=username).get_by_role("link").click()
    assert heading(desk).startswith("Ticket RK-")


def cancel_link(page: Any) -> str | None:
    page.goto("/dev/mail")
    mails = page.get_by_role("link", name=re.compile("reset of your sign-in methods was approved"))
    if mails.count() == 0:
        return None
    mails.first.click()
    found = LINK.search(page.locator("pre.mail-body").inner_text())
    return found.group(0) if found else None


def test_a_second_agent_approves_a_privileged_reset_and_the_person_cancels_it(
    running, browser, shot, axe
):
    running.call("credentials", "register_account", username=CFO, email=CFO_EMAIL,
                 display_name="Chief Finance", privileged=True, manager_email="board@example.org",
                 principal=running.operator())
    running.invite(SECOND, SECOND_PASSWORD, "second@example.org", "Second Agent")
    number = running.call("ticketing", "request_reset", name="Chief Finance", email=CFO_EMAIL,
                          username=CFO, reason="New phone", channel="web",
                          identity="portal")["ticket_number"]
    running.prove_identity(number, running.agent_principal(), privileged=True)  # 4 of 3 points

    # The first agent approves: a privileged account needs a second agent, and is told so.
    first = console(browser, running, running.agent, running.agent_password)
    open_ticket(first, CFO)
    until(lambda: click_when_offered(first, "Approve the reset"), "Approve to be offered")
    assert "a second agent must approve before anything is reset" in first.locator("main").inner_text()
    assert first.locator("h1 .state").inner_text() == "Waiting for a second approval"
    axe(first)

    # The second agent finds it under "Waiting for a second approval" and approves.
    second = console(browser, running, SECOND, SECOND_PASSWORD)
    second.get_by_role("link", name="Waiting for a second approval").click()
    row = second.locator("tr", has_text=CFO)
    assert row.count() == 1 and "Waiting for a second approval" in row.inner_text()
    axe(second)  # the list of tickets waiting for a second approval
    row.get_by_role("link").click()
    axe(second)  # four eyes: the second agent's ticket page
    second.get_by_role("button", name="Approve the reset").click()
    main = second.locator("main").inner_text()
    assert "unless the person cancels it from the link mailed to their address on file" in main
    assert "revoked" not in main  # nothing is reset yet
    assert second.locator("h1 .state").inner_text() == \
        "Approved: takes effect when the cancel window ends"
    shot(second, "26-console-reset-scheduled")
    axe(second)

    # The person reads the mail at the address on file and cancels from its link.
    person = browser.new_context(viewport=running.phone, base_url=running.url).new_page()
    link = until(lambda: cancel_link(person), "the cancel link mail")
    person.goto(link)
    assert heading(person) == "A reset of your sign-in methods was approved"
    shot(person, "27-cancel-a-reset")
    axe(person)
    person.get_by_role("button", name="Cancel this reset").click()
    assert heading(person) == "Reset cancelled"
    axe(person)
    person.goto(link)  # a second time: refused, in words
    assert heading(person) == "This reset cannot be cancelled here"
    assert "already cancelled" in person.locator("main").inner_text()

    # An agent finds it under review and closes the review.
    second.get_by_role("link", name="← All open tickets").click()
    second.get_by_role("link", name="Cancelled: under review").click()
    row = second.locator("tr", has_text=CFO)
    assert "Cancelled by the person: under review" in row.inner_text()
    row.get_by_role("link").click()
    assert "Reset cancelled" in second.locator(".timeline").inner_text()
    axe(second)  # the review
    second.get_by_label("What the review found").fill("The CFO did not ask: an impostor called.")
    second.get_by_role("button", name="Close the review").click()
    assert "Review closed." in second.locator("main").inner_text()
    assert second.locator("h1 .state").inner_text() == "Closed"
    axe(second)


def test_a_signed_in_person_is_signed_out_when_their_reset_takes_effect(running, browser, shot):
    running.call("credentials", "register_account", username=PLAIN, email="plain@example.org",
                 display_name="Plain User", password=PLAIN_PASSWORD, principal=running.operator())
    page = signed_in(browser, running, "/sign-in", PLAIN, PLAIN_PASSWORD, running.phone)
    assert heading(page) == "Keep your account secure"

    ticket = running.call("ticketing", "request_reset", name="Plain User",
                          email="plain@example.org", username=PLAIN, reason="lost phone")
    principal = running.agent_principal()  # the password and a code from the agent's app

    running.prove_identity(ticket["ticket_number"], principal)

    def approved() -> bool:  # ticketing learns of the account from its event
        try:
            running.call("ticketing", "approve", ticket=ticket["ticket_number"],
                         principal=principal)
        except Exception:
            return False
        return True

    until(approved, "the reset to be approved")

    def signed_out() -> bool:
        page.reload()
        return heading(page) == "Please sign in again"

    until(signed_out, "the session to end")
    assert "Your account was reset after you signed in" in page.locator("main").inner_text()
    shot(page, "28-signed-out-by-a-reset")
    page.locator("main").get_by_role("link", name="Sign in").click()
    assert heading(page) == "Sign in"
