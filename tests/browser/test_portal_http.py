"""The portal's edge over plain HTTP (no browser): CSRF refusal, security headers, the session
cookie, throttled sign-in, and friendly pages when the services do not answer.

The portal runs in-process against a real nats-server with no service behind it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.testclient import TestClient

from services.portal.app import create_app
from services.portal.sessions import COOKIE, SessionStore
from shared.clock import ManualClock

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def portal(nats_server, settings_factory) -> Iterator[TestClient]:
    settings = settings_factory(nats_server, portal_sign_in_attempts=3)
    with TestClient(create_app(settings), base_url="https://localhost") as client:
        yield client


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def test_pages_carry_the_security_headers_and_a_host_only_secure_session_cookie(portal):
    page = portal.get("/sign-in")
    assert page.status_code == 200
    headers = page.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "server" not in headers
    cookie = headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
        assert attribute.lower() in cookie.lower()
    assert "domain=" not in cookie.lower()


def test_a_form_without_its_csrf_token_is_refused(portal):
    token = csrf_of(portal.get("/sign-in").text)
    for form in ({"username": "a", "password": "b"},
                 {"username": "a", "password": "b", "csrf": "forged" + token[6:]}):
        refused = portal.post("/sign-in", data=form)
        assert refused.status_code == 403
        assert "This form has expired" in refused.text
    elsewhere = portal.post("/sign-in", data={"username": "a", "password": "b", "csrf": token},
                            headers={"Origin": "https://evil.example"})
    assert elsewhere.status_code == 403
    for path in ("/request-reset", "/agreement", "/console/sign-in", "/sign-out"):
        assert portal.post(path, data={}, follow_redirects=False).status_code in (303, 403)


def test_a_missing_service_gets_a_friendly_page_never_a_stack_trace(portal):
    token = csrf_of(portal.get("/sign-in").text)
    page = portal.post("/sign-in", data={"username": "pat", "password": "secret", "csrf": token})
    assert page.status_code == 503
    assert "The service is unavailable" in page.text
    assert "Traceback" not in page.text
    assert page.headers["content-security-policy"]


def test_sign_in_is_throttled(portal):
    token = csrf_of(portal.get("/sign-in").text)
    statuses = [
        portal.post("/sign-in", data={"username": "pat", "password": "x", "csrf": token}).status_code
        for _ in range(4)
    ]
    assert statuses[:3] == [503, 503, 503]
    assert statuses[3] == 429


def test_sign_in_is_allowed_again_once_the_minute_has_passed(nats_server, settings_factory):
    clock = ManualClock()
    settings = settings_factory(nats_server, portal_sign_in_attempts=3)
    with TestClient(create_app(settings, clock), base_url="https://localhost") as client:
        token = csrf_of(client.get("/sign-in").text)

        def attempt() -> int:
            form = {"username": "pat", "password": "x", "csrf": token}
            return client.post("/sign-in", data=form).status_code

        assert [attempt() for _ in range(4)] == [503, 503, 503, 429]
        clock.advance(30)
        assert attempt() == 429  # still within the minute
        clock.advance(31)
        assert attempt() == 503  # let through again (to a service that is not there)


def test_unknown_pages_and_dev_pages_are_friendly_404s_unless_enabled(portal):
    for path in ("/no/such/page", "/dev/mail"):
        page = portal.get(path)
        assert page.status_code == 404
        assert "Page not found" in page.text


def test_a_user_page_without_a_session_leads_to_sign_in(portal):
    for path in ("/home", "/agreement", "/security-info/app/qr", "/password/new", "/console"):
        answer = portal.get(path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"] in ("/sign-in", "/console/sign-in")


def test_sessions_end_after_idle_and_absolute_timeouts_and_rotate_at_sign_in():
    clock = ManualClock()
    store = SessionStore(idle_seconds=0.05, absolute_seconds=10, clock=clock)
    session = store.new()
    session.username = "pat"
    assert store.get(session.id) == (session, False)
    clock.advance(0.1)
    assert store.get(session.id) == (None, True)  # timed out, and says so

    store = SessionStore(idle_seconds=10, absolute_seconds=0.05, clock=clock)
    session = store.new()
    clock.advance(0.1)
    assert store.get(session.id)[0] is None

    store = SessionStore(idle_seconds=10, absolute_seconds=10)
    before = store.new()
    after = store.rotate(before)
    assert after.id != before.id and after.csrf != before.csrf
    assert store.get(before.id)[0] is None


def test_the_dev_pages_show_the_caught_mail_and_the_phone_s_texts(nats_server, settings_factory):
    from rekey.stack.ports import free_port
    from rekey.stack.twilio_sim import TwilioSim
    from services.verification.telephony import Outgoing, Telephony

    settings = settings_factory(nats_server, portal_dev_pages=True)
    sim = TwilioSim(Path(settings.data_dir) / "twilio", account_sid="AC" + "1" * 32,
                    auth_token="sim-token", port=free_port())
    with sim:
        sending = settings.model_copy(update={
            "twilio_api_url": sim.url, "twilio_account_sid": "AC" + "1" * 32,
            "twilio_auth_token": SecretStr("sim-token"),
        })
        Telephony(sending).send(Outgoing(
            username="jane", challenge_id="c-1", method_id="m-1", channel="sms",
            to="+15085550142", masked_to="+1 ••• ••• 0142", body="123456 is your code",
        ))
    with TestClient(create_app(settings), base_url="https://localhost") as client:
        page = client.get("/dev/phone")
        assert page.status_code == 200
        assert "+15085550142" in page.text
        assert "123456 is your code" in page.text
        assert client.get("/dev/mail").status_code == 200
