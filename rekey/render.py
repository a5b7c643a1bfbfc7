"""How histories look in a terminal: one table for the demo and the auditor alike."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text

from services.audit.history import describe
from shared.contracts import EventEnvelope


def history_table(events: Iterable[EventEnvelope], title: str | None = None) -> Table:
    table = Table("time (UTC)", "service", "event", "actor", "ticket", "facts", title=title)
    for e in events:
        table.add_row(
            *plain(
                e.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
                e.source,
                e.name,
                e.actor or "",
                (e.correlation_id or "")[:8],
                describe(e),
            )
        )
    return table


def plain(*cells: str) -> list[Text]:
    """Cells shown as typed: data such as "[secure]" or "revoked=[...]" is not markup."""
    return [Text(cell) for cell in cells]
