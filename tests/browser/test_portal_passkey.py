"""A user's passkey in a real browser (Chromium's virtual authenticator through the DevTools
protocol: CTAP2, internal, resident key, user verification): added in Security info, made the
default, the old method removed, then a sign-in with the passkey alone as the second step."""

from __future__ import annotations

import pytest

from tests.browser.test_console_passkey import with_virtual_authenticator
from tests.browser.test_portal_guide import (
    heading,
    signed_in_to_keep_your_account_secure,
    signs_in_again,
)
from tests.browser.test_portal_security_info import the_guide_with_the_app

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

USER, EMAIL = "casey.nguyen@masspasrr.org", "casey.nguyen@example.org"


def test_a_user_adds_a_passkey_makes_it_the_default_and_signs_in_with_it(running, browser, shot,
                                                                      axe):
    context, page = signed_in_to_keep_your_account_secure(running, browser, USER, EMAIL)
    authenticator = with_virtual_authenticator(page)
    the_guide_with_the_app(page)

    # Security info -> Add sign-in method -> Passkey or security key -> Create a passkey
    page.goto("/security-info")
    page.get_by_role("button", name="Add sign-in method").click()
    page.get_by_label("Which method would you like to use?").select_option("passkey")
    page.get_by_role("button", name="Confirm").click()
    assert page.locator("main h2").first.inner_text() == "Passkey or security key"
    shot(page, "43-create-a-passkey")
    axe(page)
    page.get_by_role("button", name="Create a passkey").click()
    page.wait_for_url("**/security-info/success")
    assert "Success!" in page.locator("main").inner_text()
    credentials = page._rekey_cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
    assert len(credentials["credentials"]) == 1
    assert credentials["credentials"][0]["isResidentCredential"] is True
    page.get_by_role("link", name="Done").click()

    # the passkey becomes the default, the app is removed
    passkey = page.locator(".method-card", has_text="Passkey or security key")
    passkey.get_by_role("button", name="Make default").click()
    assert "Default" in page.locator(".method-card", has_text="Passkey or security key").inner_text()
    page.locator(".method-card", has_text="Microsoft Authenticator").get_by_role(
        "link", name="Remove").click()
    page.get_by_role("button", name="Remove").click()
    assert page.locator(".method-card").count() == 1

    # a later sign-in: the password, then the passkey
    signs_in_again(page, USER)
    assert heading(page) == "Use your passkey"
    shot(page, "44-sign-in-with-a-passkey")
    axe(page)
    page.get_by_role("button", name="Use your passkey").click()
    page.wait_for_url("**/home")
    assert heading(page) == "Welcome to the PASRR Portal"
    context.close()
