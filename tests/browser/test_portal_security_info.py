"""Security info in a real browser against the real system: after the guide, the user sees the
sign-in method with when it was added and last used, adds a second authenticator app through
the setup's own screens, makes it the default, removes the first; each change a notice mail to
the address on file, and a reload never posts a change again (post/redirect/get).
"""

from __future__ import annotations

import time
from typing import Any

import pyotp
import pytest

from shared.caught import list_mails
from tests.browser.test_portal_guide import (
    heading,
    signed_in_to_keep_your_account_secure,
    signs_in_again,
    title,
    until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

USER, EMAIL = "robin.lee@masspasrr.org", "robin.lee@example.org"


def the_guide_with_the_app(page: Any) -> str:
    """From "Keep your account secure" to the portal: the app by QR, then the agreement; the
    app's key."""
    page.get_by_role("link", name="Next").click()
    page.get_by_role("button", name="Next").click()
    key = scan_and_confirm(page)
    page.get_by_role("link", name="Done").click()
    page.get_by_label("I Accept").check()
    page.get_by_role("button", name="Confirm").click()
    return key


def scan_and_confirm(page: Any, next_button: str = "Next") -> str:
    """On "Scan the QR code": the key under "Can't scan image?", then its code: the secret."""
    page.get_by_text("Can't scan image?").click()
    secret = page.locator("#secret-key").inner_text().replace(" ", "").upper()
    # a phone-only user can tap the setup link instead of scanning
    assert page.locator("#otpauth-link").get_attribute("href").startswith("otpauth://totp/")
    page.locator("main .actions .primary").click()
    assert "app app" not in page.locator("main").inner_text()
    page.get_by_label("Enter the 6-digit code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name=next_button).click()
    assert "Success!" in page.locator("main").inner_text()
    return secret


def notices(running: Any) -> list[str]:
    return [m.subject for m in list_mails(running.stack.mail_folder) if EMAIL in m.to]


def card(page: Any, label_part: str) -> Any:
    return page.locator(".method-card", has_text=label_part)


def test_a_user_adds_a_method_makes_it_the_default_and_removes_the_old_one(running, browser, shot,
                                                                         axe):
    context, page = signed_in_to_keep_your_account_secure(running, browser, USER, EMAIL)
    # the guide's first method: Microsoft Authenticator, by code
    first = the_guide_with_the_app(page)
    assert heading(page) == "Welcome to the PASRR Portal"

    # Security info: the one method, default, not removable
    page.get_by_role("link", name="Security info").click()
    assert heading(page) == "Security info"
    assert title(page).startswith("Security info")
    [only] = page.locator(".method-card").all()
    text = only.inner_text()
    assert "Default" in text and "Added" in text and "Last used" in text and "Never" not in text
    assert page.get_by_role("link", name="Remove").count() == 0
    shot(page, "40-security-info")
    axe(page)

    # add a second app through the setup's screens
    page.get_by_role("button", name="Add sign-in method").click()
    assert heading(page) == "Add a sign-in method"
    axe(page)
    titles = [title(page)]
    page.get_by_label("Which method would you like to use?").select_option("other-app")
    page.get_by_role("button", name="Confirm").click()
    titles.append(title(page))
    page.locator("main .actions .primary").click()  # "Next": the QR code of a new app
    titles.append(title(page))
    page.get_by_text("Can't scan image?").click()
    shown = page.locator("#secret-key").inner_text()
    # Back to the choice, the same method again, Next: the same key, not a new one
    page.get_by_role("link", name="Back", exact=True).click()
    page.get_by_label("Which method would you like to use?").select_option("other-app")
    page.get_by_role("button", name="Confirm").click()
    page.locator("main .actions .primary").click()
    page.get_by_text("Can't scan image?").click()
    assert page.locator("#secret-key").inner_text() == shown
    page.get_by_role("link", name="Next").click()
    titles.append(title(page))
    assert len(set(titles)) == 4, titles  # each screen its own title
    page.get_by_role("link", name="Back", exact=True).click()
    scan_and_confirm(page)
    assert 'Choose "Done" to go back to Security info.' in page.locator("main").inner_text()
    # the lock icon is drawn (SVG), not a glyph the phone's fonts may lack
    assert page.locator("p.method svg.icon").count() == 1
    page.get_by_role("link", name="Done").click()
    assert heading(page) == "Security info"
    assert page.locator(".method-card").count() == 2
    labels = page.locator(".method-card h2").all_inner_texts()
    assert any(label.startswith("Authenticator app") for label in labels), labels  # not Microsoft's
    until(lambda: any("new sign-in method" in s for s in notices(running)), "the added notice")

    # make the new one the default; a reload shows the list, it posts nothing again
    new = page.locator(".method-card").filter(has_not=page.locator(".badge"))
    new.get_by_role("button", name="Make default").click()
    assert "Your default sign-in method was changed." in page.get_by_role("status").inner_text()
    page.reload()
    assert page.get_by_role("status").count() == 0
    until(lambda: sum("default sign-in method" in s for s in notices(running)) == 1,
          "one notice of the new default")
    shot(page, "41-security-info-two-methods")
    axe(page)

    # remove the first (no longer the default)
    old = page.locator(".method-card").filter(has_not=page.locator(".badge"))
    old.get_by_role("link", name="Remove").click()
    assert heading(page) == "Remove a sign-in method"
    shot(page, "42-remove-a-method")
    axe(page)
    page.get_by_role("button", name="Remove").click()
    assert "The sign-in method was removed." in page.get_by_role("status").inner_text()
    assert page.locator(".method-card").count() == 1
    until(lambda: any("was removed" in s for s in notices(running)), "the removal notice")

    # the removed app no longer signs in; the later sign-in asks the new default
    signs_in_again(page, USER)
    assert heading(page) == "Enter code"
    page.get_by_label("Code").fill(pyotp.TOTP(first).at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Enter code"  # the old app's code is refused
    assert "not right" in page.get_by_role("alert").inner_text()
    context.close()


def test_a_locked_method_offers_another_way_not_a_try_again_that_cannot_work(running, browser,
                                                                             shot, axe):
    user, email = "kim.ortiz@masspasrr.org", "kim.ortiz@example.org"
    context, page = signed_in_to_keep_your_account_secure(running, browser, user, email)
    the_guide_with_the_app(page)
    page.goto("/security-info")  # a second method: another authenticator app
    page.get_by_role("button", name="Add sign-in method").click()
    page.get_by_label("Which method would you like to use?").select_option("other-app")
    page.get_by_role("button", name="Confirm").click()
    page.locator("main .actions .primary").click()
    scan_and_confirm(page)

    signs_in_again(page, user)
    assert heading(page) == "Enter code"
    said = []
    for _ in range(5):  # wrong codes lock the default method
        page.get_by_label("Code").fill("000000")
        page.get_by_role("button", name="Verify").click()
        said.append(page.get_by_role("alert").inner_text())
    assert "1 try left" in said[3] and "locked" in said[4]
    assert page.get_by_label("Code").count() == 0  # no code box under a locked method
    # "Call the help desk": every page says how
    assert f"Call {running.settings.helpdesk_contact}." in page.locator("footer").inner_text()
    assert page.get_by_role("button", name="Try again").count() == 0

    signs_in_again(page, user)
    assert "locked" in page.get_by_role("alert").inner_text()
    assert page.get_by_role("button", name="Try again").count() == 0
    assert page.get_by_label("Code").count() == 0
    shot(page, "45-locked-method")
    axe(page)
    page.get_by_role("link", name="Use another sign-in method").click()
    assert title(page).startswith("Sign in another way")
    page.get_by_role("button", name="Use a verification code from my authenticator app").click()
    assert heading(page) == "Enter code"  # the other app, not the locked one
    context.close()


def test_a_new_qr_code_says_it_replaces_the_one_shown_before(running, browser, axe):
    context, page = signed_in_to_keep_your_account_secure(
        running, browser, "sam.quinn@masspasrr.org", "sam.quinn@example.org")
    page.get_by_role("link", name="Next").click()  # Microsoft Authenticator: get the app
    page.get_by_role("button", name="Next").click()  # set up: its QR code
    page.get_by_text("Can't scan image?").click()
    first = page.locator("#secret-key").inner_text()
    assert page.locator("#replaces-earlier").count() == 0  # the first QR code replaces nothing

    # another kind of app instead: a new key, and the page says the first one stopped working
    page.get_by_role("link", name="I want to set up a different method").click()
    page.get_by_label("Which method would you like to use?").select_option("other-app")
    page.get_by_role("button", name="Confirm").click()
    page.locator("main .actions .primary").click()
    assert "replaces the one shown to you before" in page.locator("#replaces-earlier").inner_text()
    axe(page)
    new = scan_and_confirm(page)  # the new key's code sets the app up
    assert new != first.replace(" ", "").upper()
    context.close()
