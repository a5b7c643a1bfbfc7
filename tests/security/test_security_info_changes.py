"""Security info changes need a fresh MFA check by the user themself: a stolen password, a
session left open past the fresh window, or another user's MFA step changes nothing."""

from __future__ import annotations

import pytest

from shared.errors import AuthenticationFailed
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System
from tests.integration.test_security_info import jane_with_two_apps

pytestmark = pytest.mark.security


async def refused_and_nothing_changed(system: System, command: str, token: str,
                                      **payload: str) -> None:
    app = system.app("verification")
    before = app.max_notification_id()
    with pytest.raises(AuthenticationFailed):
        await system.call("verification", command, username=USER, token=token, **payload)
    assert app.max_notification_id() == before


async def test_a_stolen_password_token_cannot_remove_a_method_without_fresh_mfa(system: System):
    jane, _first, second, _ = await jane_with_two_apps(system)
    await refused_and_nothing_changed(system, "remove_method", jane.password_token(),
                                      method_id=second)


async def test_a_stolen_password_token_cannot_change_the_default_or_add_a_method(system: System):
    jane, _first, second, _ = await jane_with_two_apps(system)
    await refused_and_nothing_changed(system, "set_default_method", jane.password_token(),
                                      method_id=second)
    await refused_and_nothing_changed(system, "start_app_registration", jane.password_token())


async def test_a_session_left_open_past_the_fresh_window_cannot_remove_a_method(system: System):
    jane, _first, second, mfa = await jane_with_two_apps(system)
    jane.clock.advance(system.settings.fresh_mfa_minutes * 60 + 1)
    await refused_and_nothing_changed(system, "remove_method", mfa, method_id=second)
    await refused_and_nothing_changed(system, "start_app_registration", mfa)


async def test_another_users_fresh_mfa_step_cannot_remove_a_method(system: System):
    jane, _first, second, _ = await jane_with_two_apps(system)
    other = issue_token(all_issuers(system.settings, jane.clock), "someone.else@masspasrr.org",
                        "mfa")
    await refused_and_nothing_changed(system, "remove_method", other, method_id=second)

