"""Snapshot tables of code that no longer runs: listed, and dropped on the operator's word.

A service keeps its snapshots in a table named after the code that took them
(:func:`shared.application.snapshot_fingerprint`): a new version starts an empty table and
never reads an old one, which then only takes up space. ``rekey repair snapshots`` asks each
service to drop its old ones, once every replica runs the new code (a replica still on the old
code would find its table gone: its snapshot reads fail until it is upgraded). Snapshots are a
cache: dropping one loses no fact, the events hold them all.
"""

from __future__ import annotations

import re
from typing import Any

FINGERPRINT = r"[0-9a-f]{12}"


def _prefix(app: Any) -> str:
    """What the store names this application's tables with (``stored`` on SQLite, the
    application's name on PostgreSQL), read from its events table."""
    return str(app.recorder.events_table_name).removesuffix("_events")


def _tables(app: Any) -> list[str]:
    datastore = app.recorder.datastore
    sqlite = app.settings.store == "sqlite"
    with datastore.transaction(commit=False) as cursor:
        if sqlite:
            cursor.execute("SELECT name FROM sqlite_master WHERE type='table'")
        else:
            cursor.execute("SELECT table_name FROM information_schema.tables "
                           "WHERE table_schema=%s", (datastore.schema,))
        rows = cursor.fetchall()
    return [str(r["name" if sqlite else "table_name"] if isinstance(r, dict) else r[0])
            for r in rows]


def old_snapshot_tables(app: Any) -> list[str]:
    """This service's snapshot tables that the running code does not read, by name."""
    current = app.snapshots.recorder.events_table_name if app.snapshots is not None else None
    pattern = re.compile(rf"{re.escape(_prefix(app))}_snapshots_{FINGERPRINT}")
    return sorted(name for name in _tables(app) if pattern.fullmatch(name) and name != current)


def drop_old_snapshot_tables(app: Any) -> list[str]:
    """Drop them (in one transaction); the names dropped."""
    old = old_snapshot_tables(app)
    if not old:
        return []
    datastore = app.recorder.datastore
    sqlite = app.settings.store == "sqlite"
    with datastore.transaction(commit=True) as cursor:
        for name in old:  # each name matched the pattern: letters, digits and underscores only
            qualified = f'"{name}"' if sqlite else f'"{datastore.schema}"."{name}"'
            cursor.execute(f"DROP TABLE IF EXISTS {qualified}")
    return old
