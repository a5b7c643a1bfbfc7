"""Sign-in over the bus: throttling, lockout, unlock by time or by an agent, equal answers."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.errors import AuthenticationFailed, Conflict, Locked, NotAllowed, RekeyError
from tests.integration.conftest import AGENT, AGENT_PASSWORD, USER, System, start_all

GHOST = "ghost@masspasrr.org"


async def answer(system: System, username: str, password: str) -> tuple[str, str]:
    try:
        await system.call("credentials", "sign_in", username=username, password=password)
    except RekeyError as exc:
        return exc.code, exc.message
    return "ok", ""


async def test_failures_lock_a_real_account_and_an_unknown_username_alike(system: System):
    system.settings.signin_lock_after = 3
    await start_all(system)
    await system.provision()
    real = [await answer(system, AGENT, "wrong password") for _ in range(4)]
    ghost = [await answer(system, GHOST, "wrong password") for _ in range(4)]
    assert real == ghost
    assert [code for code, _ in real] == ["authentication_failed"] * 3 + ["locked"]
    # Locked means locked: even the right password is refused, with the same answer.
    assert await answer(system, AGENT, AGENT_PASSWORD) == real[-1]
    names = system.event_names("credentials")
    assert names.count("AccountLocked") == 1
    status = system.app("credentials").account_status(AGENT)
    assert status["locked"] and status["locked_until"]


async def test_unknown_usernames_take_about_as_long_as_wrong_passwords(system: System):
    await start_all(system)
    await system.provision()

    async def timed(username: str) -> float:
        start = time.perf_counter()
        with pytest.raises(AuthenticationFailed):
            await system.call("credentials", "sign_in", username=username, password="not it")
        return time.perf_counter() - start

    # Alternate, and compare medians: both run one argon2id verification.
    real, ghost = [], []
    for i in range(4):
        real.append(await timed(AGENT if i % 2 else USER))
        ghost.append(await timed(f"ghost{i}@masspasrr.org"))
    real.sort()
    ghost.sort()
    # A dummy hash does the same work; no hash at all would be 10x faster.
    assert ghost[1] > real[1] / 3


async def test_a_lock_ends_by_itself_after_the_set_time(system: System):
    system.settings.signin_lock_after = 2
    system.settings.signin_lock_minutes = 1.5 / 60
    await start_all(system)
    await system.provision()
    for _ in range(2):
        await answer(system, AGENT, "wrong password")
    with pytest.raises(Locked):
        await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    await asyncio.sleep(1.6)
    signed = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    assert signed["must_change_password"] is False


async def test_an_agent_unlocks_an_account_and_the_unlock_is_recorded(system: System):
    system.settings.signin_lock_after = 2
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username="other.agent", email="o@example.org",
                      display_name="Other", role="agent", password=AGENT_PASSWORD + " too")
    for _ in range(2):
        await answer(system, AGENT, "wrong password")
    with pytest.raises(NotAllowed, match="own account"):
        await system.call("credentials", "unlock", username=AGENT, agent=AGENT)
    with pytest.raises(NotAllowed, match="not a help-desk agent"):
        await system.call("credentials", "unlock", username=AGENT, agent=USER)
    status = await system.call("credentials", "unlock", username=AGENT, agent="other.agent",
                               reason="called back; they mistyped")
    assert status["locked"] is False
    signed = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    assert signed["username"] == AGENT
    with pytest.raises(Conflict, match="not locked"):
        await system.call("credentials", "unlock", username=AGENT, agent="other.agent")
    [unlocked] = [e for e in system.app("credentials").envelopes() if e.name == "AccountUnlocked"]
    assert unlocked.actor == "other.agent"
    assert unlocked.body["reason"] == "called back; they mistyped"


async def test_too_many_attempts_are_throttled_for_known_and_unknown_usernames(system: System):
    system.settings.signin_attempts_per_minute = 3
    system.settings.signin_lock_after = 100
    await start_all(system)
    await system.provision()
    real = [(await answer(system, AGENT, "wrong"))[0] for _ in range(4)]
    ghost = [(await answer(system, GHOST, "wrong"))[0] for _ in range(4)]
    assert real == ghost == ["authentication_failed"] * 3 + ["locked"]
    # Throttled attempts are not even checked, so they record nothing.
    assert system.event_names("credentials").count("SignInFailed") == 3


async def test_a_blocklisted_new_password_is_refused_and_changes_nothing(system: System):
    await start_all(system)
    await system.provision()
    before = system.app("credentials").max_notification_id()
    with pytest.raises(RekeyError, match="common or breached"):
        await system.call("credentials", "change_password", username=AGENT,
                          current_password=AGENT_PASSWORD, new_password="password1234567")
    assert system.app("credentials").max_notification_id() == before
