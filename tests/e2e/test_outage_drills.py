"""Drills on a real `rekey up`: what an operator sees when NATS dies and comes back."""

from __future__ import annotations

import json
import os
import signal

import pytest

from shared.settings import PROCESSES, SERVICES
from shared.waiting import eventually
from tests.e2e.test_supervision import Up, is_up, up  # noqa: F401 (the fixture)

pytestmark = pytest.mark.e2e


def log_of(running: Up, name: str) -> str:
    path = running.folder / "logs" / f"{name}.log"
    return path.read_text() if path.exists() else ""


def healthy_report(running: Up) -> dict | None:
    """`rekey status --json` once everything, the portal included, is up and well."""
    out = running.rekey("status", "--json")
    report = json.loads(out.stdout) if out.stdout.strip().startswith("{") else None
    if out.returncode or not report or report["problems"] or "portal" not in report["processes"]:
        return None
    return report


async def test_nats_killed_every_process_logs_one_line_each_way_and_status_is_clean_after(up: Up):  # noqa: F811
    report = await eventually(lambda: healthy_report(up), what="a healthy status", timeout=180)
    assert report["nats"]["ok"] and report["processes"]["portal"]["ready"]
    assert all(report["services"][name]["ready"] for name in PROCESSES)
    # Status can be clean a moment before the supervisor has written its first round.
    await eventually(lambda: is_up(up), what="the supervisor's first round", timeout=30)
    os.kill(up.processes()["nats"]["pid"], signal.SIGKILL)  # the supervisor starts it again

    def restored() -> bool:
        return all("NATS connection restored" in log_of(up, name) for name in (*PROCESSES, "portal"))

    await eventually(restored, what="every process to log the reconnect", timeout=120)
    for name in (*PROCESSES, "portal"):
        text = log_of(up, name)
        assert text.count("NATS connection lost") == 1, (name, text[-3000:])
        assert text.count("NATS connection restored") == 1, (name, text[-3000:])
        assert "Traceback" not in text, (name, text[-3000:])
        lost = next(line for line in text.splitlines() if "NATS connection lost" in line)
        assert json.loads(lost)["level"] == "WARNING"  # one JSON object per line
    await eventually(lambda: healthy_report(up), what="status clean again", timeout=60)

    repaired = up.rekey("repair", "republish")  # harmless when nothing is missing
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "ticketing:" in repaired.stdout and "published again" in repaired.stdout
    after = await eventually(lambda: healthy_report(up), what="status clean after the repair", timeout=60)
    assert all(after["services"][name]["gap"] == 0 for name in PROCESSES)
    pruned = up.rekey("repair", "snapshots", "--dry-run")  # one code version: nothing old
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    for name in SERVICES:
        assert f"{name}: would drop 0 old snapshot table(s)" in pruned.stdout, pruned.stdout
