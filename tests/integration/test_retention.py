"""REKEY_RETENTION_YEARS: `rekey audit retention` reports the stored events past it and the
users with no event since; an erased user is no longer among them (nothing of theirs reads)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.audit.retention import retention_report
from shared.settings import SERVICES
from tests.integration.conftest import AGENT, USER, System, start_all


async def test_retention_reports_what_is_past_it_and_forgets_the_erased(system: System) -> None:
    await start_all(system)
    await system.provision()
    now = datetime.now(UTC)
    six_years_on = now + timedelta(days=365.25 * 6 + 1)

    today = retention_report(system.settings, now)
    later = retention_report(system.settings, six_years_on)

    assert today.users_due == {}
    assert sum(today.rows_past.values()) == 0
    assert {USER, AGENT} <= set(later.users_due)
    assert later.rows_past["credentials"] == later.rows["credentials"] > 0

    for service in SERVICES:
        await system.call(service, "erase_user", username=USER, principal=system.operator())
    after_erasure = retention_report(system.settings, six_years_on)
    assert USER not in after_erasure.users_due
    assert AGENT in after_erasure.users_due
