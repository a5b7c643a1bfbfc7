"""Push bombing: an attacker who knows the password floods the user's phone with sign-in
requests until a tired person approves one (MFA fatigue, as in the Uber and Cisco breaches).
Pushes are limited per user and per device; the real user's codes keep working meanwhile."""

from __future__ import annotations

from pathlib import Path

import pyotp
import pytest

from shared.clock import ManualClock
from shared.errors import RateLimited
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, start_verification
from tests.integration.test_push_number_matching import registered_with_push

ATTEMPTS = 40
REFUSED = "Too many sign-in requests were sent to your app. Wait 15 minutes"


async def registered_app(system: System, tmp_path: Path, clock: ManualClock):
    """The user's app, registered by approving its first push (which counts as one push)."""
    await start_verification(system, clock)
    token, registration, phone, account = await registered_with_push(system, tmp_path)
    shown = await system.call("verification", "start_push", username=USER, token=token)
    await phone.approve(shown["challenge_id"], shown["number"])
    return token, registration["method_id"], account


def pushes_issued(system: System) -> int:
    return sum(1 for e in system.app("verification").envelopes()
               if e.name == "ChallengeIssued" and e.body.get("kind") == "push")


async def bomb(system: System, token: str) -> tuple[int, list[RateLimited]]:
    """The attacker's flood of sign-ins: how many pushes went out, and the refusals."""
    sent, refusals = 0, []
    for _ in range(ATTEMPTS):
        try:
            await system.call("verification", "start_challenge", username=USER, token=token)
            sent += 1
        except RateLimited as refused:
            refusals.append(refused)
    return sent, refusals


async def test_push_bombing_is_refused_after_the_per_user_limit_and_records_nothing(
    system: System, tmp_path: Path
):
    clock = ManualClock()
    token, method_id, account = await registered_app(system, tmp_path, clock)
    app = system.app("verification")
    assert pushes_issued(system) == 1

    sent, refusals = await bomb(system, token)

    limit = system.settings.push_limit_per_user
    assert 1 + sent == limit  # the registration's push counts too
    assert len(refusals) == ATTEMPTS - sent
    assert {r.code for r in refusals} == {"rate_limited"}
    assert all(REFUSED in str(r) for r in refusals)
    # A refusal records nothing: no challenge, no event of any kind.
    assert pushes_issued(system) == limit
    before = app.max_notification_id()
    with pytest.raises(RateLimited):
        await system.call("verification", "start_push", username=USER, token=token)
    assert app.max_notification_id() == before

    # The real user is not locked out: the app's code still signs in while pushes are limited.
    step = await system.call("verification", "start_challenge", username=USER, token=token,
                             channel="app")
    assert step["takes_code"] is True
    verified = await system.call("verification", "verify_code", username=USER, token=token,
                                 method_id=method_id, code=pyotp.TOTP(account.secret).now())
    assert verified["verified"] is True

    # The window slides: once it has passed, a push goes out again.
    clock.advance(system.settings.push_limit_window_minutes * 60 + 1)
    fresh = issue_token(all_issuers(system.settings, clock), USER, "password")
    shown = await system.call("verification", "start_push", username=USER, token=fresh)
    assert shown["kind"] == "push"


async def test_push_bombing_one_device_is_refused_even_when_the_user_limit_is_higher(
    system: System, tmp_path: Path
):
    system.settings.push_limit_per_user = ATTEMPTS + 10
    token, _, _ = await registered_app(system, tmp_path, ManualClock())

    sent, refusals = await bomb(system, token)

    assert 1 + sent == system.settings.push_limit_per_device == 5
    assert refusals and all(r.code == "rate_limited" and REFUSED in str(r) for r in refusals)
    assert pushes_issued(system) == 5
