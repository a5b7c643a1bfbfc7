"""A reset ends what was signed in before it, everywhere: a portal session, a sign-in token at
any service, an agent's principal. And the cancel window holds: a privileged reset does not
take effect before it ends, and its cancel link is neither forgeable nor reusable."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from rekey.stack.agents import AuthenticatorApp
from services.portal.app import create_app
from shared.clock import ManualClock
from shared.errors import AuthenticationFailed, Conflict, NotAllowed
from shared.signing_keys import own_key
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    USER,
    System,
    eventually,
    start_all,
)
from tests.integration.test_cancel_window import (
    AGENT_EMAIL,
    SECOND,
    THIRD,
    cancel_link,
    more_agents,
    request_for,
    scheduled_reset_of_an_agent,
)

pytestmark = pytest.mark.security

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PLAIN = "plain.user@masspasrr.org"
PLAIN_PASSWORD = "a long user passphrase!"


def positions(system: System) -> dict[str, int]:
    return {name: system.app(name).max_notification_id() for name in system.runtimes}


async def reset_took_effect_everywhere(system: System, username: str) -> None:
    """Every service has learnt of the reset (each from the events it consumes)."""
    await eventually(lambda: all(system.app(name).last_reset(username) is not None
                                 for name in system.runtimes),
                     what=f"every service to learn of {username}'s reset")


async def reset_settled(system: System, username: str, number: str) -> None:
    """The reset took effect everywhere, its mails are sent and recorded, and every relay and
    consumer has caught up: nothing more will be recorded by itself. (Without the last, an
    event ticketing consumed late was once recorded between a test's "before" and "after".)"""
    await reset_took_effect_everywhere(system, username)
    credentials, ticketing = system.app("credentials"), system.app("ticketing")
    await eventually(lambda: ticketing.ticket(number).delivery == "sent"
                     and not credentials._existing(username).pending_notices,
                     what="the reset's mails to be sent and recorded")
    await eventually(system.caught_up, what="every relay and consumer to catch up")


async def start_all_on(system: System, clock: ManualClock) -> None:
    for name in ("credentials", "ticketing", "verification", "consent"):
        await system.start(name, clock=clock)


async def test_a_token_issued_before_the_reset_is_refused_everywhere(system: System) -> None:
    clock = ManualClock()
    await start_all_on(system, clock)
    await system.provision()
    keys = all_issuers(system.settings, clock)
    password = issue_token(keys, USER, "password")
    mfa = issue_token(keys, USER, "mfa")
    assert (await system.call("verification", "status", username=USER, token=password))
    await system.call("credentials", "session_check", username=USER, token=password)

    clock.advance(60)
    await reset_settled(system, USER, await system.approved_ticket())
    before = positions(system)
    for service, command, payload in (
        ("verification", "status", {"token": password}),
        ("verification", "start_app_registration", {"token": password}),
        ("consent", "present", {"token": mfa}),
        ("credentials", "session_check", {"token": password}),
    ):
        with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
            await system.call(service, command, username=USER, **payload)
    assert positions(system) == before  # nothing recorded

    clock.advance(60)  # a sign-in after the reset counts again
    fresh = issue_token(keys, USER, "password")
    assert (await system.call("verification", "status", username=USER, token=fresh))["must_enroll"]


async def test_an_agent_principal_issued_before_their_own_reset_is_refused(
    system: System,
) -> None:
    clock = ManualClock()
    await start_all_on(system, clock)
    system.settings.cancel_window_privileged_minutes = 0
    await system.provision()
    await more_agents(system)
    old = system.principal(AGENT)
    waiting = await request_for(system, USER, "someone@example.org")
    clock.advance(60)
    number = await request_for(system, AGENT, AGENT_EMAIL)
    await system.call("ticketing", "approve", ticket=number, principal=system.principal(SECOND))
    await system.call("ticketing", "approve", ticket=number, principal=system.principal(THIRD))
    await reset_settled(system, AGENT, number)

    before = positions(system)
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        await system.call("ticketing", "approve", ticket=waiting, principal=old)
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        await system.call("ticketing", "list", state="open", principal=old)
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        await system.call("credentials", "unlock", username=USER, principal=old)
    with pytest.raises(AuthenticationFailed, match="reset after you signed in"):
        await system.call("credentials", "session_check", username=AGENT, principal=old)
    assert positions(system) == before


async def cancel_link_sent(system: System) -> str:
    """The cancel link, once mailed and its sending recorded: nothing more is recorded by itself."""
    def sent() -> str | None:
        pending = system.app("credentials")._existing(AGENT).pending_notices
        return None if pending else cancel_link(system, AGENT_EMAIL)

    return await eventually(sent, what="the cancel link mailed and its sending recorded")


async def test_a_privileged_reset_does_not_take_effect_before_the_window(system: System) -> None:
    clock, number, decided = await scheduled_reset_of_an_agent(system)
    await system.start("verification", clock=clock)
    assert decided["state"] == "reset_scheduled"
    await cancel_link_sent(system)
    clock.advance(60 * 60 - 1)
    before = positions(system)
    # Nobody can hurry it: the timer, a third approval, the approving agents again.
    assert await asyncio.to_thread(system.app("ticketing").take_effect_due) == []
    for agent in (SECOND, THIRD, "agent.smith"):
        with pytest.raises((Conflict, NotAllowed)):
            await system.call("ticketing", "approve", ticket=number,
                              principal=system.principal(agent))
    assert positions(system) == before
    assert "ResetApproved" not in system.event_names("ticketing")
    assert "PasswordIssued" not in system.event_names("credentials")
    assert "MethodsRevoked" not in system.event_names("verification")
    # The old password still signs in: nothing was reset.
    signed = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    assert signed["must_change_password"] is False


async def test_a_cancel_link_cannot_be_used_twice_or_forged(system: System) -> None:
    clock, _, _ = await scheduled_reset_of_an_agent(system)
    token = await cancel_link_sent(system)
    claims = jwt.decode(token, options={"verify_signature": False})
    keys = Path(system.settings.nats_keys_dir)
    forged = [
        jwt.encode(claims, own_key(keys, identity), algorithm="EdDSA")  # the wrong key
        for identity in ("portal", "ticketing", "verification")
    ]
    header, body, signature = token.split(".")
    forged += [f"{header}.{body}.{signature[::-1]}", "not-a-link", token[:-2]]
    # A password token credentials genuinely signed is not a cancel link.
    forged.append(issue_token(all_issuers(system.settings, clock), AGENT, "password"))
    before = positions(system)
    for link in forged:
        with pytest.raises(AuthenticationFailed, match="cancel link is not valid"):
            await system.call("ticketing", "cancel_reset", token=link)
    assert positions(system) == before

    await system.call("ticketing", "cancel_reset", token=token)
    after_first = positions(system)
    with pytest.raises(Conflict, match="already cancelled"):
        await system.call("ticketing", "cancel_reset", token=token)
    assert positions(system) == after_first
    assert system.event_names("ticketing").count("ResetCancelled") == 1


# --- the portal ------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def browsers(system: System, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One portal in this process (its own bus identity), and ``count`` browsers on it, each
    keeping its own cookies."""
    app = create_app(system.settings)
    transport = httpx.ASGITransport(app=app)
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="https://localhost"))
            for _ in range(count)]
        try:
            yield clients
        finally:
            await app.state.portal.close()


async def signed_in(client: httpx.AsyncClient, path: str, username: str, password: str) -> None:
    page = await client.get(path)
    token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    answer = await client.post(path, data={"username": username, "password": password,
                                           "csrf": token})
    assert answer.status_code in (200, 303), answer.text


async def console_signed_in(client: httpx.AsyncClient, app: AuthenticatorApp) -> None:
    """An agent signs in at the console: the password, then a code from their app."""
    await signed_in(client, "/console/sign-in", AGENT, AGENT_PASSWORD)
    page = await client.get("/console/sign-in/code")
    token = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    answer = await client.post("/console/sign-in/code",
                               data={"code": await app.next_code(), "csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/console", answer.text


async def test_a_session_signed_in_before_the_reset_is_ended(system: System) -> None:
    await start_all(system)
    system.settings.cancel_window_privileged_minutes = 0
    await system.provision()
    authenticator = await system.invited_agent()
    await more_agents(system)
    await system.call("credentials", "register_account", username=PLAIN, email="p@example.org",
                      display_name="P", password=PLAIN_PASSWORD, principal=system.operator())
    await eventually(lambda: system._ticketing_knows(PLAIN))
    async with browsers(system, 2) as (agent, user):
        await console_signed_in(agent, authenticator)
        await signed_in(user, "/sign-in", PLAIN, PLAIN_PASSWORD)
        assert "Reset tickets" in (await agent.get("/console")).text
        enrolling = await user.get("/", follow_redirects=True)
        assert enrolling.status_code == 200 and "/security-info" in str(enrolling.url)

        for name, email, approvers in ((PLAIN, "p@example.org", (SECOND,)),
                                       (AGENT, AGENT_EMAIL, (SECOND, THIRD))):
            number = await request_for(system, name, email)
            for approver in approvers:
                await system.call("ticketing", "approve", ticket=number,
                                  principal=system.principal(approver))
            await reset_took_effect_everywhere(system, name)

        for client, path in ((agent, "/console"), (user, "/security-info")):  # as they were
            ended = await client.get(path)
            assert ended.status_code == 401
            assert "Your account was reset after you signed in. Sign in again." in ended.text
            again = await client.get(path, follow_redirects=False)  # no session any more
            assert again.status_code == 303 and "sign-in" in again.headers["location"]


async def test_a_sign_in_that_merely_ran_out_ends_that_session_alone(system: System) -> None:
    """Not a reset: an agent's principal expiring ends the session that holds it, not the
    agent's other, newer sessions (only a reset ends them all)."""
    clock = ManualClock()
    await start_all_on(system, clock)
    await system.provision()
    authenticator = await system.invited_agent()
    async with browsers(system, 2) as (early, late):
        await console_signed_in(early, authenticator)
        clock.advance(40 * 60)
        await console_signed_in(late, authenticator)
        clock.advance(30 * 60)  # the early principal (60 minutes) has run out
        ended = await early.get("/console")
        assert ended.status_code == 401 and "has expired" in ended.text
        assert "Reset tickets" in (await late.get("/console")).text
