"""The audit record: only the auditor reads it, and only what the services signed gets into it.

A forged event that slipped past the subject permissions (the tests' inspector may publish
anything) must not become a row an auditor then trusts; the operator, the portal and the device
must not read or export the record; a feed forged by someone else fails its signature.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from shared.bus.signing import NkeySigner
from shared.contracts.envelope import EventEnvelope
from shared.settings import SERVICES
from tests.conftest import connect_as
from tests.integration.conftest import AGENT, USER, System, eventually, start_all
from tests.security.test_bus_boundary import _as, _refused_request

pytestmark = pytest.mark.security


def backdated_approval(notification_id: int) -> EventEnvelope:
    ticket_id = str(uuid.uuid4())
    return EventEnvelope(
        event_id=uuid.uuid4(), name="ResetApproved", schema_version=1,
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC), source="ticketing", notification_id=notification_id,
        subject=USER, correlation_id=ticket_id, actor=AGENT,
        body={"ticket_id": ticket_id, "username": USER, "agent": AGENT},
    )


def _holds_exactly_the_stored_events(system: System) -> bool:
    stored = sum(len(list(system.app(name).envelopes())) for name in SERVICES)
    return bool(system.app("audit").projection.count_all() == stored)


async def _publish(system: System, envelope: EventEnvelope, headers: dict[str, str]) -> None:
    inspector = await connect_as(system.nats)
    try:
        await inspector.jetstream().publish(
            envelope.bus_subject, envelope.model_dump_json().encode(),
            headers={"Nats-Msg-Id": envelope.msg_id, **headers})
    finally:
        await inspector.close()


async def test_a_forged_approval_never_becomes_a_row_of_the_audit_record(system: System) -> None:
    await system.start("audit")
    await start_all(system)
    await system.provision()
    # the provisioning's own events are still arriving: wait until the record holds them all
    await eventually(lambda: _holds_exactly_the_stored_events(system),
                     what="the audit record to hold every stored event")
    unsigned, wrong_key = backdated_approval(777_777), backdated_approval(777_778)
    await _publish(system, unsigned, {})
    data = wrong_key.model_dump_json().encode()
    consent = NkeySigner.from_seed(system.nats.keys.seed("consent"))  # type: ignore[union-attr]
    await _publish(system, wrong_key, consent.headers(wrong_key.bus_subject, data))

    await eventually(lambda: system.runtimes["audit"].consumer.refused >= 2,
                     what="the audit service to refuse both forgeries")
    # every row is an event a service stored, none a forgery (a forged row would make one more
    # row than stored events for ever; a late event of the services' own, as many of each)
    await eventually(lambda: _holds_exactly_the_stored_events(system),
                     what="the audit record to hold the stored events and nothing else")
    names = [e.name for e in system.app("audit").history(USER)]
    assert "ResetApproved" not in names


async def test_nobody_but_the_auditor_reads_or_exports_the_audit_record(system: System) -> None:
    await system.start("audit")
    await start_all(system)
    await system.provision()
    queries = {"history": {"username": USER}, "as_of": {"username": USER, "at": "2030-01-01T00:00:00Z"},
               "count": {}, "events": {"upto": 10**9}, "manifest": {"upto": 10**9}}
    for identity in ("portal", "operator", "device"):
        nc = await _as(system, identity)
        try:
            for command, payload in queries.items():
                await _refused_request(nc, f"rekey.rpc.audit.{command}", payload)
        finally:
            await nc.close()
