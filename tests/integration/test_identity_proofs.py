"""Identity proofs the system runs, end to end over the real bus, on both stores: a code mailed
to the address on file, the manager's signed link, a call-back to the phone on file (through
the local Twilio server), and an agent's ID check; approval waits for the points policy."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from shared.caught import (
    latest_call_to,
    latest_mail_to,
    latest_manager_link,
    latest_proof_code,
    shows_code,
)
from shared.errors import InvalidRequest, NotAllowed
from tests.integration.conftest import (
    USER,
    USER_EMAIL,
    System,
    eventually,
    from_the_web_form,
    start_all,
)

MANAGER = "pat.boss@example.org"
PHONE = "+15085550142"


async def request(system: System, username: str = USER, email: str = USER_EMAIL) -> str:
    with from_the_web_form():
        ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=email,
                                   username=username, reason="lost my phone", channel="web")
    return str(ticket["ticket_number"])


async def register(system: System, username: str, **facts) -> None:
    await system.call("credentials", "register_account", username=username,
                      email=f"{username.split('@')[0]}@example.org", display_name="Someone",
                      principal=system.operator(), **facts)
    await eventually(lambda: system._ticketing_knows(username))


async def start_manager_proof(system: System, username: str = "sam@masspasrr.org"
                              ) -> tuple[str, str]:
    """A request for an account with a manager on file, the manager's proof started: the ticket
    number and the token of the link mailed to the manager."""
    await register(system, username, manager_email=MANAGER)
    number = await request(system, username, f"{username.split('@')[0]}@example.org")
    await system.call("ticketing", "start_proof", ticket=number, kind="manager_approval",
                      principal=system.principal())
    link = await eventually(lambda: latest_manager_link(system.mail.folder, number))
    assert latest_mail_to(system.mail.folder, MANAGER, number) is not None
    return number, urlsplit(link).path.rsplit("/", 1)[1]


async def show(system: System, number: str) -> dict:
    return await system.call("ticketing", "show", ticket=number, principal=system.principal())


async def test_a_code_mailed_to_the_address_on_file_and_an_id_check_meet_the_ordinary_policy(
    system: System,
):
    await start_all(system)
    await system.provision()
    number = await request(system)
    before = await show(system, number)
    assert before["policy"] == {**before["policy"], "points": 0, "needed": 2, "met": False}
    assert "approve" not in before["next_actions"]
    assert {p["kind"] for p in before["startable_proofs"]} == {"email_code"}

    started = await system.call("ticketing", "start_proof", ticket=number, kind="email_code",
                                principal=system.principal())
    mail = await eventually(  # the code's mail (the request's acknowledgement also names the ticket)
        lambda: latest_mail_to(system.mail.folder, USER_EMAIL, f"{number}: your help-desk code"))
    code = latest_proof_code(system.mail.folder, number)
    assert code and code in mail.body
    with pytest.raises(InvalidRequest, match="not the one we sent"):
        await system.call("ticketing", "answer_proof_code", ticket=number, code="000000"
                          if code != "000000" else "111111", proof_id=started["proof_id"],
                          principal=system.principal())
    after_code = await system.call("ticketing", "answer_proof_code", ticket=number, code=code,
                                   proof_id=started["proof_id"], principal=system.principal())
    assert after_code["policy"]["points"] == 0  # a mailed code never counts alone
    with pytest.raises(NotAllowed, match="Needs 2 more points"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())

    proven = await system.call("ticketing", "attest_id_check", ticket=number,
                               note="passport checked at the desk", principal=system.principal())
    assert proven["policy"]["points"] == 2 and proven["policy"]["met"] is True
    assert "approve" in proven["next_actions"]
    approved = await system.call("ticketing", "approve", ticket=number,
                                 principal=system.principal())
    assert approved["state"] == "approved"

    events = [e for e in system.app("ticketing").envelopes() if e.correlation_id]
    names = [e.name for e in events]
    assert names.count("ProofSucceeded") == 2 and "ProofCodeRefused" in names
    [started_event] = [e for e in events if e.name == "ProofStarted"]
    assert started_event.body["destination"] == "j•••@example.org"
    assert started_event.body["agent"] == "agent.smith"
    assert not shows_code(json.dumps([e.model_dump(mode="json") for e in events]), code)
    assert not shows_code(json.dumps(await show(system, number)), code)


async def test_the_manager_on_file_approves_through_the_signed_link(system: System):
    await start_all(system)
    await system.provision()
    number, token = await start_manager_proof(system)
    shown = await system.call("ticketing", "manager_request", token=token)
    assert shown["username"] == "sam@masspasrr.org" and shown["ticket_number"] == number
    await system.call("ticketing", "manager_decide", token=token, approve=True)

    ticket = await show(system, number)
    [proof] = ticket["proofs"]
    assert proof["state"] == "succeeded" and "p•••@example.org" in proof["evidence"]
    assert ticket["policy"]["met"] is True
    approved = await system.call("ticketing", "approve", ticket=number,
                                 principal=system.principal())
    assert approved["state"] == "approved"


async def test_the_call_back_goes_to_the_phone_on_file_and_pressing_pound_proves(
    phone_system: System,
):
    system = phone_system
    await start_all(system)
    await system.provision()
    await register(system, "cfo@masspasrr.org", phone=PHONE, privileged=True)
    number = await request(system, "cfo@masspasrr.org", "cfo@example.org")

    started = await system.call("ticketing", "start_proof", ticket=number, kind="call_back",
                                principal=system.principal())
    assert started["privileged"] is True and started["policy"]["needed"] == 3

    async def proven() -> bool:
        ticket = await show(system, number)
        return ticket["proofs"][0]["state"] == "succeeded"

    await eventually(proven, what="the call-back to be answered")
    call = latest_call_to(system.twilio.folder, PHONE)
    assert call.pressed == "#"
    assert any("help desk" in said for said in call.spoken)
    ticket = await show(system, number)
    assert ticket["policy"]["points"] == 2  # a privileged account needs 3
    with pytest.raises(NotAllowed, match="Needs 1 more point"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    await system.call("ticketing", "attest_id_check", ticket=number, note="badge photo matched",
                      principal=system.principal())
    approved = await system.call("ticketing", "approve", ticket=number,
                                 principal=system.principal())
    assert approved["state"] == "awaiting_second_approval"  # privileged: four eyes by default
    names = system.event_names("verification")
    assert "CallBackAnswered" in names
    published = json.dumps([e.model_dump(mode="json") for e in system.app("verification").envelopes()])
    assert PHONE not in published and "5550142" not in published
