"""Abuse of the public sign-in and request pages, against a running system (real nats-server,
both stores; the portal in-process behind a trusted proxy): a stranger's wrong passwords slow
an account down but never lock its owner out, one address cannot guess its way through many
accounts, and a forged X-Forwarded-For buys nothing."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client import REGISTRY

from services.portal.app import create_app
from shared.clock import ManualClock
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    System,
    provisioned_on_a_manual_clock,
    start_all,
)
from tests.integration.test_signin_delays import answer

PROXY = "10.0.0.5"
ATTACKER = "198.51.100.4"
OFFICE = "203.0.113.7"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
GUESSES_AT_ONCE = 12


async def test_wrong_passwords_from_an_attacker_do_not_lock_out_the_real_user(system: System):
    system.settings.signin_delay_max_seconds = 30
    clock = await provisioned_on_a_manual_clock(system)
    answers = []
    for i in range(40):  # from 40 addresses, so no per-address limit helps the owner
        answers.append((await answer(system, AGENT, f"guess {i}", f"198.51.100.{i + 10}"))[0])
        clock.advance(2)
    # Guessing is slowed: most guesses were answered "wait" and never checked.
    checked = system.event_names("credentials").count("SignInFailed")
    assert answers.count("rate_limited") > 20 and checked == answers.count("authentication_failed")
    assert checked < 20

    code, message = await answer(system, AGENT, AGENT_PASSWORD, OFFICE)
    if code == "rate_limited":  # the owner is told how long to wait, and then gets in
        seconds = int(re.search(r"wait (\d+) second", message).group(1))
        assert seconds <= 30
        clock.advance(seconds)
        code, _ = await answer(system, AGENT, AGENT_PASSWORD, OFFICE)
    assert code == "ok"
    names = system.event_names("credentials")
    assert "AccountLocked" not in names and names[-1] == "SignInSucceeded"
    # Each checked attempt records where it came from: the guesses, and the owner's sign-in.
    envelopes = list(system.app("credentials").envelopes())
    assert {e.body["client"]["network"] for e in envelopes if e.name == "SignInFailed"} == {
        "198.51.100.0/24"
    }
    assert envelopes[-1].body["client"]["address"] == OFFICE
    assert system.app("credentials").account_status(AGENT)["failed_sign_ins"] == 0


@contextlib.asynccontextmanager
async def portal_for(system: System, **settings: Any) -> AsyncIterator[Any]:
    """The portal in-process on the system's bus; ``browser(peer)`` is a browser whose TCP
    connections come from ``peer`` (the proxy, or a client reaching the portal directly)."""
    app = create_app(system.settings.model_copy(update=settings), ManualClock())
    clients: list[httpx.AsyncClient] = []

    def browser(peer: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(peer, 40000))
        client = httpx.AsyncClient(transport=transport, base_url="https://localhost")
        clients.append(client)
        return client

    try:
        yield browser
    finally:
        for client in clients:
            await client.aclose()
        await app.state.portal.close()


async def post_form(browser: httpx.AsyncClient, path: str, form: dict[str, str],
                    forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    page = await browser.get(path, headers=headers)
    token = CSRF.search(page.text).group(1)
    return await browser.post(path, data={**form, "csrf": token}, headers=headers)


async def sign_in(browser: httpx.AsyncClient, username: str, password: str,
                  forwarded_for: str | None = None) -> httpx.Response:
    return await post_form(browser, "/sign-in", {"username": username, "password": password},
                           forwarded_for)


async def test_one_address_guessing_many_accounts_is_slowed(system: System):
    await start_all(system)
    await system.provision()
    async with portal_for(system, trusted_proxies="10.0.0.0/24",
                          portal_sign_in_attempts=5) as browser:
        attacker, office = browser(PROXY), browser(PROXY)  # both behind the TLS proxy
        statuses = [
            (await sign_in(attacker, f"user{i}@masspasrr.org", "Summer2026!", ATTACKER)).status_code
            for i in range(8)
        ]
        assert statuses == [401] * 5 + [429] * 3
        # The office behind the same proxy is another client: its user signs in.
        signed = await sign_in(office, AGENT, AGENT_PASSWORD, OFFICE)
        assert signed.status_code == 303
    # Unknown usernames record nothing (their delays live in memory), and the office's
    # sign-in was the only one checked against an account.
    assert system.event_names("credentials").count("SignInFailed") == 0
    assert system.event_names("credentials").count("SignInSucceeded") == 1


async def test_a_forged_x_forwarded_for_from_an_untrusted_peer_is_ignored(system: System):
    await start_all(system)
    await system.provision()
    async with portal_for(system, trusted_proxies="10.0.0.0/24",
                          portal_sign_in_attempts=3) as browser:
        direct = browser(ATTACKER)  # not a proxy: its X-Forwarded-For is its own invention
        statuses = [
            (await sign_in(direct, f"user{i}@masspasrr.org", "guess", f"10.0.0.{i + 20}")).status_code
            for i in range(5)
        ]
        assert statuses == [401] * 3 + [429] * 2  # a new forged address each time: no escape

        forged = await post_form(browser(ATTACKER), "/request-reset", {
            "name": "Jane Doe", "email": "jane.doe@example.org",
            "username": "jane.doe@masspasrr.org", "reason": "new phone",
        }, forwarded_for=OFFICE)
        assert forged.status_code == 200
        proxied = await post_form(browser(PROXY), "/request-reset", {
            "name": "Agent Smith", "email": "smith@example.org", "username": AGENT,
            "reason": "new phone",
        }, forwarded_for=f"6.6.6.6, {OFFICE}")
        assert proxied.status_code == 200
    recorded = [e.body["client"] for e in system.app("ticketing").envelopes()
                if e.name == "ResetRequested"]
    assert [c["address"] for c in recorded] == [ATTACKER, OFFICE]
    assert recorded[1]["network"] == "203.0.113.0/24"


async def test_guesses_sent_side_by_side_do_not_tell_a_real_account_from_an_unknown_one(
    system: System,
):
    """Requests are answered side by side. Wrong guesses racing on a real account conflict
    on its version and run again, so those after the delay's threshold are told to wait; an
    unknown username's attempts must be answered the same, or the answers name real accounts."""
    system.settings.signin_delay_after = 3
    await provisioned_on_a_manual_clock(system)

    async def at_once(username: str) -> list[str]:
        answers = await asyncio.gather(*(answer(system, username, f"guess {i}")
                                         for i in range(6)))
        return sorted(code for code, _ in answers)

    real, ghost = await at_once(AGENT), await at_once("ghost@masspasrr.org")

    assert real == ghost == ["authentication_failed"] * 3 + ["rate_limited"] * 3
    assert system.event_names("credentials").count("SignInFailed") == 3


async def test_guesses_racing_on_one_account_cost_one_verification_each(system: System):
    """An attacker sends guesses at one account side by side. Each guess's failure is an event
    on the account, so the guesses race to save it and the losers run again; a guess must
    still be verified once. It was verified again in every attempt: up to ten argon2id
    verifications a guess, CPU an attacker could multiply at will."""
    system.settings.signin_delay_after = 100  # every guess is checked: delays are not under test
    await provisioned_on_a_manual_clock(system)
    before = _argon2_verifications()

    answers = await asyncio.gather(*(answer(system, AGENT, f"guess {i}", f"198.51.100.{i + 10}")
                                     for i in range(GUESSES_AT_ONCE)))

    assert [code for code, _ in answers] == ["authentication_failed"] * GUESSES_AT_ONCE
    assert _argon2_verifications() - before == GUESSES_AT_ONCE
    assert system.event_names("credentials").count("SignInFailed") == GUESSES_AT_ONCE


def _argon2_verifications() -> float:
    return REGISTRY.get_sample_value("rekey_argon2_seconds_count", {"operation": "verify"}) or 0.0
