"""Attacks on identity proofs, on a running stack (real bus, both stores): an impostor who
knows everything about the victim but holds none of what is on file, and a phished agent.
Each attack is refused and changes nothing."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.caught import latest_call_to, list_calls
from shared.errors import AuthenticationFailed, NotAllowed
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, from_the_web_form, start_all
from tests.integration.test_identity_proofs import register, start_manager_proof

pytestmark = pytest.mark.security

MANAGER = "pat.boss@example.org"
ON_FILE = "+15085550142"
ATTACKER = "+15085550199"


async def file_request(system: System, username: str = USER, email: str = USER_EMAIL,
                       **extra) -> str:
    with from_the_web_form():
        ticket = await system.call("ticketing", "request_reset", name="Jane Doe", email=email,
                                   username=username,
                                   reason=f"lost my phone, call me on {ATTACKER}",
                                   channel="web", **extra)
    return str(ticket["ticket_number"])


def decisions(system: System) -> list[str]:
    return [n for n in system.event_names("ticketing") if n in ("ResetApproved", "ApprovalRecorded")]


async def test_an_agent_cannot_approve_without_the_policy_met(system: System):
    await start_all(system)
    await system.provision()
    number = await file_request(system)

    with pytest.raises(NotAllowed, match="Not enough proof of identity yet: 0 of the 2 points"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    await system.call("ticketing", "attest_id_check", ticket=number, note="trust me",
                      principal=system.principal())
    with pytest.raises(NotAllowed, match="never counts alone"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())

    assert decisions(system) == []
    assert "PasswordIssued" not in system.event_names("credentials")


async def test_a_typed_address_on_the_web_form_proves_nothing(system: System):
    await start_all(system)
    await system.provision()
    number = await file_request(system)  # the address on file, typed by whoever knows it

    ticket = await system.call("ticketing", "show", ticket=number, principal=system.principal())
    assert ticket["policy"]["points"] == 0 and "approve" not in ticket["next_actions"]
    assert "proves nothing" in ticket["address_on_file"]
    assert "verified" not in str({k: v for k, v in ticket.items() if k != "timeline"}).lower()
    with pytest.raises(NotAllowed):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    assert decisions(system) == []


async def test_a_caller_cannot_have_the_call_back_go_to_their_own_number(phone_system: System):
    system = phone_system
    await start_all(system)
    await system.provision()
    await register(system, "cfo@masspasrr.org", phone=ON_FILE)
    number = await file_request(system, "cfo@masspasrr.org", "cfo@example.org")

    # The agent, talked into it, passes the caller's number every way the command could take it.
    await system.call("ticketing", "start_proof", ticket=number, kind="call_back",
                      principal=system.principal(), to=ATTACKER, phone=ATTACKER, number=ATTACKER)
    await eventually(lambda: latest_call_to(system.twilio.folder, ON_FILE) is not None,
                     what="the call to the phone on file")

    assert latest_call_to(system.twilio.folder, ATTACKER) is None
    assert {c.to for c in list_calls(system.twilio.folder)} == {ON_FILE}


async def manager_token(system: System) -> tuple[str, str]:
    await start_all(system)
    await system.provision()
    return await start_manager_proof(system)


def proof_states(system: System) -> list[str]:
    return [n for n in system.event_names("ticketing") if n.startswith("Proof")]


async def test_a_manager_link_cannot_be_used_twice(system: System):
    number, token = await manager_token(system)
    await system.call("ticketing", "manager_decide", token=token, approve=False)
    recorded = proof_states(system)

    with pytest.raises(AuthenticationFailed, match="already used"):
        await system.call("ticketing", "manager_decide", token=token, approve=True)
    with pytest.raises(AuthenticationFailed):
        await system.call("ticketing", "manager_request", token=token)

    assert proof_states(system) == recorded == ["ProofStarted", "ProofFailed"]
    ticket = await system.call("ticketing", "show", ticket=number, principal=system.principal())
    assert ticket["policy"]["points"] == 0


async def test_a_forged_manager_link_is_refused(system: System):
    number, token = await manager_token(system)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(claims, Ed25519PrivateKey.generate(), algorithm="EdDSA")
    header, _, signature = token.split(".")
    other_body = jwt.encode({**claims, "sub": USER}, Ed25519PrivateKey.generate(),
                            algorithm="EdDSA").split(".")[1]
    spliced = ".".join((header, other_body, signature))
    altered = token[:-4] + "AAAA"

    for attempt in (forged, spliced, altered, "not-a-token"):
        with pytest.raises(AuthenticationFailed):
            await system.call("ticketing", "manager_decide", token=attempt, approve=True)

    assert proof_states(system) == ["ProofStarted"]
    ticket = await system.call("ticketing", "show", ticket=number, principal=system.principal())
    assert ticket["policy"]["points"] == 0
