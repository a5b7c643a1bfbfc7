"""Security info over the bus: the methods with when each was added and last used, a second
method added, the default changed, a method removed (not the last, not the default), each change
behind a fresh MFA check, recorded, mailed to the address on file and in the user's history."""

from __future__ import annotations

import pyotp
import pytest

from services.verification import totp
from shared.caught import latest_mail_to
from shared.clock import ManualClock
from shared.errors import AuthenticationFailed, Conflict
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, USER_EMAIL, System, eventually


class Jane:
    """The user, on the test's clock: tokens as the services would issue them, her apps."""

    def __init__(self, system: System, clock: ManualClock) -> None:
        self.system, self.clock = system, clock
        self.seeds: dict[str, str] = {}

    def password_token(self) -> str:
        return issue_token(all_issuers(self.system.settings, self.clock), USER, "password")

    def code(self, method_id: str) -> str:
        return pyotp.TOTP(self.seeds[method_id]).at(self.clock.time())

    async def add_app(self, token: str) -> tuple[str, str]:
        """A new authenticator app set up with ``token``: its method id and the MFA token its
        first code earned."""
        started = await self.system.call("verification", "start_app_registration",
                                         username=USER, token=token)
        self.seeds[started["method_id"]] = totp.parse_uri(started["otpauth_uri"]).secret
        verified = await self.system.call("verification", "verify_code", username=USER,
                                          token=token, method_id=started["method_id"],
                                          code=self.code(started["method_id"]))
        return started["method_id"], verified["mfa_token"]

    async def info(self, token: str) -> dict:
        return await self.system.call("verification", "security_info", username=USER, token=token)


async def jane_with_two_apps(system: System) -> tuple[Jane, str, str, str]:
    """Jane with a first app (the default) and a second one: (jane, first, second, mfa token)."""
    clock = ManualClock()
    for name in ("credentials", "ticketing", "consent", "audit"):
        await system.start(name)
    await system.start("verification", clock=clock)
    await system.provision()
    jane = Jane(system, clock)
    first, mfa = await jane.add_app(jane.password_token())
    clock.advance(60)
    second, mfa = await jane.add_app(mfa)
    return jane, first, second, mfa


def notice_mail(system: System, subject: str):
    return latest_mail_to(system.mail.folder, USER_EMAIL, subject)


async def test_security_info_lists_each_method_with_when_it_was_added_and_last_used(
    system: System,
):
    jane, first, second, mfa = await jane_with_two_apps(system)
    info = await jane.info(mfa)
    listed = {m["method_id"]: m for m in info["methods"]}
    assert set(listed) == {first, second}
    assert listed[first]["default"] is True and listed[second]["default"] is False
    assert listed[second]["added"] > listed[first]["added"]
    assert listed[first]["last_used"] is not None
    assert info["fresh"] is True and info["fresh_minutes"] == system.settings.fresh_mfa_minutes


async def test_adding_a_method_is_mailed_to_the_address_on_file(system: System):
    await jane_with_two_apps(system)
    mail = await eventually(lambda: notice_mail(system, "new sign-in method"), what="the notice")
    assert "a new sign-in method was added" in mail.body


async def test_changing_the_default_is_recorded_mailed_and_in_the_history(system: System):
    jane, _first, second, mfa = await jane_with_two_apps(system)
    changed = await system.call("verification", "set_default_method", username=USER,
                                token=mfa, method_id=second)
    assert changed["default_method"] == second
    info = await jane.info(mfa)
    assert [m["method_id"] for m in info["methods"] if m["default"]] == [second]
    mail = await eventually(lambda: notice_mail(system, "default sign-in method"),
                            what="the notice")
    assert "your default sign-in method was changed" in mail.body
    history = await system.call("audit", "history", username=USER, principal=system.operator())
    assert "DefaultMethodChanged" in str(history)


async def test_removing_a_method_is_recorded_mailed_and_shreds_its_seed(system: System):
    jane, first, second, mfa = await jane_with_two_apps(system)
    removed = await system.call("verification", "remove_method", username=USER, token=mfa,
                                method_id=second)
    assert removed["removed"] == second
    assert [m["method_id"] for m in (await jane.info(mfa))["methods"]] == [first]
    assert "MethodRemoved" in [e.name for e in system.app("verification").history(USER)]
    mail = await eventually(lambda: notice_mail(system, "was removed"), what="the notice")
    assert "a sign-in method was removed" in mail.body
    app = system.app("verification")
    assert app.vault.get(f"totp:{app._enrollment(USER).id}:{second}") is None


async def test_the_last_method_is_not_removed(system: System):
    _jane, first, second, mfa = await jane_with_two_apps(system)
    await system.call("verification", "remove_method", username=USER, token=mfa, method_id=second)
    before = system.app("verification").max_notification_id()
    with pytest.raises(Conflict, match="only sign-in method"):
        await system.call("verification", "remove_method", username=USER, token=mfa,
                          method_id=first)
    assert system.app("verification").max_notification_id() == before


async def test_the_default_is_removed_only_once_another_method_is_the_default(system: System):
    jane, first, second, mfa = await jane_with_two_apps(system)
    with pytest.raises(Conflict, match="Make another method the default first"):
        await system.call("verification", "remove_method", username=USER, token=mfa,
                          method_id=first)
    await system.call("verification", "set_default_method", username=USER, token=mfa,
                      method_id=second)
    await system.call("verification", "remove_method", username=USER, token=mfa, method_id=first)
    assert [m["method_id"] for m in (await jane.info(mfa))["methods"]] == [second]


async def test_a_check_older_than_the_fresh_window_must_be_repeated_before_a_change(
    system: System,
):
    jane, first, second, mfa = await jane_with_two_apps(system)
    jane.clock.advance(system.settings.fresh_mfa_minutes * 60 + 1)
    assert (await jane.info(mfa))["fresh"] is False
    with pytest.raises(AuthenticationFailed, match="confirm it's you"):
        await system.call("verification", "set_default_method", username=USER, token=mfa,
                          method_id=second)
    # the default method is challenged again with the same sign-in, and its code earns a
    # fresh check that may change the methods
    await system.call("verification", "start_challenge", username=USER, token=mfa)
    again = await system.call("verification", "verify_code", username=USER, token=mfa,
                              method_id=first, code=jane.code(first))
    await system.call("verification", "set_default_method", username=USER,
                      token=again["mfa_token"], method_id=second)
