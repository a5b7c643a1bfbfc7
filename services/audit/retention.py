"""What is due under the retention setting: stored events older than REKEY_RETENTION_YEARS, and
the users with no event since (candidates for `rekey audit erase`). A report only: nothing is
deleted, since deleting rows would break the signed tree heads; erasure destroys keys instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.audit.evidence import read_event, stored_event
from shared.application import READ_ONLY
from shared.binding import split_state
from shared.evidence.rows import stored_rows


@dataclass
class RetentionReport:
    horizon: datetime
    rows_past: dict[str, int] = field(default_factory=dict)  # service -> stored events older
    rows: dict[str, int] = field(default_factory=dict)  # service -> stored events
    users_due: dict[str, datetime] = field(default_factory=dict)  # username -> last activity


def _events(app: Any) -> Any:
    """(aggregate id, event) of every readable stored event; erased or damaged rows skipped
    (`rekey audit verify` reports those)."""
    for row in stored_rows(app):
        try:
            event = read_event(app, row, split_state(row.state)[1])
        except Exception:  # noqa: S112 (reported by verify, not here)
            continue
        yield str(stored_event(row).originator_id), event


def retention_report(settings: Any, now: datetime) -> RetentionReport:
    from services.audit.history import application_classes, check_stores_exist

    check_stores_exist(settings)
    report = RetentionReport(horizon=now - timedelta(days=365.25 * settings.retention_years))
    owners: dict[str, str] = {}
    last: dict[str, datetime] = {}
    for cls in application_classes():
        app = cls(settings, READ_ONLY)
        try:
            report.rows[app.service] = report.rows_past[app.service] = 0
            for aggregate, event in _events(app):
                report.rows[app.service] += 1
                if event.timestamp < report.horizon:
                    report.rows_past[app.service] += 1
                if getattr(event, "username", None):
                    owners.setdefault(aggregate, str(event.username))
                user = owners.get(aggregate)
                if user and (user not in last or event.timestamp > last[user]):
                    last[user] = event.timestamp
        finally:
            app.close()
    report.users_due = {u: t for u, t in sorted(last.items()) if t < report.horizon}
    return report
