"""The one sliding-window limiter (ticketing requests, sign-in attempts, the portal's forms)."""

from __future__ import annotations

from shared.clock import ManualClock
from shared.rate_limits import SlidingWindow


def test_hits_beyond_the_limit_are_refused_until_the_window_slides_past_them():
    clock = ManualClock()
    window = SlidingWindow(2, 60.0, clock=clock)

    assert [window.allow("jane") for _ in range(3)] == [True, True, False]
    clock.advance(59)
    assert window.allow("jane") is False
    clock.advance(2)
    assert window.allow("jane") is True


def test_keys_are_counted_apart():
    window = SlidingWindow(1, 60.0, clock=ManualClock())

    assert window.allow("jane") and window.allow("john")
    assert not window.allow("jane")


def test_a_hit_refused_for_one_key_is_counted_on_none():
    window = SlidingWindow(5, 60.0, clock=ManualClock())
    limits = {"sender:a": 1, "account:x": 5}

    assert window.allow_each(limits)
    assert not window.allow_each(limits)  # the sender's limit is reached...
    assert all(window.allow_each({"account:x": 5}) for _ in range(4))  # ...x's used only once
    assert not window.allow_each({"account:x": 5})


def test_the_least_recently_used_keys_are_forgotten_beyond_the_bound():
    window = SlidingWindow(1, 60.0, clock=ManualClock(), max_keys=2)

    assert window.allow("a") and window.allow("b") and window.allow("c")
    assert window.allow("a")  # forgotten, so allowed again
    assert not window.allow("c")
