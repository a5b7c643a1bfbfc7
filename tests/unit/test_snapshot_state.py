"""An enrollment's snapshot holds its whole state: methods, devices, challenges (their sets of
answered nonces too), as the verification service's transcoder writes and reads it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from eventsourcing.domain import Snapshot
from eventsourcing.persistence import JSONTranscoder

from services.verification.base import VerificationBase
from services.verification.domain import APP, PHONE, PUSH, SMS, Enrollment, PhoneSends
from tests.unit.recorded import T0


def test_an_enrollment_with_every_kind_of_state_comes_back_from_its_snapshot_as_it_was():
    e = Enrollment(username="alice")
    e.start_registration(method_id="m1", method_type=APP, secret_ref="r", started_at=T0,
                         activation_hash="h")
    e.activate_device("m1", True, "d1", "pk", "phone", "fp", T0)
    e.issue_challenge("c1", "m1", APP, "sign_in", kind=PUSH, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=2), code_hash="x",
                      context={"location": "Boston"})
    e.issued["c1"].nonces.update({"n2", "n1"})
    e.start_registration(method_id="p1", method_type=PHONE, secret_ref="r", started_at=T0,
                         channel="sms", masked_phone="+1 ••• ••• 0142")
    e.issue_challenge("s1", "p1", PHONE, "registration", kind=SMS, issued_at=T0,
                      expires_at=T0 + timedelta(minutes=10), code_hash="h1")
    restored = _through_a_snapshot(e)
    assert _state(restored) == _state(e)
    assert restored.issued["c1"].nonces == {"n1", "n2"}
    assert restored.methods["m1"].devices["d1"].activated_at == T0


def _through_a_snapshot(aggregate: Any) -> Any:
    """The aggregate as a snapshot taken now gives it back, through verification's transcoder."""
    transcoder = JSONTranscoder()
    VerificationBase.register_transcodings(VerificationBase.__new__(VerificationBase), transcoder)
    snapshot = Snapshot.take(aggregate)
    state = transcoder.decode(transcoder.encode(snapshot.state))
    return Snapshot(originator_id=snapshot.originator_id,
                    originator_version=snapshot.originator_version,
                    timestamp=snapshot.timestamp, topic=snapshot.topic, state=state).mutate(None)


def _state(aggregate: object) -> dict[str, object]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def test_a_phone_numbers_sends_come_back_from_their_snapshot_and_keep_the_latest_fifty():
    sends = PhoneSends(phone_hash="h")
    for n in range(60):
        sends.count(at=T0 + timedelta(minutes=n))
    restored = _through_a_snapshot(sends)
    assert restored.sends == [T0 + timedelta(minutes=n) for n in range(10, 60)]
    assert restored.since(T0 + timedelta(minutes=50)) == 10
