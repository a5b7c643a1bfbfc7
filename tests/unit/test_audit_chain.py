"""Checkpoints make a history tamper-evident: changed or removed events break the chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from services.audit.chain import checkpoint, verify
from shared.contracts import EventEnvelope

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def event(source: str, n: int, name: str = "IdentityVerified", **body: object) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid4(), name=name, schema_version=1, occurred_at=T0 + timedelta(seconds=n),
        source=source, notification_id=n, subject="jane", actor="agent", body=body or {"n": n},
    )


HISTORY = [event("ticketing", 1), event("ticketing", 2, method="call_back"),
           event("credentials", 1), event("credentials", 5)]


def test_an_unchanged_history_verifies():
    kept = checkpoint("jane", HISTORY, "now")
    assert all(f.ok for f in verify(kept, HISTORY))


def test_new_events_extend_the_chain_without_breaking_it():
    kept = checkpoint("jane", HISTORY, "now")
    later = [*HISTORY, event("ticketing", 9), event("consent", 3)]
    findings = {f.source: f for f in verify(kept, later)}
    assert findings["ticketing"].ok and "1 added" in findings["ticketing"].detail
    assert findings["credentials"].ok


def test_a_changed_fact_in_an_old_event_is_caught():
    kept = checkpoint("jane", HISTORY, "now")
    forged = [*HISTORY]
    forged[1] = forged[1].model_copy(update={"body": {"method": "id_check"}})
    findings = {f.source: f for f in verify(kept, forged)}
    assert not findings["ticketing"].ok
    assert findings["credentials"].ok


def test_a_removed_event_is_caught():
    kept = checkpoint("jane", HISTORY, "now")
    findings = {f.source: f for f in verify(kept, HISTORY[1:])}
    assert not findings["ticketing"].ok


def test_the_order_given_does_not_matter_only_the_logs_order():
    kept = checkpoint("jane", HISTORY, "now")
    assert all(f.ok for f in verify(kept, list(reversed(HISTORY))))
