"""`rekey up` supervises what it started: a killed service comes back, counted, and `rekey down`
stops everything, the restarted process included, leaving no zombie and no orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rekey.stack.ports import free_port
from rekey.stack.supervisor import alive, read_state
from shared.waiting import eventually

pytestmark = pytest.mark.e2e


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    folder: Path
    log: Path
    env: dict[str, str]

    def rekey(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rekey", *args, "--data-dir", str(self.folder)],
                              capture_output=True, text=True, timeout=120, env=self.env,
                              stdin=subprocess.DEVNULL, check=False)

    def processes(self) -> dict[str, dict]:
        return (read_state(self.folder) or {}).get("processes", {})


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REKEY_")}
    env["REKEY_PORTAL_PORT"] = str(free_port())
    folder, log = tmp_path / "rekey", tmp_path / "up.log"
    command = [sys.executable, "-m", "rekey", "up", "--data-dir", str(folder),
               "--nats-port", str(free_port()), "--smtp-port", str(free_port()),
               "--intake-port", str(free_port())]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    running = Up(process, folder, log, env)
    try:
        yield running
    finally:
        if process.poll() is None:  # the test failed half-way: leave nothing behind
            process.send_signal(signal.SIGTERM)
            process.wait(60)
            for record in running.processes().values():
                if record.get("pid") and alive(record["pid"]):
                    os.kill(record["pid"], signal.SIGKILL)


def is_up(up: Up) -> bool:
    assert up.process.poll() is None, up.log.read_text()
    return (up.folder / "rekey.pid").exists() and {"nats", "ticketing", "portal"} <= set(up.processes())


async def test_a_killed_service_is_started_again_counted_and_stopped_by_rekey_down(up: Up):
    await eventually(lambda: is_up(up), what="rekey up to be up", timeout=120)
    killed = up.processes()["ticketing"]["pid"]
    os.kill(killed, signal.SIGKILL)

    def restarted() -> dict | None:
        record = up.processes()["ticketing"]
        return record if record["restarts"] == 1 and record["state"] == "running" else None

    record = await eventually(restarted, what="ticketing to be started again", timeout=60)
    assert record["pid"] != killed and alive(record["pid"])
    assert not alive(killed)  # reaped: no zombie left behind
    assert record["last_exit"] == -signal.SIGKILL
    assert f"ticketing (pid {killed}) was killed by SIGKILL; starting it again" in up.log.read_text()

    def answering() -> str | None:  # the new process serves, and status counts the restart
        out = up.rekey("status")
        row = next((line for line in out.stdout.splitlines() if "ticketing" in line), "")
        return out.stdout if "not answering" not in row and row.rstrip(" │").endswith("1") else None

    shown = await eventually(answering, what="status to show ticketing restarted once", timeout=60)
    assert "credentials" in shown

    started = {name: r["pid"] for name, r in up.processes().items()}
    down = up.rekey("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Rekey stopped." in down.stdout
    assert up.process.wait(30) == 0
    assert [name for name, pid in started.items() if alive(pid)] == []  # restarted one included
    assert not (up.folder / "rekey.pid").exists()
    assert not (up.folder / "supervisor.json").exists()


async def test_rekey_down_stops_what_a_killed_rekey_up_left_running(up: Up):
    await eventually(lambda: is_up(up), what="rekey up to be up", timeout=120)
    started = {name: r["pid"] for name, r in up.processes().items()}
    up.process.kill()  # no chance to stop its children
    up.process.wait()
    assert all(alive(pid) for pid in started.values())

    down = up.rekey("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "ticketing (pid" in down.stderr and "was left running" in down.stderr
    assert [name for name, pid in started.items() if alive(pid)] == []

