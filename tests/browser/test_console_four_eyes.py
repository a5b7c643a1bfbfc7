"""Four eyes in the help-desk console (REKEY_FOUR_EYES=true, i.e. all), in Chromium against the real
system: the first agent's approval is only recorded, and the page says so; a second agent sees
"Approve the reset" and finishes it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.browser.test_portal_guide import click_when_offered, heading, until

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

USER = "sam.lee@masspasrr.org"
USER_EMAIL = "sam.lee@example.org"
SECOND = "second.agent"
SECOND_PASSWORD = "amber falcon meadow quartz lilac"


@pytest.fixture(scope="module")
def stack_settings() -> dict[str, str]:
    return {"REKEY_FOUR_EYES": "true"}


def signed_in(browser: Any, running: Any, path: str, username: str, password: str,
              viewport: dict[str, int] | None = None) -> Any:
    """A new browser page, signed in with the form at ``path``."""
    page = browser.new_context(viewport=viewport or running.desk, base_url=running.url).new_page()
    page.goto(path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    return page


def console(browser: Any, running: Any, agent: str, password: str) -> Any:
    desk = signed_in(browser, running, "/console/sign-in", agent, password)
    running.console_code(desk, agent)  # the second factor: a code from the agent's app
    assert heading(desk) == "Reset tickets"
    return desk


def open_ticket(desk: Any) -> None:
    desk.goto("/console")
    desk.locator("tr", has_text=USER).get_by_role("link").click()
    assert heading(desk).startswith("Ticket RK-")


def test_a_second_agent_sees_approve_and_finishes_a_four_eyes_reset(running, browser, shot, axe):
    running.call("credentials", "register_account", username=USER, email=USER_EMAIL,
                 display_name="Sam Lee", principal=running.operator())
    running.invite(SECOND, SECOND_PASSWORD, "second@example.org", "Second Agent")
    number = running.call("ticketing", "request_reset", name="Sam Lee", email=USER_EMAIL,
                          username=USER, reason="New phone", channel="web",
                          identity="portal")["ticket_number"]
    running.prove_identity(number, running.agent_principal())  # in the console: test_console_identity_proofs

    # The first agent approves: only the approval is recorded.
    first = console(browser, running, running.agent, running.agent_password)
    open_ticket(first)
    until(lambda: click_when_offered(first, "Approve the reset"), "Approve to be offered")
    main = first.locator("main").inner_text()
    assert "Your approval is recorded; a second agent must approve before anything is reset." \
        in main
    assert "Approved:" not in main and "revoked" not in main  # nothing was reset yet
    assert first.locator("h1 .state").inner_text() == "Waiting for a second approval"
    assert "Approval recorded" in first.locator(".timeline").inner_text()
    assert first.get_by_role("button", name="Approve the reset").count() == 0
    shot(first, "24-console-first-of-four-eyes")
    axe(first)

    # The second agent finds it among the open tickets, sees Approve, and finishes the reset.
    second = console(browser, running, SECOND, SECOND_PASSWORD)
    row = second.locator("tr", has_text=USER)
    assert row.count() == 1 and "Waiting for a second approval" in row.inner_text()
    open_ticket(second)
    approve = second.get_by_role("button", name="Approve the reset")
    assert approve.is_visible()
    axe(second)
    approve.click()
    assert "Approved:" in second.locator("main").inner_text()
    assert "Approved" in second.locator("h1 .state").inner_text()
    assert "Reset approved" in second.locator(".timeline").inner_text()
    assert second.get_by_role("button", name="Approve the reset").count() == 0
    shot(second, "25-console-second-approval")
    axe(second)

    # The reset happened: the temporary password is mailed to the person.
    def mailed() -> bool:
        second.goto("/dev/mail")
        return second.get_by_role("link", name=re.compile("temporary", re.I)).count() > 0

    until(mailed, "the temporary password mail")
