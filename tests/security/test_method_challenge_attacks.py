"""Attacks on the method challenge proof (a push to an authenticator app the user still has),
against a real stack on both stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import Conflict, InvalidRequest, NotAllowed
from tests.integration.conftest import System, eventually, start_all
from tests.integration.test_method_challenge_proof import (
    request,
    show,
    start_challenge,
    the_push,
    with_surviving_push_method,
)

pytestmark = pytest.mark.security


async def test_a_method_challenge_cannot_be_answered_with_the_wrong_number(
    system: System, tmp_path: Path
):
    """A person who approves a push without hearing the agent's number (a tired user, or a
    device the impostor's accomplice guesses on) proves nothing: the first wrong number fails
    the proof, and the right number afterwards is refused too."""
    await start_all(system)
    await system.provision()
    phone = await with_surviving_push_method(system, tmp_path)
    number = await request(system)
    proof = await start_challenge(system, number)
    push = await the_push(phone)
    wrong = str((int(proof["number"]) + 1) % 10 ** len(proof["number"])).zfill(len(proof["number"]))

    with pytest.raises(InvalidRequest):
        await phone.approve(push["challenge_id"], wrong)
    with pytest.raises((Conflict, InvalidRequest)):
        await phone.approve(push["challenge_id"], proof["number"])

    async def failed() -> dict | None:
        ticket = await show(system, number)
        return ticket if ticket["proofs"][-1]["state"] == "failed" else None

    ticket = await eventually(failed, what="the proof to fail")
    assert ticket["proofs"][-1]["evidence"] == "the push was answered with a wrong number"
    assert ticket["policy"]["points"] == 0
    with pytest.raises(NotAllowed, match="Not enough proof of identity yet"):
        await system.call("ticketing", "approve", ticket=number, principal=system.principal())
    assert "MethodChallengeAnswered" not in system.event_names("verification")
    assert "ProofSucceeded" not in system.event_names("ticketing")
    assert not {"ResetApproved", "ApprovalRecorded"} & set(system.event_names("ticketing"))
