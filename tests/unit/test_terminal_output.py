"""Command output: fitted tables on a terminal, every value whole in a pipe, a file or CI."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime

from rich.console import Console

from rekey.terminal import print_history
from shared.contracts import EventEnvelope

TICKET = str(uuid.uuid4())
LONG_REASON = "the phone fell into the harbour during the quarterly offsite boat trip"


def event(name: str, **body: str) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(), name=name, schema_version=1,
        occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        source="credentials", notification_id=1, subject="jane.doe@masspasrr.org", correlation_id=TICKET,
        actor="helpdesk.agent.with.a.long.name", body=body,
    )


EVENTS = [
    event("TemporaryPasswordDeliveryFailed", reason=LONG_REASON),
    event("ResetRequested", username="jane.doe@masspasrr.org", reason="new phone"),
]


def test_a_history_into_a_pipe_prints_one_whole_line_per_event():
    out = io.StringIO()
    print_history(Console(file=out, width=80), EVENTS)

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert "…" not in out.getvalue()
    assert "TemporaryPasswordDeliveryFailed" in lines[0]
    assert f"reason={LONG_REASON}" in lines[0]
    assert f"ticket={TICKET}" in lines[0]
    assert "actor=helpdesk.agent.with.a.long.name" in lines[0]
    assert lines[1].startswith("2026-01-02 03:04:05.000  credentials  ResetRequested  ")


def test_a_history_on_a_terminal_is_a_table_fitted_to_the_window():
    out = io.StringIO()
    print_history(Console(file=out, width=80, force_terminal=True, color_system=None), EVENTS)

    assert "time (UTC)" in out.getvalue()
    assert all(len(line) <= 80 for line in out.getvalue().splitlines())
