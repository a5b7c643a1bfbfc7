"""Events that cannot be forged: a consumer acts only on what the owning service signed.

The attacker here got past the subject permissions (the tests' inspector identity may publish
anything, standing in for a misconfigured server or a leaked over-broad key). A forged
``ResetApproved`` would revoke a user's methods and mail a temporary password; each test shows
it is refused, logged, and changes nothing in any store.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from rekey.stack.buskeys import BusKeys
from shared.bus.signing import NkeySigner
from shared.contracts.envelope import EventEnvelope
from tests.conftest import connect_as
from tests.integration.conftest import AGENT, USER, System, eventually, start_all

pytestmark = pytest.mark.security


def forged_approval(notification_id: int = 9_999) -> EventEnvelope:
    ticket_id = str(uuid.uuid4())
    return EventEnvelope(
        event_id=uuid.uuid4(), name="ResetApproved", schema_version=1,
        occurred_at=datetime.now(UTC), source="ticketing", notification_id=notification_id,
        subject=USER, correlation_id=ticket_id, actor=AGENT,
        body={"ticket_id": ticket_id, "username": USER, "agent": AGENT},
    )


async def _publish(system: System, envelope: EventEnvelope, headers: dict[str, str],
                   subject: str | None = None) -> None:
    inspector = await connect_as(system.nats)
    try:
        await inspector.jetstream().publish(
            subject or envelope.bus_subject, envelope.model_dump_json().encode(),
            headers={"Nats-Msg-Id": envelope.msg_id, **headers})
    finally:
        await inspector.close()


async def _refused_by_both(system: System, count: int = 1) -> None:
    """credentials and verification consume ResetApproved: both refused it, neither acted."""
    await eventually(lambda: all(system.runtimes[name].consumer.refused >= count
                                 for name in ("credentials", "verification")),
                     what="both consumers to refuse the forgery")
    assert "PasswordIssued" not in system.event_names("credentials")
    assert "MethodsRevoked" not in system.event_names("verification")
    mails = [path.read_text(errors="replace") for path in system.mail.folder.glob("*.eml")]
    assert not any("temporary" in mail.lower() for mail in mails)


def _keys(system: System) -> BusKeys:
    assert system.nats.keys is not None
    return system.nats.keys


async def test_an_unsigned_reset_approval_is_refused_and_nothing_is_reset(system: System) -> None:
    await start_all(system)
    await system.provision()
    await _publish(system, forged_approval(), headers={})
    await _refused_by_both(system)


async def test_an_approval_signed_with_another_services_key_is_refused(system: System) -> None:
    await start_all(system)
    await system.provision()
    envelope = forged_approval()
    data = envelope.model_dump_json().encode()
    wrong = NkeySigner.from_seed(_keys(system).seed("consent"))
    await _publish(system, envelope, wrong.headers(envelope.bus_subject, data))
    await _refused_by_both(system)


async def test_a_signature_copied_onto_changed_bytes_is_refused(system: System) -> None:
    await start_all(system)
    await system.provision()
    envelope = forged_approval()
    genuine = NkeySigner.from_seed(_keys(system).seed("ticketing"))
    headers = genuine.headers(envelope.bus_subject, envelope.model_dump_json().encode())
    tampered = envelope.model_copy(update={"body": {**envelope.body, "agent": "mallory"}})
    await _publish(system, tampered, headers)
    await _refused_by_both(system)


async def test_an_event_published_under_another_services_subject_is_refused(system) -> None:
    """A service's genuinely signed event, re-published where another service's belong."""
    await start_all(system)
    await system.provision()
    envelope = forged_approval().model_copy(update={"source": "consent"})
    signer = NkeySigner.from_seed(_keys(system).seed("consent"))
    subject = "rekey.events.ticketing.ResetApproved"
    await _publish(system, envelope, signer.headers(subject, envelope.model_dump_json().encode()),
                   subject=subject)
    await _refused_by_both(system)


async def test_a_genuine_approval_still_resets(system: System) -> None:
    """The check refuses forgeries only: the real service's signed event is acted on."""
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    await eventually(lambda: "PasswordIssued" in system.event_names("credentials"))
    assert all(system.runtimes[name].consumer.refused == 0
               for name in ("credentials", "verification", "ticketing"))


async def test_a_replayed_genuine_approval_resets_nothing_twice(system: System) -> None:
    """A copy of a real, signed ResetApproved, published again under a fresh message id (past
    the stream's duplicate window): the signature holds, and the consumers' tracking of the
    upstream position makes it change nothing."""
    await start_all(system)
    await system.provision()
    await system.approved_ticket()
    await eventually(lambda: system.event_names("credentials").count("PasswordIssued") == 1)
    await eventually(lambda: system.event_names("verification").count("MethodsRevoked") == 1)
    consumers = [system.runtimes[name].consumer for name in ("credentials", "verification")]
    seen = [consumer.processed for consumer in consumers]
    inspector = await connect_as(system.nats)
    try:
        js = inspector.jetstream()
        genuine = await js.get_last_msg("REKEY_EVENTS", "rekey.events.ticketing.ResetApproved")
        headers = {k: v for k, v in (genuine.headers or {}).items() if k != "Nats-Msg-Id"}
        await js.publish(genuine.subject, genuine.data,
                         headers={**headers, "Nats-Msg-Id": "replayed-1"})
    finally:
        await inspector.close()
    await eventually(lambda: all(c.processed > s for c, s in zip(consumers, seen, strict=True)),
                     what="both consumers to take the replayed approval")
    assert all(consumer.refused == 0 for consumer in consumers)  # genuine: not refused, ignored
    assert system.event_names("credentials").count("PasswordIssued") == 1
    assert system.event_names("verification").count("MethodsRevoked") == 1
