"""Free ports: a caller asking for several before binding any gets different ones."""

from __future__ import annotations

import os
import random

from rekey.stack import ports


def test_ports_asked_for_before_any_is_bound_are_all_different(monkeypatch, tmp_path) -> None:
    # A generator that keeps offering the same few ports, as a birthday collision would.
    chooser = random.Random(7)
    monkeypatch.setattr(ports.random, "randint", lambda low, high: chooser.choice([24_001, 24_002, 24_003]))
    monkeypatch.setattr(ports, "_bindable", lambda host, port: True)  # whoever else runs here
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "reservations")
    ports._recent.clear()
    chosen = [ports.free_port() for _ in range(3)]
    assert sorted(chosen) == [24_001, 24_002, 24_003]


def test_a_port_another_process_was_just_given_is_not_given_again(monkeypatch, tmp_path) -> None:
    # Workers side by side: each chooses at random, and a port one was given is unbound until
    # its server starts. The reservation is kept on the machine, not in the process.
    offered = iter([24_001, 24_001, 24_001, 24_002])
    monkeypatch.setattr(ports.random, "randint", lambda low, high: next(offered))
    monkeypatch.setattr(ports, "_bindable", lambda host, port: True)  # nothing bound it yet
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "reservations")
    ports._recent.clear()
    assert ports.free_port() == 24_001
    ports._recent.clear()  # as another process, which never saw that choice
    assert ports.free_port() == 24_002


def test_a_reservation_ends_after_its_time(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(ports.random, "randint", lambda low, high: 24_001)
    monkeypatch.setattr(ports, "_bindable", lambda host, port: True)
    monkeypatch.setattr(ports, "RESERVATIONS", tmp_path / "reservations")
    ports._recent.clear()
    assert ports.free_port() == 24_001
    ports._recent.clear()
    old = ports.time.time() - ports.RESERVED_SECONDS - 1
    os.utime(tmp_path / "reservations" / "24001", (old, old))
    assert ports.free_port() == 24_001
