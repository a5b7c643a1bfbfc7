"""An agent's passkey in Chromium, with a virtual authenticator through the DevTools protocol:
the agent redeems the operator's invitation (a password and a new passkey), then signs in with
the password and the passkey; the spent invitation link no longer works.

The portal is reached at http://localhost (a secure context, and the passkeys' relying party).
"""

from __future__ import annotations

import re
from typing import Any

from shared.caught import latest_mail_to
from tests.browser.test_portal_guide import heading, until

AGENT = "passkey.agent"
EMAIL = "passkey.agent@example.org"
PASSWORD = "amber harbour tulip granite compass"


def with_virtual_authenticator(page: Any) -> str:
    """A platform authenticator (user verified) for this page's browser context."""
    session = page.context.new_cdp_session(page)
    session.send("WebAuthn.enable")
    added = session.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True,
    }})
    page._rekey_cdp = session  # keep the session (and its authenticator) alive with the page
    return str(added["authenticatorId"])


def sign_in_with_passkey(running: Any, page: Any, axe: Any = None) -> None:
    page.goto("/console/sign-in")
    running.console_password(page, AGENT, PASSWORD)
    assert heading(page) == "Use your passkey or security key"
    if axe is not None:
        axe(page)
    page.get_by_role("button", name="Use passkey or security key").click()
    page.wait_for_url("**/console")
    assert heading(page) == "Reset tickets"


def test_an_invited_agent_enrols_a_passkey_and_signs_in_with_it(running, browser, shot, axe):
    running.call("credentials", "invite_agent", username=AGENT, email=EMAIL,
                 display_name="Passkey Agent", principal=running.operator())
    mail = until(lambda: latest_mail_to(running.stack.mail_folder, EMAIL, "invitation"),
                 "the invitation mail")
    link = re.search(r"http://\S+/console/invite/\S+", mail.body)
    assert link, mail.body
    path = "/console/invite/" + link.group(0).rsplit("/", 1)[1]

    context = browser.new_context(viewport=running.desk, base_url=running.url)
    page = context.new_page()
    authenticator = with_virtual_authenticator(page)

    # The invitation: a password, then a passkey made by the (virtual) authenticator.
    page.goto(path)
    assert heading(page) == "Set up your help-desk sign-in"
    shot(page, "30-console-invitation")
    axe(page)
    page.get_by_label("New password", exact=True).fill(PASSWORD)
    page.get_by_label("Confirm the new password").fill(PASSWORD)
    page.get_by_role("button", name="Create passkey and finish").click()
    # The page's script makes the passkey, sends it, then moves on: wait for where it lands.
    page.get_by_role("heading", name="Your help-desk sign-in is ready").wait_for()
    credentials = page._rekey_cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(credentials["credentials"]) == 1

    # Signing in: the password, then the passkey; then out, and in again.
    sign_in_with_passkey(running, page, axe)
    shot(page, "31-console-after-passkey")
    page.get_by_role("button", name="Sign out").click()
    page.goto("/console")
    assert "sign in" in heading(page).lower()
    sign_in_with_passkey(running, page)

    # The spent link changes nothing and says why.
    page.goto(path)
    assert heading(page) == "This invitation cannot be used"
    assert "already been used" in page.locator("main").inner_text()
    axe(page)
    agents = running.call("credentials", "list_agents", principal=running.operator())
    mine = next(a for a in agents if a["username"] == AGENT)
    assert [f["factor_type"] for f in mine["factors"]] == ["passkey"]
    context.close()


def test_a_password_without_the_passkey_does_not_reach_the_console(running, browser, axe):
    """The phished password reaches the passkey page, and no further."""
    context = browser.new_context(viewport=running.desk, base_url=running.url)
    page = context.new_page()
    page.goto("/console/sign-in")
    running.console_password(page, running.agent, running.agent_password)
    assert heading(page) == "Enter your authenticator code"
    page.goto("/console")
    assert heading(page) != "Reset tickets"
    page.goto("/console/sign-in/code")
    page.get_by_label("Authenticator code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    assert "not correct" in page.locator("main").inner_text()
    axe(page)  # the console's code page with its error
    page.goto("/console")
    assert heading(page) != "Reset tickets"
    context.close()
