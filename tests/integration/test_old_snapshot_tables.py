"""Snapshot tables of earlier code: each service names and drops its own on the operator's
word (`rekey repair snapshots`), and nothing else. Both stores."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import System
from tests.security.insider import Insider

OLD_FINGERPRINT = "0123456789ab"


def tables(system: System, service: str) -> set[str]:
    insider = Insider(system.settings, service)
    if insider.sqlite:
        return {name for (name,) in insider._run("SELECT name FROM sqlite_master WHERE type='table'")}
    return {name for (name,) in insider._run(
        "SELECT table_name FROM information_schema.tables WHERE table_schema=%s", (service,))}


def create(system: System, service: str, name: str) -> None:
    insider = Insider(system.settings, service)
    qualified = f'"{name}"' if insider.sqlite else f'"{service}"."{name}"'
    insider._run(f"CREATE TABLE {qualified} (x INTEGER)")


async def test_a_service_drops_only_its_snapshot_tables_of_earlier_code(system: System) -> None:
    await system.start("credentials")
    app: Any = system.app("credentials")
    prefix = app.recorder.events_table_name.removesuffix("_events")
    current = app.snapshots.recorder.events_table_name
    old = f"{prefix}_snapshots_{OLD_FINGERPRINT}"
    kept = {f"{prefix}_snapshots_notours", f"other_snapshots_{OLD_FINGERPRINT}", "unrelated"}
    for name in (old, *kept):
        create(system, "credentials", name)
    before = tables(system, "credentials")
    assert {current, old, *kept} <= before

    named = await system.call("credentials", "drop_old_snapshots", dry_run=True)
    assert named == {"tables": [old], "dropped": False}
    assert tables(system, "credentials") == before  # a dry run changes nothing

    dropped = await system.call("credentials", "drop_old_snapshots")
    assert dropped == {"tables": [old], "dropped": True}
    assert tables(system, "credentials") == before - {old}
    assert await system.call("credentials", "drop_old_snapshots") == {"tables": [], "dropped": True}

    await system.call("credentials", "register_account", username="after@masspasrr.org",
                      email="after@example.org", display_name="After", principal=system.operator())
    assert current in tables(system, "credentials")  # the service goes on with its own


async def test_a_service_without_old_tables_drops_nothing(system: System) -> None:
    await system.start("consent")
    before = tables(system, "consent")
    assert await system.call("consent", "drop_old_snapshots") == {"tables": [], "dropped": True}
    assert tables(system, "consent") == before
