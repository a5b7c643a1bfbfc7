"""Sign-in over the bus: progressive delays (never a lock), the help desk resetting a delay,
the per-address limit, equal answers for known and unknown usernames."""

from __future__ import annotations

import time

import pytest

from shared.errors import AuthenticationFailed, Conflict, NotAllowed, RateLimited, RekeyError
from tests.integration.conftest import (
    AGENT,
    AGENT_PASSWORD,
    USER,
    System,
    provisioned_on_a_manual_clock,
    start_all,
)

GHOST = "ghost@masspasrr.org"


async def answer(system: System, username: str, password: str,
                 address: str | None = None) -> tuple[str, str]:
    """Credentials' answer to a sign-in (from the web client at ``address``): code, words."""
    client = {"address": address, "user_agent": "tests"} if address else None
    try:
        await system.call("credentials", "sign_in", username=username, password=password,
                          client=client)
    except RekeyError as exc:
        return exc.code, exc.message
    return "ok", ""


async def test_failures_delay_a_real_account_and_an_unknown_username_alike(system: System):
    system.settings.signin_delay_after = 3
    clock = await provisioned_on_a_manual_clock(system)
    real = [await answer(system, AGENT, "wrong password") for _ in range(4)]
    ghost = [await answer(system, GHOST, "wrong password") for _ in range(4)]
    assert real == ghost
    assert [code for code, _ in real] == ["authentication_failed"] * 3 + ["rate_limited"]
    assert "wait 1 second" in real[-1][1]
    # During the delay the right password is not checked either, with the same answer.
    assert await answer(system, AGENT, AGENT_PASSWORD) == real[-1]
    names = system.event_names("credentials")
    assert names.count("SignInFailed") == 3 and "AccountLocked" not in names
    status = system.app("credentials").account_status(AGENT)
    assert status["failed_sign_ins"] == 3 and status["delayed_until"]
    clock.advance(1)
    assert (await answer(system, AGENT, AGENT_PASSWORD))[0] == "ok"


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


async def test_the_delay_grows_with_each_failure_and_the_right_password_works_after_it(
    system: System,
):
    system.settings.signin_delay_after = 2
    system.settings.signin_delay_first_seconds = 1
    system.settings.signin_delay_max_seconds = 4
    clock = await provisioned_on_a_manual_clock(system)
    await answer(system, AGENT, "wrong password")
    waits = []
    for _ in range(5):
        await answer(system, AGENT, "wrong password")
        code, message = await answer(system, AGENT, AGENT_PASSWORD)  # too early: not checked
        assert code == "rate_limited"
        waits.append(message.split("wait ")[1].split(",")[0])
        clock.advance(60)
    assert waits == ["1 second", "2 seconds", "4 seconds", "4 seconds", "4 seconds"]
    signed = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    assert signed["must_change_password"] is False


async def test_an_agent_resets_a_delay_and_the_reset_is_recorded(system: System):
    system.settings.signin_delay_after = 2
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username="other.agent", email="o@example.org",
                      display_name="Other", role="agent", password=AGENT_PASSWORD + " too",
                      principal=system.operator())
    for _ in range(2):
        await answer(system, AGENT, "wrong password")
    with pytest.raises(NotAllowed, match="own account"):
        await system.call("credentials", "unlock", username=AGENT, principal=system.principal())
    with pytest.raises(NotAllowed, match="not a help-desk agent"):
        await system.call("credentials", "unlock", username=AGENT, principal=system.principal(USER))
    status = await system.call("credentials", "unlock", username=AGENT,
                               principal=system.principal("other.agent"),
                               reason="called back; they mistyped")
    assert status["failed_sign_ins"] == 0 and status["delayed_until"] is None
    signed = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD)
    assert signed["username"] == AGENT
    with pytest.raises(Conflict, match="no failed sign-ins"):
        await system.call("credentials", "unlock", username=AGENT, principal=system.principal("other.agent"))
    [unlocked] = [e for e in system.app("credentials").envelopes() if e.name == "AccountUnlocked"]
    assert unlocked.actor == "other.agent"
    assert unlocked.body["reason"] == "called back; they mistyped"


async def test_attempts_from_one_address_are_limited_whatever_the_username(system: System):
    system.settings.signin_attempts_per_address = 3
    await start_all(system)
    await system.provision()
    here = {"address": "203.0.113.7", "user_agent": "tests"}
    codes = []
    for name in (AGENT, GHOST, USER, "another@masspasrr.org"):
        try:
            await system.call("credentials", "sign_in", username=name, password="wrong", client=here)
            codes.append("ok")
        except RekeyError as exc:
            codes.append(exc.code)
    assert codes == ["authentication_failed"] * 3 + ["rate_limited"]
    # Limited attempts are not even checked, so they record nothing; other addresses go on.
    assert system.event_names("credentials").count("SignInFailed") == 2
    with pytest.raises(RateLimited, match="network address"):
        await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD,
                          client=here)
    signed = await system.call("credentials", "sign_in", username=AGENT, password=AGENT_PASSWORD,
                               client={"address": "198.51.100.4"})
    assert signed["username"] == AGENT


async def test_a_blocklisted_new_password_is_refused_and_changes_nothing(system: System):
    await start_all(system)
    await system.provision()
    before = system.app("credentials").max_notification_id()
    with pytest.raises(RekeyError, match="common or breached"):
        await system.call("credentials", "change_password", username=AGENT,
                          current_password=AGENT_PASSWORD, new_password="password1234567")
    assert system.app("credentials").max_notification_id() == before
