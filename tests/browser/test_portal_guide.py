"""The user guide, screen by screen, in a real browser against the real system.

A person asks for a reset on the portal, an agent approves it in the console, the temporary
password arrives by mail (read on the portal's developer mail page), and the person signs in,
chooses a new password, sets up an authenticator app with the code from the key shown under
"Can't scan image?", accepts the Data Access Agreement and reaches the portal home.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

USER = "pat.smith@masspasrr.org"
USER_EMAIL = "pat.smith@example.org"
NEW_PASSWORD = "correct horse battery staple paperclip"
TEMPORARY = re.compile(r"Temporary password: (\S+)")


def until(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def rule_met(page: Any, rule: str) -> bool:
    classes = (page.locator(f'[data-rule="{rule}"]').get_attribute("class") or "").split()
    return "met" in classes


def heading(page: Any) -> str:
    return page.locator("h1").first.inner_text()


def test_the_whole_guide_in_the_browser_with_an_authenticator_app(running, browser, shot):
    running.call("credentials", "register_account", username=USER, email=USER_EMAIL,
                 display_name="Pat Smith")
    person = browser.new_context(viewport=running.phone, base_url=running.url)
    agent = browser.new_context(viewport=running.desk, base_url=running.url)
    page = person.new_page()

    # 1. "Request an MFA reset": name, email address, portal username, reason.
    page.goto("/request-reset")
    shot(page, "01-request-reset")
    page.get_by_label("Your name").fill("Pat Smith")
    page.get_by_label("Your email address").fill(USER_EMAIL)
    page.get_by_label("Portal username").fill(USER)
    page.get_by_label("Reason").fill("New phone: the old one was lost")
    page.get_by_role("button", name="Send request").click()
    assert heading(page) == "Request received"
    shot(page, "02-request-received")

    # 2. The agent signs in to the console, checks the identity and approves.
    desk = agent.new_page()
    desk.goto("/console")
    assert "Help-desk console" in heading(desk)
    desk.get_by_label("Username").fill(running.agent)
    desk.get_by_label("Password").fill(running.agent_password)
    desk.get_by_role("button", name="Sign in").click()
    assert heading(desk) == "Reset tickets"
    row = desk.locator("tr", has_text=USER)
    assert "Open" in row.inner_text()
    shot(desk, "03-console-tickets")
    row.get_by_role("link").click()
    assert heading(desk).startswith("Ticket RK-")
    desk.get_by_label("Called back the phone number on file").check()
    desk.get_by_label("Note (optional)").fill("Called back; Pat confirmed.")

    def recorded() -> bool:  # ticketing learns of the accounts from their events
        desk.get_by_role("button", name="Record identity check").click()
        return "Identity check recorded." in desk.locator("main").inner_text()

    until(recorded, "the identity check to be accepted")

    def approved() -> bool:
        desk.get_by_role("button", name="Approve the reset").click()
        return "Approved:" in desk.locator("main").inner_text()

    until(approved, "the approval")
    assert "Approved" in desk.locator("h1 .state").inner_text()
    assert "Reset approved" in desk.locator(".timeline").inner_text()
    shot(desk, "04-console-ticket-approved")

    # 3. The temporary password arrives by secure email (the developer mail page).
    def temporary_mail() -> bool:
        page.goto("/dev/mail")
        return page.get_by_role("link", name=re.compile("temporary", re.I)).count() > 0

    until(temporary_mail, "the temporary password mail")
    page.get_by_role("link", name=re.compile("temporary", re.I)).first.click()
    temporary = TEMPORARY.search(page.locator("pre.mail-body").inner_text())
    assert temporary, "the mail holds a temporary password"

    # 4. Sign in with the username and the temporary password.
    page.goto("/sign-in")
    shot(page, "05-sign-in")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(temporary.group(1))
    page.get_by_role("button", name="Sign in").click()

    # 5. A new password: the rules are shown, and an error says what to fix.
    assert heading(page) == "Update your password"
    page.get_by_label("New password", exact=True).fill("too short")
    page.get_by_label("Confirm the new password").fill("too short")
    assert not rule_met(page, "min")
    page.evaluate("document.getElementById('new_password').removeAttribute('minlength')")
    page.get_by_role("button", name="Sign in").click()
    assert "at least 15 characters" in page.get_by_role("alert").inner_text()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm the new password").fill(NEW_PASSWORD)
    assert rule_met(page, "min") and rule_met(page, "same")
    shot(page, "06-new-password")
    page.get_by_role("button", name="Sign in").click()

    # 6. "Keep your account secure": Microsoft Authenticator, "Start by getting the app".
    assert heading(page) == "Keep your account secure"
    main = page.locator("main")
    assert "Your organization requires you to set up the following methods of proving who you are." \
        in main.inner_text()
    assert "Start by getting the app" in main.inner_text()
    shot(page, "07-start-by-getting-the-app")
    page.get_by_role("link", name="Next").click()
    assert "Set up your account" in main.inner_text()
    shot(page, "08-set-up-your-account")
    page.get_by_role("button", name="Next").click()

    # 7. "Scan the QR code"; "Can't scan image?" shows the account name and secret key.
    assert "Scan the QR code" in main.inner_text()
    assert page.locator("img.qr").is_visible()
    page.get_by_text("Can't scan image?").click()
    assert page.locator("#account-name").inner_text() == USER
    secret = page.locator("#secret-key").inner_text().replace(" ", "").upper()
    shot(page, "09-scan-the-qr-code")
    page.locator("main .actions .primary").click()  # Next (an app without notifications)

    # 8. The app's 6-digit code, then "Success!" with the default sign-in method.
    page.get_by_label("Enter the 6-digit code").fill("000000" if pyotp.TOTP(secret).now() != "000000"
                                                       else "111111")
    page.get_by_role("button", name="Next").click()
    assert "not right" in page.get_by_role("alert").inner_text()
    page.get_by_label("Enter the 6-digit code").fill(pyotp.TOTP(secret).now())
    shot(page, "10-enter-the-code")
    page.get_by_role("button", name="Next").click()
    text = main.inner_text()
    assert "Success!" in text
    assert ('Great job! You have successfully set up your security info. '
            'Choose "Done" to continue signing in.') in text
    assert "Default sign-in method:" in text and "Microsoft Authenticator" in text
    shot(page, "11-success")
    page.get_by_role("link", name="Done").click()

    # 9. The Data Access Agreement: 21 clauses; "Confirm" does nothing until "I Accept".
    assert heading(page) == "Data Access Agreement"
    assert page.locator(".agreement ol > li").count() == 21
    confirm = page.get_by_role("button", name="Confirm")
    assert confirm.is_disabled()
    shot(page, "12-data-access-agreement")
    # ... and the server refuses it too, should the button be forced.
    page.evaluate("document.getElementById('confirm').disabled = false")
    confirm.click()
    assert heading(page) == "Data Access Agreement"
    assert 'Tick "I Accept"' in page.get_by_role("alert").inner_text()
    page.get_by_label("I Accept").check()
    assert confirm.is_enabled()
    confirm.click()

    # 10. The portal home.
    assert heading(page) == "Welcome to the PASRR Portal"
    shot(page, "13-portal-home")

    # 11. The console shows the ticket closed, with its timeline.
    def closed() -> bool:
        desk.reload()
        return "Closed" in desk.locator("h1 .state").inner_text()

    until(closed, "the ticket to close")
    assert "Ticket closed" in desk.locator(".timeline").inner_text()

    # 12. A later sign-in: the password, then the default method's code.
    page.get_by_role("button", name="Sign out").click()
    assert heading(page) == "You have signed out"
    page.goto("/sign-in")
    page.get_by_label("Username").fill(USER)
    page.get_by_label("Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert heading(page) == "Enter code"
    assert page.get_by_role("link", name="Sign in another way").is_visible()
    shot(page, "14-later-sign-in-code")
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))  # a fresh step
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    person.close()
    agent.close()


def test_a_wrong_password_gets_a_clear_page_the_same_for_an_unknown_username(running, browser, shot):
    context = browser.new_context(viewport=running.phone, base_url=running.url)
    page = context.new_page()
    answers = []
    for username in (running.agent, "nobody.here@masspasrr.org"):
        page.goto("/sign-in")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill("not the password at all")
        with page.expect_response(lambda r: r.request.method == "POST") as response:
            page.get_by_role("button", name="Sign in").click()
        assert response.value.status == 401
        answers.append(page.get_by_role("alert").inner_text())
    assert answers[0] == answers[1] == "The username or password is incorrect."
    shot(page, "15-wrong-password")
    context.close()


def test_the_request_form_answers_the_same_for_an_unknown_username(running, browser):
    context = browser.new_context(viewport=running.phone, base_url=running.url)
    page = context.new_page()
    answers = []
    for username in (running.agent, "nobody.at.all@masspasrr.org"):
        page.goto("/request-reset")
        page.get_by_label("Your name").fill("Sam Jones")
        page.get_by_label("Your email address").fill("sam@example.org")
        page.get_by_label("Portal username").fill(username)
        page.get_by_label("Reason").fill("new phone")
        page.get_by_role("button", name="Send request").click()
        answers.append(page.locator("main").inner_text())
    assert answers[0] == answers[1]
    assert "Request received" in answers[0]
    context.close()


def test_the_request_form_says_what_to_fix(running, browser):
    context = browser.new_context(viewport=running.phone, base_url=running.url)
    page = context.new_page()
    page.goto("/request-reset")
    page.get_by_label("Your name").fill("Sam Jones")
    page.get_by_label("Your email address").fill("not an address")
    page.get_by_role("button", name="Send request").click()
    text = page.locator("main").inner_text()
    assert "Enter an email address like name@example.org." in text
    assert "Enter your portal username" in text
    assert page.get_by_label("Your name").input_value() == "Sam Jones"
    context.close()


def run_authenticator(running: Any, work: Any) -> Any:
    """The reference authenticator (``rekey authenticator``), as the person's phone."""
    import asyncio
    import concurrent.futures

    from rekey.authenticator import Authenticator
    from shared.bus.stream import connect
    from shared.client import RekeyClient

    async def go() -> Any:
        nc = await connect(running.settings.nats_url, "phone", attempts=5)
        try:
            return await work(Authenticator(running.stack.data_dir / "phone.json", RekeyClient(nc)))
        finally:
            await nc.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def reset_by_the_help_desk(running: Any, username: str, email: str) -> str:
    """The request and the approval over the bus; the temporary password from the mail."""
    from rekey.mailsink import latest_mail_to

    running.call("credentials", "register_account", username=username, email=email,
                 display_name="Lee Park")
    number = running.call("ticketing", "request_reset", name="Lee Park", email=email,
                          username=username, reason="new phone")["ticket_number"]

    def approve() -> bool:
        try:
            running.call("ticketing", "verify_identity", ticket=number, agent=running.agent,
                         method="call_back")
            running.call("ticketing", "approve", ticket=number, agent=running.agent)
            return True
        except Exception:
            return False

    until(approve, "the approval")
    mail = until(lambda: latest_mail_to(running.stack.mail_folder, email, "temporary"), "the mail")
    found = TEMPORARY.search(mail.body)
    assert found
    return found.group(1)


