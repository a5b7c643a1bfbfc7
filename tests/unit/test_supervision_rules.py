"""The supervisor's rules, on fake processes and a clock the test moves: who is restarted, when,
and what is counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rekey.stack.supervisor import MAX_BACKOFF, STABLE_AFTER, Supervisor, backoff


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.current, self.code, self.fail_to_start, self.starts = pid, None, False, 0

    def pid(self) -> int | None:
        return None if self.code is not None else self.current

    def exit_code(self) -> int | None:
        return self.code

    def restart(self) -> None:
        if self.fail_to_start:
            raise RuntimeError("port in use")
        self.starts += 1
        self.current, self.code = self.current + 100, None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path):
    clock, processes = Clock(), {"ticketing": FakeProcess(10), "nats": FakeProcess(20)}
    supervisor = Supervisor(lambda: dict(processes), tmp_path / "supervisor.json", clock=clock)
    supervisor.check()
    return supervisor, clock, processes, tmp_path / "supervisor.json"


def test_a_dead_process_is_started_again_after_the_backoff_and_counted(world):
    supervisor, clock, processes, state = world
    processes["ticketing"].code = -9
    supervisor.check()
    assert json.loads(state.read_text())["processes"]["ticketing"]["state"] == "restarting"
    clock.now += backoff(1) - 0.01
    supervisor.check()
    assert processes["ticketing"].starts == 0  # not before the backoff
    clock.now += 0.02
    supervisor.check()
    assert processes["ticketing"].starts == 1
    record = json.loads(state.read_text())["processes"]["ticketing"]
    assert record == {**record, "state": "running", "restarts": 1, "last_exit": -9, "pid": 110}
    assert supervisor.restarts("nats") == 0


def test_the_backoff_doubles_while_it_keeps_dying_and_starts_over_once_it_stayed_up(world):
    supervisor, clock, processes, _ = world
    waits = []
    for _ in range(4):
        processes["ticketing"].code = 1
        supervisor.check()
        waits.append(supervisor.records["ticketing"].restart_at - clock.now)
        clock.now = supervisor.records["ticketing"].restart_at
        supervisor.check()
    assert waits == [0.5, 1.0, 2.0, 4.0]
    clock.now += STABLE_AFTER
    processes["ticketing"].code = 1
    supervisor.check()
    assert supervisor.records["ticketing"].restart_at - clock.now == 0.5
    assert backoff(50) == MAX_BACKOFF


def test_a_process_that_cannot_start_is_tried_again_later_not_counted(world):
    supervisor, clock, processes, _ = world
    processes["nats"].code, processes["nats"].fail_to_start = 1, True
    supervisor.check()
    clock.now += 60
    supervisor.check()
    assert supervisor.restarts("nats") == 0
    processes["nats"].fail_to_start = False
    clock.now += 60
    supervisor.check()
    assert supervisor.restarts("nats") == 1


def test_a_process_stopped_on_purpose_is_not_started_again(world):
    supervisor, _clock, processes, state = world
    del processes["ticketing"]  # the stack stopped it: no longer listed
    supervisor.check()
    assert "ticketing" not in json.loads(state.read_text())["processes"]
    supervisor.stop()
    assert not state.exists()
