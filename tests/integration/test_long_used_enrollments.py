"""A user who signs in for years: each sign-in adds events to their enrollment, and a request
must not replay all of them. The enrollment is read from a snapshot (every 20 events) and keeps
a day of challenges in its state, while the store keeps every event."""

from __future__ import annotations

import pyotp

from services.verification import totp
from services.verification.domain import Enrollment
from shared.application import replay
from shared.clock import ManualClock
from shared.tokens import all_issuers, issue_token
from tests.integration.conftest import USER, System, start_verification

SIGN_INS = 45


async def test_a_long_used_enrollment_reads_a_snapshot_that_agrees_with_its_whole_history(
    system: System,
) -> None:
    clock = ManualClock()
    await start_verification(system, clock)
    keys = all_issuers(system.settings, clock)
    registration = await system.call("verification", "start_app_registration", username=USER,
                                     token=issue_token(keys, USER, "password"))
    secret = totp.parse_uri(registration["otpauth_uri"]).secret
    for _ in range(SIGN_INS):  # a sign-in a day
        clock.advance(24 * 3600 + 31)
        await system.call("verification", "verify_code", username=USER,
                          token=issue_token(keys, USER, "password"),
                          method_id=registration["method_id"],
                          code=pyotp.TOTP(secret).at(clock.time()))

    app = system.app("verification")
    enrollment_id = Enrollment.create_id(USER)
    history = list(app.events.get(enrollment_id))
    [snapshot] = app.snapshots.get(enrollment_id, desc=True, limit=1)
    assert snapshot.originator_version > history[-1].originator_version - 20
    read = app.repository.get(enrollment_id)  # the snapshot and the events after it
    replayed = replay(None, history)  # every event from the first
    assert vars(read) == vars(replayed)
    assert len(read.issued) == 1  # the state keeps a day of challenges
    issued = [e for e in history if type(e).__name__ == "ChallengeIssued"]
    assert len(issued) == SIGN_INS  # the store keeps them all (the first code answers the setup's)
