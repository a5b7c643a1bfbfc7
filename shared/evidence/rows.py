"""A service's stored rows read straight from its events table, as stored (no mapper).

The notification log of ``eventsourcing`` starts at id 1, so rows an insider puts at id 0 or
below are invisible to it, yet an aggregate still reads them. These queries see every row.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.evidence.heads import StoredRow

BATCH = 1000


def _query(app: Any, condition: str, params: tuple[Any, ...]) -> list[StoredRow]:
    recorder = app.recorder
    table = recorder.events_table_name
    if app.settings.store == "sqlite":
        sql = (f"SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608
               f"FROM {table} WHERE {condition.replace('%s', '?')} ORDER BY rowid LIMIT {BATCH}")
    else:
        sql = (f"SELECT notification_id, originator_id, originator_version, topic, state "  # noqa: S608
               f"FROM {app.service}.{table} WHERE {condition.replace('rowid', 'notification_id')} "
               f"ORDER BY notification_id LIMIT {BATCH}")
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(sql, params)
        found = cursor.fetchall()
    return [StoredRow(int(_col(r, 0, "notification_id", "rowid")), str(_col(r, 1, "originator_id")),
                      int(_col(r, 2, "originator_version")), str(_col(r, 3, "topic")),
                      bytes(_col(r, 4, "state"))) for r in found]


def _col(row: Any, index: int, *names: str) -> Any:
    if isinstance(row, dict):
        return next(row[n] for n in names if n in row)
    try:
        return row[index]
    except (KeyError, IndexError):
        return next(row[n] for n in names if n in row.keys())  # noqa: SIM118


def stored_rows(app: Any, after: int = 0) -> Iterator[StoredRow]:
    """Every row with a notification id above ``after``, in order."""
    position = after
    while True:
        batch = _query(app, "rowid > %s", (position,))
        yield from batch
        if len(batch) < BATCH:
            return
        position = batch[-1].notification_id


def rows_outside_the_log(app: Any) -> list[StoredRow]:
    """Rows at notification id 0 or below: never written by Rekey, always an insertion."""
    found: list[StoredRow] = []
    position = None
    while True:
        batch = _query(app, "rowid < 1" + ("" if position is None else " AND rowid > %s"),
                       () if position is None else (position,))
        found.extend(batch)
        if len(batch) < BATCH:
            return found
        position = batch[-1].notification_id
