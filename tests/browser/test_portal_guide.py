"""The user guide, screen by screen, in a real browser against the real system.

A person asks for a reset on the portal, an agent approves it in the console, the temporary
password arrives by mail (read on the portal's developer mail page), and the person signs in,
chooses a new password, sets up an authenticator app with the code from the key shown under
"Can't scan image?", accepts the Data Access Agreement and reaches the portal home.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

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


def title(page: Any) -> str:
    """The page's title once its document is parsed: a click that navigates returns when the
    new page commits, before its <title> is read (seen: '' at the new URL)."""
    page.wait_for_load_state("domcontentloaded")
    return str(page.title())


def click_when_offered(desk: Any, button: str) -> bool:
    """Clicks ``button`` on the console's ticket page if ticketing offers it to this agent now;
    else reloads the ticket (ticketing offers Approve once it knows the account) and says no."""
    offered = desk.get_by_role("button", name=button)
    if offered.count() == 0:
        desk.goto("/console/tickets/" + heading(desk).split()[1])
        return False
    offered.click()
    return True


MAILED_CODE = "Start: Code mailed to the address on file (the person reads it back)"


def prove_in_console(desk: Any, running: Any) -> str:
    """On a ticket's console page: a code mailed to the address on file and read back, and an
    ID check, which meet the default policy for an ordinary account; returns the code."""
    code = prove_by_code_in_console(desk, running)
    attest_id_in_console(desk)
    return code


def prove_by_code_in_console(desk: Any, running: Any) -> str:
    """Start a code mailed to the address on file, type the code the person reads back (from
    the caught mail)."""
    from shared.caught import latest_proof_code

    number = heading(desk).split()[1]
    main = desk.locator("main")
    until(lambda: click_when_offered(desk, MAILED_CODE), "the mailed-code proof to be offered")
    assert "A code is on its way to the address on file" in main.inner_text()
    code = until(lambda: latest_proof_code(running.stack.mail_folder, number), "the code mail")
    desk.get_by_label("Code the person reads back").fill(code)
    desk.get_by_role("button", name="Check the code").click()
    assert "Code accepted" in main.inner_text()
    return str(code)


def attest_id_in_console(desk: Any) -> None:
    desk.get_by_label("Photo ID checked in person", exact=False).fill("Passport, service desk")
    desk.get_by_role("button", name="Attest the ID check").click()
    assert "ID check recorded" in desk.locator("main").inner_text()


def test_the_whole_guide_in_the_browser_with_an_authenticator_app(running, browser, shot, axe):
    running.call("credentials", "register_account", username=USER, email=USER_EMAIL,
                 display_name="Pat Smith", principal=running.operator())
    person = browser.new_context(viewport=running.phone, base_url=running.url)
    agent = browser.new_context(viewport=running.desk, base_url=running.url)
    page = person.new_page()

    # 1. "Request an MFA reset": name, email address, portal username, reason.
    page.goto("/request-reset")
    shot(page, "01-request-reset")
    axe(page)
    page.get_by_label("Your name").fill("Pat Smith")
    page.get_by_label("Your email address").fill(USER_EMAIL)
    page.get_by_label("Portal username").fill(USER)
    page.get_by_label("Reason").fill("New phone: the old one was lost")
    page.get_by_role("button", name="Send request").click()
    assert heading(page) == "Request received"
    shot(page, "02-request-received")
    axe(page)

    # 2. The agent signs in to the console, checks the identity and approves.
    desk = agent.new_page()
    desk.goto("/console")
    assert "Help-desk console" in heading(desk)
    running.console_sign_in(desk)  # the password, then an authenticator code
    assert heading(desk) == "Reset tickets"
    row = desk.locator("tr", has_text=USER)
    assert "Open" in row.inner_text()
    shot(desk, "03-console-tickets")
    axe(desk)
    row.get_by_role("link").click()
    assert heading(desk).startswith("Ticket RK-")
    prove_in_console(desk, running)

    def approved() -> bool:
        if not click_when_offered(desk, "Approve the reset"):
            return False
        return "Approved:" in desk.locator("main").inner_text()

    until(approved, "the approval")
    assert "/approve" not in desk.url  # post/redirect/get: a reload sends nothing again
    desk.reload()
    assert "Approved:" not in desk.locator("main").inner_text()
    assert "Approved" in desk.locator("h1 .state").inner_text()
    assert "Reset approved" in desk.locator(".timeline").inner_text()
    shot(desk, "04-console-ticket-approved")
    axe(desk)

    # 3. The temporary password arrives by secure email (the developer mail page).
    def temporary_mail() -> bool:
        page.goto("/dev/mail")
        return page.get_by_role("link", name=re.compile("temporary", re.I)).count() > 0

    until(temporary_mail, "the temporary password mail")
    page.get_by_role("link", name=re.compile("temporary", re.I)).first.click()
    mail_body = page.locator("pre.mail-body").inner_text()
    temporary = TEMPORARY.search(mail_body)
    assert temporary, "the mail holds a temporary password"
    # where to use it, and whom to call if it was not asked for
    assert f"Sign in at {running.settings.portal_base_url}/sign-in" in mail_body
    assert f"call {running.settings.helpdesk_contact} now" in mail_body

    # 4. Sign in with the username and the temporary password.
    page.goto("/sign-in")
    shot(page, "05-sign-in")
    axe(page)
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
    axe(page)
    page.get_by_role("button", name="Sign in").click()

    # 6. "Keep your account secure": Microsoft Authenticator, "Start by getting the app".
    assert heading(page) == "Keep your account secure"
    main = page.locator("main")
    assert "Your organization requires you to set up the following methods of proving who you are." \
        in main.inner_text()
    assert "Start by getting the app" in main.inner_text()
    shot(page, "07-start-by-getting-the-app")
    axe(page)
    page.get_by_role("link", name="Next").click()
    assert "Set up your account" in main.inner_text()
    shot(page, "08-set-up-your-account")
    axe(page)
    page.get_by_role("button", name="Next").click()

    # 7. "Scan the QR code"; "Can't scan image?" shows the account name and secret key.
    assert "Scan the QR code" in main.inner_text()
    assert page.locator("img.qr").is_visible()
    page.get_by_text("Can't scan image?").click()
    assert page.locator("#account-name").inner_text() == USER
    secret = page.locator("#secret-key").inner_text().replace(" ", "").upper()
    shot(page, "09-scan-the-qr-code")
    axe(page)
    page.locator("main .actions .primary").click()  # Next (an app without notifications)

    # 8. The app's 6-digit code, then "Success!" with the default sign-in method.
    page.get_by_label("Enter the 6-digit code").fill("000000" if pyotp.TOTP(secret).now() != "000000"
                                                       else "111111")
    page.get_by_role("button", name="Next").click()
    assert "not right" in page.get_by_role("alert").inner_text()
    page.get_by_label("Enter the 6-digit code").fill(pyotp.TOTP(secret).now())
    shot(page, "10-enter-the-code")
    axe(page)
    page.get_by_role("button", name="Next").click()
    text = main.inner_text()
    assert "Success!" in text
    assert ('Great job! You have successfully set up your security info. '
            'Choose "Done" to continue signing in.') in text
    assert "Default sign-in method:" in text and "Microsoft Authenticator" in text
    shot(page, "11-success")
    axe(page)
    page.get_by_role("link", name="Done").click()

    # 9. The Data Access Agreement: 21 clauses; "Confirm" does nothing until "I Accept".
    assert heading(page) == "Data Access Agreement"
    assert page.locator(".agreement ol > li").count() == 21
    confirm = page.get_by_role("button", name="Confirm")
    assert confirm.is_disabled()
    shot(page, "12-data-access-agreement")
    axe(page)
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
    axe(page)

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
    axe(page)
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))  # a fresh step
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    person.close()
    agent.close()

    # 13. The audit record says through what and in which session each web action came.
    def audited() -> dict[str, Any] | None:
        events = running.call("audit", "history", identity="auditor", username=USER)
        named = {e["name"]: e for e in events}
        return named if "TicketClosed" in named else None

    named = until(audited, "the audit service to hold the reset")
    registered, approved = named["MethodRegistered"]["context"], named["ResetApproved"]["context"]
    assert (registered["channel"], registered["principal"]) == ("portal", USER)
    assert registered["session_id"]  # a digest of the portal session, never the cookie
    assert (approved["channel"], approved["principal_kind"]) == ("console", "agent")


def test_a_wrong_password_gets_a_clear_page_the_same_for_an_unknown_username(running, browser, shot,
                                                                           axe):
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
    axe(page)
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


def request_on_the_form(page: Any, email: str, username: str) -> None:
    page.goto("/request-reset")
    page.get_by_label("Your name").fill("Ada Byron")
    page.get_by_label("Your email address").fill(email)
    page.get_by_label("Portal username").fill(username)
    page.get_by_label("Reason").fill("new phone")
    page.get_by_role("button", name="Send request").click()
    assert heading(page) == "Request received"


def caught_mail(page: Any, to: str, subject: str) -> str | None:
    """On /dev/mail: the body of the newest mail to ``to`` whose subject has ``subject``."""
    page.goto("/dev/mail")
    row = page.locator("tbody tr", has_text=to).filter(has_text=subject)
    if row.count() == 0:
        return None
    row.first.get_by_role("link").click()
    return str(page.locator("pre.mail-body").inner_text())


def test_a_web_request_mails_the_ticket_number_to_the_address_on_file_and_a_rejection_says_whom_to_call(
    running, browser
):
    user, on_file, typed = "ada.byron@masspasrr.org", "ada.byron@example.org", "ada@elsewhere.example"
    running.call("credentials", "register_account", username=user, email=on_file,
                 display_name="Ada Byron", principal=running.operator())
    context = browser.new_context(viewport=running.phone, base_url=running.url)
    page = context.new_page()

    # The form says where the number goes; the mail to the address on file holds it. (Asked
    # again if ticketing had not yet heard of the new account: the request joins the ticket.)
    body = None
    for _ in range(3):
        request_on_the_form(page, on_file, user)
        try:
            body = until(lambda: caught_mail(page, on_file, "request received"),
                         "the acknowledgement to the address on file", timeout=10)
            break
        except AssertionError:
            continue
    number = re.search(r"Your ticket number is (RK-[0-9A-Z-]+)", body or "")
    assert number, body
    assert running.settings.helpdesk_contact in (body or "")

    # A typed address that is not on file, and an unknown username: no mail to the typed ones.
    request_on_the_form(page, typed, user)
    assert "address on file" in page.get_by_role("status").inner_text()
    request_on_the_form(page, "probe@elsewhere.example", "nobody.at.all@masspasrr.org")
    page.goto("/dev/mail")
    assert page.locator("tbody tr", has_text="elsewhere.example").count() == 0

    # The agent rejects the ticket; the address on file is told, with whom to call.
    desk = browser.new_context(viewport=running.desk, base_url=running.url).new_page()
    desk.goto("/console/sign-in")
    running.console_sign_in(desk)
    desk.goto(f"/console/tickets/{number.group(1)}")
    desk.get_by_label("Reason for rejecting").fill("the caller could not say who their manager is")
    desk.get_by_role("button", name="Reject").click()
    assert "Rejected" in desk.locator("h1 .state").inner_text()
    notice = until(lambda: caught_mail(page, on_file, "not approved"), "the rejection notice")
    assert number.group(1) in notice and f"call {running.settings.helpdesk_contact}" in notice
    assert "manager" not in notice  # the agent's reason stays on the ticket
    page.goto("/dev/mail")
    assert page.locator("tbody tr", has_text="elsewhere.example").count() == 0
    desk.context.close()
    context.close()


def test_the_request_form_says_what_to_fix(running, browser, axe):
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
    axe(page)  # the form with its errors
    context.close()


def run_authenticator(running: Any, work: Any) -> Any:
    """The reference authenticator (``rekey authenticator``), as the person's phone."""
    import asyncio
    import concurrent.futures

    from rekey.authenticator.app import Authenticator
    from shared.bus.connection import connect
    from shared.client import RekeyClient

    async def go() -> Any:
        nc = await connect(running.settings, "device", name="phone", attempts=5)
        try:
            return await work(Authenticator(running.stack.data_dir / "phone.json", RekeyClient(nc)))
        finally:
            await nc.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, go()).result()