def signed_in_to_keep_your_account_secure(running: Any, browser: Any, username: str,
                                          email: str) -> tuple[Any, Any]:
    temporary = reset_by_the_help_desk(running, username, email)
    context = browser.new_context(viewport=running.phone, base_url=running.url)
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(temporary)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm the new password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    assert heading(page) == "Keep your account secure"
    return context, page


def test_the_app_path_with_number_matching_approved_on_the_reference_authenticator(
    running, browser, shot
):
    username, email = "lee.park@masspasrr.org", "lee.park@example.org"
    context, page = signed_in_to_keep_your_account_secure(running, browser, username, email)
    page.get_by_role("link", name="Next").click()  # Start by getting the app
    page.get_by_role("button", name="Next").click()  # Set up your account
    page.get_by_text("Can't scan image?").click()
    uri = page.locator("#uri").input_value()
    assert uri.startswith("otpauth://totp/")
    account = run_authenticator(running, lambda phone: phone.activate(uri))
    assert account.push_capable
    page.get_by_role("button", name="Next").click()

    # "Let's try it out": the number to type on the phone; the page waits without a reload.
    assert "Let's try it out" in page.locator("main").inner_text()
    number = page.locator("#push-number").inner_text().strip()
    shot(page, "16-lets-try-it-out")

    async def approve(phone: Any) -> Any:
        pending = await phone.pending()
        return await phone.approve(pending[0]["challenge_id"], number)

    run_authenticator(running, approve)
    page.wait_for_url("**/security-info/app/approved", timeout=15_000)
    assert "Notification approved" in page.locator("main").inner_text()
    shot(page, "17-notification-approved")
    page.get_by_role("link", name="Next").click()
    text = page.locator("main").inner_text()
    assert "Success!" in text and "Microsoft Authenticator" in text
    page.get_by_role("link", name="Done").click()
    assert heading(page) == "Data Access Agreement"
    context.close()
