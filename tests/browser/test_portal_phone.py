"""The guide's Phone screens in a real browser against the real system: "I want to set up a
different method" -> Phone -> "Text me a code" (the text read from the local Twilio server's
store) or "Call me" (the server answers the call and presses #), on to "Success!", the Data
Access Agreement and the portal home; then a later sign-in challenged by the phone.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from shared.caught import latest_call_to, latest_text_to, list_calls, list_texts
from tests.browser.test_portal_guide import (
    NEW_PASSWORD,
    heading,
    signed_in_to_keep_your_account_secure,
    title,
    until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CODE = re.compile(r"^(\d{6}) is your")


def text_after(running: Any, e164: str, before: str | None) -> tuple[str, str]:
    """The newest text to ``e164`` other than the one with sid ``before``: (sid, code)."""

    def arrived() -> Any:
        text = latest_text_to(running.stack.data_dir / "twilio", e164)
        return text if text is not None and text.sid != before else None

    text = until(arrived, f"a text to {e164}")
    found = CODE.match(text.body)
    assert found, "the text carries a 6-digit code"
    return text.sid, found.group(1)


def choose_phone(page: Any) -> None:
    page.get_by_role("link", name="I want to set up a different method").click()
    page.get_by_label("Which method would you like to use?").select_option("phone")
    page.get_by_role("button", name="Confirm").click()
    assert page.locator("main h2").first.inner_text() == "Phone"


def accept_the_agreement(page: Any) -> None:
    assert heading(page) == "Data Access Agreement"
    page.get_by_label("I Accept").check()
    page.get_by_role("button", name="Confirm").click()
    assert heading(page) == "Welcome to the PASRR Portal"


def test_the_phone_path_by_text_then_a_later_sign_in_by_text(running, browser, shot, axe):
    username, email = "sam.rivera@masspasrr.org", "sam.rivera@example.org"
    e164, masked = "+15085550171", "+1 ••• ••• 0171"
    context, page = signed_in_to_keep_your_account_secure(running, browser, username, email)
    choose_phone(page)

    # The Phone page, as in the guide.
    text = page.locator("main").inner_text()
    for words in (
        "You can prove who you are by answering a call on your phone or texting a code to your phone.",
        "What phone number would you like to use?",
        "Message and data rates may apply. Choosing Next means that you agree to the Terms of "
        "service and Privacy and cookies statement.",
        "IMPORTANT: If selecting this option, you will need to have access to this phone number "
        "each time you log in to the PASRR Portal. It must be a direct line.",
        "I want to set up a different method",
    ):
        assert words in text
    assert page.locator("#country option").first.inner_text() == "United States (+1)"
    assert page.get_by_label("Text me a code").is_visible()
    assert page.get_by_label("Call me").is_visible()
    shot(page, "18-phone")
    assert title(page).startswith("Phone number")  # each phone screen its own title
    axe(page)

    # A number that is not one: the error says what to fix, next to the field.
    page.get_by_label("Phone number").fill("123")
    page.get_by_label("Text me a code").check()
    page.get_by_role("button", name="Next").click()
    assert "not valid" in page.locator("#number-error").inner_text()
    assert page.get_by_label("Phone number").get_attribute("aria-invalid") == "true"
    axe(page)

    # "Text me a code": the code box; the text arrives at the local Twilio server.
    page.get_by_label("Phone number").fill("(508) 555-0171")
    page.get_by_label("Text me a code").check()
    page.get_by_role("button", name="Next").click()
    assert f"We just sent a 6 digit code to {masked}. Enter the code below." \
        in page.locator("main").inner_text()
    first_sid, first_code = text_after(running, e164, None)
    shot(page, "19-phone-enter-code")
    assert title(page).startswith("Phone: enter the code")
    axe(page)

    # "Resend code": a new text; the first code stops working.
    page.get_by_role("button", name="Resend code").click()
    assert "We sent a new code" in page.get_by_role("status").inner_text()
    _, code = text_after(running, e164, first_sid)
    if first_code != code:
        page.get_by_label("Enter code").fill(first_code)
        page.get_by_role("button", name="Next").click()
        assert "not right" in page.get_by_role("alert").inner_text()
    page.get_by_label("Enter code").fill(code)
    page.get_by_role("button", name="Next").click()

    # "Success!" with the phone as the default sign-in method, then the agreement and home.
    text = page.locator("main").inner_text()
    assert "Success!" in text and "Default sign-in method:" in text and f"Phone {masked}" in text
    shot(page, "21-phone-success")
    axe(page)
    page.get_by_role("link", name="Done").click()
    accept_the_agreement(page)

    # A later sign-in: the password, then the default method (the phone) gets a text.
    page.get_by_role("button", name="Sign out").click()
    last_sid = latest_text_to(running.stack.data_dir / "twilio", e164).sid  # type: ignore[union-attr]
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert heading(page) == "Enter code"
    assert f"We texted your phone {masked}. Please enter the code to sign in." \
        in page.locator("main").inner_text()
    assert page.get_by_role("link", name="Sign in another way").is_visible()
    assert page.get_by_role("button", name="Resend code").is_visible()
    _, code = text_after(running, e164, last_sid)
    shot(page, "23-later-sign-in-text")
    axe(page)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    context.close()


def test_the_phone_path_by_call_answered_with_the_pound_key(running, browser, shot, axe):
    username, email = "kim.nguyen@masspasrr.org", "kim.nguyen@example.org"
    e164, masked = "+15085550172", "+1 ••• ••• 0172"
    context, page = signed_in_to_keep_your_account_secure(running, browser, username, email)
    choose_phone(page)

    # Hold the page's status polls until the waiting screen is seen; then let them through.
    held = "**/security-info/phone/call/status"
    page.route(held, lambda route: route.abort())
    page.get_by_label("Phone number").fill("508-555-0172")
    page.get_by_label("Call me").check()
    page.get_by_role("button", name="Next").click()
    text = page.locator("main").inner_text()
    assert f"We're calling {masked} now." in text
    assert page.get_by_role("button", name="Check again").is_visible()  # without JavaScript
    shot(page, "20-phone-calling")
    assert title(page).startswith("Phone: answer the call")
    axe(page)

    # The local Twilio server answers and presses #; the page moves on by itself.
    until(lambda: (latest_call_to(running.stack.data_dir / "twilio", e164) or None)
          and latest_call_to(running.stack.data_dir / "twilio", e164).pressed == "#",  # type: ignore[union-attr]
          "the call to be answered with #")
    page.unroute(held)
    page.wait_for_url("**/security-info/phone/answered", timeout=15_000)
    assert "✓ Call answered. Your phone was registered successfully." \
        in page.locator("main").inner_text()
    shot(page, "22-call-answered")
    assert title(page).startswith("Call answered")
    axe(page)
    page.get_by_role("link", name="Next").click()
    text = page.locator("main").inner_text()
    assert "Success!" in text and f"Phone {masked}" in text
    page.get_by_role("link", name="Done").click()
    accept_the_agreement(page)
    context.close()

    # A later sign-in in a browser without JavaScript: the phone rings again; "Check again".
    calls = len([c for c in list_calls(running.stack.data_dir / "twilio") if c.to == e164])
    context = browser.new_context(viewport=running.phone, base_url=running.url,
                                  java_script_enabled=False)
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert heading(page) == "Answer the call"
    assert masked in page.locator("main").inner_text()
    # axe-core needs scripts to run: the same page, without its own scripts, in a page with them
    copy = browser.new_context(viewport=running.phone, base_url=running.url).new_page()
    copy.goto("/sign-in")
    copy.set_content(re.sub(r"<script\b[^>]*>.*?</script>", "", page.content(), flags=re.S))
    assert heading(copy) == "Answer the call"
    axe(copy)
    copy.context.close()
    until(lambda: [c for c in list_calls(running.stack.data_dir / "twilio")
                   if c.to == e164 and c.pressed == "#"][calls:], "the sign-in call to be answered")
    page.get_by_role("button", name="Check again").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    context.close()


# --- send limits that fit a normal day (REKEY_SEND_LIMIT_PER_NUMBER / _PER_USER) ------------------
def set_up_by_text(page: Any, running: Any, e164: str, number: str, resends: int) -> str:
    """On "Keep your account secure": Phone, "Text me a code", ``resends`` times "Resend code"
    (each text awaited); the last code finishes the setup, then the agreement. The last sid."""
    choose_phone(page)
    page.get_by_label("Phone number").fill(number)
    page.get_by_label("Text me a code").check()
    page.get_by_role("button", name="Next").click()
    sid, code = text_after(running, e164, None)
    for _ in range(resends):
        page.get_by_role("button", name="Resend code").click()
        assert "We sent a new code" in page.get_by_role("status").inner_text()
        sid, code = text_after(running, e164, sid)
    page.get_by_label("Enter code").fill(code)
    page.get_by_role("button", name="Next").click()
    assert "Success!" in page.locator("main").inner_text()
    page.get_by_role("link", name="Done").click()
    accept_the_agreement(page)
    return sid


def signs_in_by_text(page: Any, running: Any, username: str, e164: str, sid: str) -> str:
    """Signs out and in again; the texted code; the portal home. The text's sid."""
    page.get_by_role("button", name="Sign out").click()
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert heading(page) == "Enter code", page.locator("main").inner_text()
    sid, code = text_after(running, e164, sid)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    return sid


