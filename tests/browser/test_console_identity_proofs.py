"""Identity proofs in the help-desk console, in Chromium against the real system: an agent
starts a code mailed to the address on file, types in the code the person reads back, attests
an ID check, sees the points reach the policy and only then can approve; a manager approves
through the signed link once, and the link then refuses."""

from __future__ import annotations

from typing import Any

import pytest

from shared.caught import latest_manager_link, shows_code
from tests.browser.test_console_four_eyes import console
from tests.browser.test_portal_guide import (
    attest_id_in_console,
    click_when_offered,
    heading,
    prove_by_code_in_console,
    until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

USER = "robin.hale@masspasrr.org"
USER_EMAIL = "robin.hale@example.org"
MANAGED = "kim.ito@masspasrr.org"
MANAGER = "boss.ito@example.org"


def open_ticket_of(desk: Any, username: str) -> str:
    desk.goto("/console")
    desk.locator("tr", has_text=username).get_by_role("link").click()
    assert heading(desk).startswith("Ticket RK-")
    return heading(desk).split()[1]


def test_an_agent_runs_proofs_and_then_can_approve(running, browser, shot, axe):
    running.call("credentials", "register_account", username=USER, email=USER_EMAIL,
                 display_name="Robin Hale", principal=running.operator())
    until(lambda: running.ticketing_knows(USER), "ticketing to know the account")
    running.call("ticketing", "request_reset", name="Robin Hale", email=USER_EMAIL,
                 username=USER, reason="New phone", channel="web",
                 identity="portal")
    # The console's sign-in: the password, then the code (each screen checked)
    desk = browser.new_context(viewport=running.desk, base_url=running.url).new_page()
    desk.goto("/console/sign-in")
    axe(desk)
    running.console_password(desk, running.agent, running.agent_password)
    axe(desk)
    running.console_code(desk, running.agent)
    assert heading(desk) == "Reset tickets"
    axe(desk)
    open_ticket_of(desk, USER)
    axe(desk)

    main = desk.locator("main")
    assert "0 of 2 points" in main.inner_text()
    assert "proves nothing alone" in main.inner_text()
    assert "verified" not in main.inner_text().lower()
    assert desk.get_by_role("button", name="Approve the reset").count() == 0

    code = prove_by_code_in_console(desk, running)
    assert "0 of 2 points" in main.inner_text()  # a mailed code never counts alone
    assert desk.get_by_role("button", name="Approve the reset").count() == 0
    attest_id_in_console(desk)
    assert "2 of 2 points" in main.inner_text() and "enough to approve" in main.inner_text()
    shot(desk, "26-console-identity-proofs")
    axe(desk)
    desk.get_by_role("button", name="Approve the reset").click()
    assert "Approved:" in main.inner_text()
    assert "Proof succeeded" in desk.locator(".timeline").inner_text()
    axe(desk)
    assert not shows_code(desk.content(), code)


def test_a_manager_approves_through_the_signed_link_once(running, browser, shot, axe):
    running.call("credentials", "register_account", username=MANAGED, email="kim@example.org",
                 display_name="Kim Ito", manager_email=MANAGER, principal=running.operator())
    running.call("ticketing", "request_reset", name="Kim Ito", email="kim@example.org",
                 username=MANAGED, reason="Lost phone", channel="web",
                 identity="portal")
    desk = console(browser, running, running.agent, running.agent_password)
    number = open_ticket_of(desk, MANAGED)
    start = "Start: Approval by the manager on file (signed link by mail)"
    until(lambda: click_when_offered(desk, start), "the manager proof to be offered")

    link = until(lambda: latest_manager_link(running.stack.mail_folder, number), "the link mail")
    manager = browser.new_context(viewport=running.desk).new_page()
    manager.goto(link)
    assert heading(manager) == "Confirm a request to the help desk"
    assert MANAGED in manager.locator("main").inner_text()
    shot(manager, "27-manager-link")
    axe(manager)
    manager.get_by_role("button", name="Approve").click()
    assert "Your approval is recorded" in manager.locator("main").inner_text()
    axe(manager)

    manager.goto(link)  # the same link again
    assert heading(manager) == "This link cannot be used"
    axe(manager)
    desk.goto(f"/console/tickets/{number}")
    assert "2 of 2 points" in desk.locator("main").inner_text()
    assert desk.get_by_role("button", name="Approve the reset").is_visible()