def reset_by_the_help_desk(running: Any, username: str, email: str) -> str:
    """The request and the approval over the bus; the temporary password from the mail."""
    from shared.caught import latest_mail_to

    running.call("credentials", "register_account", username=username, email=email,
                 display_name="Lee Park", principal=running.operator())
    number = running.call("ticketing", "request_reset", name="Lee Park", email=email,
                          username=username, reason="new phone")["ticket_number"]

    principal = running.agent_principal()

    def approve() -> bool:
        try:
            running.prove_identity(number, principal)
            running.call("ticketing", "approve", ticket=number, principal=principal)
            return True
        except Exception:
            return False

    until(approve, "the approval")
    mail = until(lambda: latest_mail_to(running.stack.mail_folder, email, "temporary"), "the mail")
    found = TEMPORARY.search(mail.body)
    assert found
    return found.group(1)


def signs_in_again(page: Any, username: str, password: str = NEW_PASSWORD) -> None:
    """Signs out, then in with the username and password: the second step's page is next."""
    page.get_by_role("button", name="Sign out").click()
    page.goto("/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


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
    running, browser, shot, axe
):
    username, email = "lee.park@masspasrr.org", "lee.park@example.org"
    context, page = signed_in_to_keep_your_account_secure(running, browser, username, email)
    page.get_by_role("link", name="Next").click()  # Start by getting the app
    page.get_by_role("button", name="Next").click()  # Set up your account
    page.get_by_text("Can't scan image?").click()
    uri = page.locator("#otpauth-link").get_attribute("href")
    assert uri.startswith("otpauth://totp/")
    account = run_authenticator(running, lambda phone: phone.activate(uri))
    assert account.push_capable
    page.get_by_role("button", name="Next").click()

    # "Let's try it out": the number to type on the phone; the page waits without a reload.
    assert "Let's try it out" in page.locator("main").inner_text()
    number = page.locator("#push-number").inner_text().strip()
    shot(page, "16-lets-try-it-out")
    axe(page)
    # Back, then Next again: the new request replaces the first; the phone shows only one.
    page.get_by_role("link", name="Back", exact=True).click()
    assert "Scan the QR code" in page.locator("main").inner_text()
    page.locator("main .actions .primary").click()
    assert "Let's try it out" in page.locator("main").inner_text()
    number = page.locator("#push-number").inner_text().strip()
    assert len(run_authenticator(running, lambda phone: phone.pending())) == 1

    async def approve(phone: Any) -> Any:
        pending = await phone.pending()
        return await phone.approve(pending[0]["challenge_id"], number)

    run_authenticator(running, approve)
    page.wait_for_url("**/security-info/app/approved", timeout=15_000)
    assert "Notification approved" in page.locator("main").inner_text()
    shot(page, "17-notification-approved")
    axe(page)
    page.get_by_role("link", name="Next").click()
    text = page.locator("main").inner_text()
    assert "Success!" in text and "Microsoft Authenticator" in text
    page.get_by_role("link", name="Done").click()
    assert heading(page) == "Data Access Agreement"

    # A later sign-in sends the app a notification; "Sign in another way" offers its code.
    page.get_by_label("I Accept").check()
    page.get_by_role("button", name="Confirm").click()
    signs_in_again(page, username)
    assert heading(page) == "Approve sign-in request"
    axe(page)

    # Denied on the phone: the page says so and offers a new request, which is sent.
    async def deny(phone: Any) -> Any:
        pending = await phone.pending()
        return await phone.deny(pending[0]["challenge_id"])

    run_authenticator(running, deny)
    page.get_by_role("button", name="Send a new request").wait_for(timeout=15_000)
    assert "denied on your device" in page.get_by_role("alert").inner_text()
    axe(page)
    page.get_by_role("button", name="Send a new request").click()
    assert heading(page) == "Approve sign-in request"
    assert "We sent a new request to your app." in page.get_by_role("status").first.inner_text()

    # Three wrong numbers typed on the phone close the request: the page says so, and offers a
    # new one (not a "Check again" that cannot work).
    shown = page.locator("#push-number").inner_text().strip()
    wrong = str((int(shown) + 1) % 10 ** len(shown)).zfill(len(shown))

    async def wrong_three_times(phone: Any) -> None:
        [request] = await phone.pending()
        for _ in range(running.settings.push_max_wrong):
            with contextlib.suppress(Exception):  # each wrong number is refused
                await phone.approve(request["challenge_id"], wrong)

    run_authenticator(running, wrong_three_times)
    page.get_by_role("button", name="Send a new request").wait_for(timeout=15_000)
    said = page.get_by_role("alert").inner_text()
    assert "wrong too many times" in said and "did not succeed" not in said
    assert page.get_by_role("button", name="Check again").count() == 0
    axe(page)
    page.get_by_role("link", name="Sign in another way").click()
    axe(page)
    page.get_by_role("button", name="Use a verification code from my authenticator app").click()
    assert heading(page) == "Enter code"
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))  # a fresh step
    page.get_by_role("button", name="Verify").click()
    assert heading(page) == "Welcome to the PASRR Portal"
    context.close()
