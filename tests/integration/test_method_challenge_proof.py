"""The method challenge proof, end to end over the real bus, on both stores: a push to an
authenticator app the user still has. The console shows the agent a number to read to the
person, who types it on their device (the reference authenticator) and approves."""

from __future__ import annotations

from pathlib import Path

import pytest

from rekey.authenticator.app import Authenticator
from shared.errors import NotAllowed
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, from_the_web_form, start_all
from tests.integration.test_push_number_matching import registered_with_push, try_it_out


async def with_surviving_push_method(system: System, tmp_path: Path) -> Authenticator:
    """The user's authenticator app, activated and registered by approving a push, and a
    ticket's view of the account that knows the method survives."""
    token, _, phone, _ = await registered_with_push(system, tmp_path)
    shown = await try_it_out(system, token)
    await phone.approve(shown["challenge_id"], shown["number"])
    await eventually(lambda: bool(system.app("ticketing")._file(USER).push_methods),
                     what="ticketing to note the surviving method")
    return phone


async def request(system: System) -> str:
    with from_the_web_form():
        ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                                   username=USER, reason="forgot my password", channel="web")
    return str(ticket["ticket_number"])


async def start_challenge(system: System, number: str) -> dict:
    """The proof started; its fact as the console shows it (with the number to read)."""
    started = await system.call("ticketing", "start_proof", ticket=number,
                                kind="method_challenge", principal=system.principal())
    [proof] = [p for p in started["proofs"] if p["proof_id"] == started["proof_id"]]
    return proof


async def the_push(phone: Authenticator) -> dict:
    async def arrived() -> dict | None:
        pending = await phone.pending()
        return next((p for p in pending if "help desk" in p["application"]), None)

    return await eventually(arrived, what="the push to reach the device")


async def show(system: System, number: str) -> dict:
    return await system.call("ticketing", "show", ticket=number, principal=system.principal())


async def proof_state(system: System, number: str, state: str) -> dict:
    async def reached() -> dict | None:
        ticket = await show(system, number)
        return ticket if ticket["proofs"][-1]["state"] == state else None

    return await eventually(reached, what=f"the proof to be {state}")


async def test_a_push_answered_with_the_number_the_agent_reads_proves_identity(
    system: System, tmp_path: Path
):
    await start_all(system)
    await system.provision()
    phone = await with_surviving_push_method(system, tmp_path)
    number = await request(system)
    before = await show(system, number)
    assert "method_challenge" in [k["kind"] for k in before["startable_proofs"]]

    proof = await start_challenge(system, number)
    assert proof["state"] == "started" and proof["number"].isdigit()
    assert proof["destination"] == "Microsoft Authenticator"
    push = await the_push(phone)
    assert "number" not in push  # the person hears it from the agent
    await phone.approve(push["challenge_id"], proof["number"])

    ticket = await proof_state(system, number, "succeeded")
    assert ticket["policy"]["points"] == 2 and ticket["policy"]["met"]
    assert ticket["proofs"][-1]["number"] is None  # shown only while the proof runs
    assert "with the number the agent read" in ticket["proofs"][-1]["evidence"]
    assert "MethodChallengeAnswered" in system.event_names("verification")
    assert "ProofSucceeded" in system.event_names("ticketing")
    approved = await system.call("ticketing", "approve", ticket=number,
                                 principal=system.principal())
    assert approved["state"] in ("approved", "scheduled", "awaiting_second_approval")
    published = [e.model_dump_json() for e in system.app("verification").envelopes()]
    published += [e.model_dump_json() for e in system.app("ticketing").envelopes()]
    assert not any(f'"{proof["number"]}"' in text for text in published)


async def test_a_push_the_person_denies_fails_the_proof(system: System, tmp_path: Path):
    await start_all(system)
    await system.provision()
    phone = await with_surviving_push_method(system, tmp_path)
    number = await request(system)
    await start_challenge(system, number)
    push = await the_push(phone)
    await phone.deny(push["challenge_id"])

    ticket = await proof_state(system, number, "failed")
    assert ticket["proofs"][-1]["evidence"] == "the person denied the push on their device"
    assert ticket["policy"]["points"] == 0
    assert "MethodChallengeFailed" in system.event_names("verification")
    assert "ProofFailed" in system.event_names("ticketing")


async def test_without_a_surviving_push_method_the_challenge_is_not_startable(system: System):
    await start_all(system)
    await system.provision()
    number = await request(system)
    ticket = await show(system, number)
    assert "method_challenge" not in [k["kind"] for k in ticket["startable_proofs"]]
    before = system.event_names("ticketing")

    with pytest.raises(NotAllowed, match="No sign-in method with push notifications survives"):
        await system.call("ticketing", "start_proof", ticket=number, kind="method_challenge",
                          principal=system.principal())
    assert system.event_names("ticketing") == before


async def test_a_method_removed_or_revoked_no_longer_counts_as_surviving(
    system: System, tmp_path: Path
):
    await start_all(system)
    await system.provision()
    await with_surviving_push_method(system, tmp_path)
    approved = await system.approved_ticket()  # the reset revokes the methods registered before
    await eventually(lambda: not system.app("ticketing")._file(USER).push_methods,
                     what="ticketing to hear the methods were revoked")
    ticket = await show(system, approved)
    assert ticket["state"] in ("approved", "scheduled")
    number = await request(system)
    ticket = await show(system, number)
    assert "method_challenge" not in [k["kind"] for k in ticket["startable_proofs"]]
