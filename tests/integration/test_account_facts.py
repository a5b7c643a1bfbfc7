"""Facts on file for identity proofs: a phone for call-backs, a manager, a privileged flag.

Clear values stay in credentials' store; the bus sees masked forms, digests and copies sealed
for the services that act on them (shared/sealed.py)."""

from __future__ import annotations

import json

import pytest
from cryptography.exceptions import InvalidTag

from services.ticketing.domain import AccountFile
from shared.errors import InvalidRequest
from shared.sealed import open_fact
from tests.integration.conftest import AGENT, USER, System, eventually, start_all

PHONE = "+1 508 555 0142"
E164 = "+15085550142"
MANAGER = "pat.boss@example.org"


async def test_an_account_registers_with_its_phone_manager_and_privilege_on_file(system: System):
    await start_all(system)
    await system.provision()
    await system.call("credentials", "register_account", username="cfo@masspasrr.org",
                      email="cfo@example.org", display_name="The CFO", phone=PHONE,
                      manager_email=MANAGER, privileged=True, principal=system.operator())
    await eventually(lambda: system._ticketing_knows("cfo@masspasrr.org"))

    registered = next(e for e in system.app("credentials").envelopes()
                      if e.name == "AccountRegistered" and e.subject == "cfo@masspasrr.org")
    published = json.dumps(registered.body)
    assert E164 not in published and "5550142" not in published
    assert MANAGER not in published
    assert registered.body["phone"] == "+1 ••• ••• 0142"
    assert registered.body["manager_email"] == "p•••@example.org"
    assert registered.body["privileged"] is True
    settings = system.settings
    assert open_fact(settings, "cfo@masspasrr.org", "phone", registered.body["phone_sealed"]) == E164
    with pytest.raises(InvalidTag):  # sealed for this account and this fact only
        open_fact(settings, USER, "phone", registered.body["phone_sealed"])

    ticketing = system.app("ticketing")
    cfo = ticketing.repository.get(AccountFile.id_for("cfo@masspasrr.org"))
    agent = ticketing.repository.get(AccountFile.id_for(AGENT))
    user = ticketing.repository.get(AccountFile.id_for(USER))
    assert (cfo.privileged, agent.privileged, user.privileged) == (True, True, False)
    assert cfo.on_file["phone"] == "+1 ••• ••• 0142"


async def test_a_premium_rate_phone_is_not_taken_on_file(system: System):
    await start_all(system)
    with pytest.raises(InvalidRequest, match="can't receive"):
        await system.call("credentials", "register_account", username="x@masspasrr.org",
                          email="x@example.org", display_name="X", phone="+1 900 555 0100",
                          principal=system.operator())
    assert "AccountRegistered" not in system.event_names("credentials")
