"""Account notices: the address on file hears of a reset, revoked/added methods, a new password."""

from __future__ import annotations

from shared.caught import list_mails
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, start_all
from tests.integration.test_reset_over_the_bus import NEW_PASSWORD, temporary_password


def notices(system: System) -> list:
    return [m for m in list_mails(system.mail.folder) if USER_EMAIL in m.to
            and m.subject.startswith("Account notice")]


async def test_a_reset_and_a_password_change_are_notified_once_each_with_whom_to_call(system: System):
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    temporary = await temporary_password(system)
    await eventually(lambda: any("approved a reset" in m.subject for m in notices(system)),
                     what="the reset notice")
    await system.call("credentials", "change_password", username=USER, current_password=temporary,
                      new_password=NEW_PASSWORD)
    await eventually(lambda: any("password was changed" in m.subject for m in notices(system)),
                     what="the password notice")
    await eventually(lambda: not system.app("credentials")._existing(USER).pending_notices)
    mails = notices(system)
    subjects = [m.subject for m in mails]
    assert len(subjects) == len(set(subjects))  # nothing twice
    for m in mails:
        assert system.settings.helpdesk_contact in m.body
        assert temporary not in m.body and NEW_PASSWORD not in m.body
    # A restart sends nothing again: every intent is recorded as sent.
    await system.stop("credentials")
    await system.start("credentials")
    await system.call("credentials", "account", username=USER)
    assert len(notices(system)) == len(mails)
