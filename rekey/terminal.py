"""How rekey commands print: tables on a terminal, full values when the output goes elsewhere.

On a terminal rich fits a table to the window and cuts long cells with "…". In a pipe, a log
file or CI nothing is cut: ``console()`` does not wrap or cut, so tables print whole, and a
history prints as one plain line per event, every value in full.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from services.audit.history import describe
from shared.contracts import EventEnvelope

UNCUT_WIDTH = 10_000  # wide enough that rich never cuts a cell when nobody's window is the limit


def console(*, stderr: bool = False) -> Console:
    """A console for a command's output: fitted to a terminal, never cut in a pipe or a file."""
    out = Console(stderr=stderr)
    if not out.is_terminal:
        out = Console(stderr=stderr, width=UNCUT_WIDTH, soft_wrap=True)
    return out


def print_history(out: Console, events: Iterable[EventEnvelope], title: str | None = None) -> None:
    """A history as a table on a terminal; elsewhere one line per event, nothing cut."""
    if out.is_terminal:
        out.print(history_table(events, title))
        return
    if title:
        out.print(title, markup=False, highlight=False, soft_wrap=True)
    for line in history_lines(events):
        out.print(line, markup=False, highlight=False, soft_wrap=True, crop=False)


def history_lines(events: Iterable[EventEnvelope]) -> list[str]:
    """Time, service, event, actor, ticket, then every fact: the whole values, two spaces apart."""
    return [
        "  ".join((
            _time(e), e.source, e.name, f"actor={e.actor or '-'}", f"ticket={e.correlation_id or '-'}",
            describe(e, shorten=False),
        )).rstrip()
        for e in events
    ]


def history_table(events: Iterable[EventEnvelope], title: str | None = None) -> Table:
    table = Table("time (UTC)", "service", "event", "actor", "ticket", "facts", title=title)
    for e in events:
        table.add_row(
            *plain(_time(e), e.source, e.name, e.actor or "", (e.correlation_id or "")[:8], describe(e))
        )
    return table


def plain(*cells: str) -> list[Text]:
    """Cells shown as typed: data such as "[secure]" or "revoked=[...]" is not markup."""
    return [Text(cell) for cell in cells]


def _time(event: EventEnvelope) -> str:
    return event.occurred_at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