def texts_to(running: Any, e164: str) -> int:
    return len([t for t in list_texts(running.stack.data_dir / "twilio") if t.to == e164])


def test_a_normal_day_by_text_setup_two_resends_and_five_sign_ins_stays_within_the_limits(
    running, browser
):
    username, email = "dana.cole@masspasrr.org", "dana.cole@example.org"
    e164 = "+15085550173"
    context, page = signed_in_to_keep_your_account_secure(running, browser, username, email)
    sid = set_up_by_text(page, running, e164, "(508) 555-0173", resends=2)
    for _ in range(5):
        sid = signs_in_by_text(page, running, username, e164, sid)
    assert texts_to(running, e164) == 8  # every one asked for was sent; none refused
    context.close()


def test_past_the_send_limit_the_page_says_so_sends_nothing_and_the_last_code_still_works(
    running, browser, shot, axe
):
    username, email = "eli.moss@masspasrr.org", "eli.moss@example.org"
    e164, limit = "+15085550174", running.settings.send_limit_per_number
    context, page = signed_in_to_keep_your_account_secure(running, browser, username, email)
    sid = set_up_by_text(page, running, e164, "508 555 0174", resends=limit - 2)
    # the last text the limit allows: a sign-in
    page.get_by_role("button", name="Sign out").click()
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    sid, code = text_after(running, e164, sid)
    assert texts_to(running, e164) == limit

    # One more is refused: the page says why and what still works; nothing is sent.
    with page.expect_response(lambda r: r.request.method == "POST") as response:
        page.get_by_role("button", name="Resend code").click()
    assert response.value.status == 429
    said = page.get_by_role("alert").inner_text()
    assert "Too many texts and calls to this phone number" in said
    assert f"Wait {running.settings.send_window_minutes} minutes" in said
    assert "The last code we sent still works" in said
    assert heading(page) == "Enter code"
    assert page.get_by_role("button", name="Try again").count() == 0
    assert page.get_by_label("Code").get_attribute("aria-invalid") is None  # no wrong code typed
    shot(page, "46-too-many-texts")
    axe(page)
    assert texts_to(running, e164) == limit
    assert latest_text_to(running.stack.data_dir / "twilio", e164).sid == sid  # type: ignore[union-attr]

    # ... and nothing changed: the code already sent signs in.
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    context.close()
