"""Free ports: a caller asking for several before binding any gets different ones."""

from __future__ import annotations

import random

from rekey.stack import ports


def test_ports_asked_for_before_any_is_bound_are_all_different(monkeypatch) -> None:
    # A generator that keeps offering the same few ports, as a birthday collision would.
    chooser = random.Random(7)
    monkeypatch.setattr(ports.random, "randint", lambda low, high: chooser.choice([24_001, 24_002, 24_003]))
    monkeypatch.setattr(ports, "_bindable", lambda host, port: True)  # whoever else runs here
    ports._recent.clear()
    chosen = [ports.free_port() for _ in range(3)]
    assert sorted(chosen) == [24_001, 24_002, 24_003]
