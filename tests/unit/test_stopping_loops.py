"""A service's loops end when it stops, without sitting out a poll interval or a fetch's wait
(shared.concurrency.woken_or_stopped, shared.bus.pulling)."""

from __future__ import annotations

import asyncio

import pytest

from shared.bus.pulling import fetch_or_stop, stop_signal
from shared.concurrency import woken_or_stopped

AN_HOUR = 3600.0
BOUND = 5.0  # far longer than any of these takes; an hour when the stop is not seen


class Subscription:
    """A pull subscription whose fetch waits for messages that the test hands it."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[list[str]] = asyncio.Queue()
        self.cancelled = False

    async def fetch(self, batch: int, timeout: float) -> list[str]:
        try:
            return await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_loop_asleep_until_its_next_poll_wakes_when_its_service_stops():
    wake, stopping = asyncio.Event(), asyncio.Event()
    sleeping = asyncio.ensure_future(woken_or_stopped(wake, stopping, AN_HOUR))
    await asyncio.sleep(0)
    assert not sleeping.done()

    stopping.set()

    await asyncio.wait_for(sleeping, BOUND)
    assert not wake.is_set()


async def test_a_loop_asleep_until_its_next_poll_wakes_when_woken():
    wake, stopping = asyncio.Event(), asyncio.Event()
    sleeping = asyncio.ensure_future(woken_or_stopped(wake, stopping, AN_HOUR))

    wake.set()

    await asyncio.wait_for(sleeping, BOUND)
    assert not stopping.is_set()


async def test_a_loop_asleep_until_its_next_poll_wakes_at_the_poll():
    await asyncio.wait_for(woken_or_stopped(asyncio.Event(), asyncio.Event(), 0.01), BOUND)


async def test_a_fetch_waiting_for_messages_is_cancelled_when_the_service_stops():
    subscription, stopping = Subscription(), asyncio.Event()
    with stop_signal(stopping) as stopped:
        fetching = asyncio.ensure_future(fetch_or_stop(subscription, 10, AN_HOUR, stopped))
        await asyncio.sleep(0)

        stopping.set()

        assert await asyncio.wait_for(fetching, BOUND) is None
    assert subscription.cancelled


async def test_a_fetch_that_gets_messages_first_returns_them():
    subscription, stopping = Subscription(), asyncio.Event()
    await subscription.messages.put(["one", "two"])
    with stop_signal(stopping) as stopped:
        assert await fetch_or_stop(subscription, 10, AN_HOUR, stopped) == ["one", "two"]
        assert not stopped.done()
    await asyncio.sleep(0)
    assert stopped.cancelled()  # no waiter left behind


async def test_a_fetch_that_times_out_raises_its_timeout():
    with stop_signal(asyncio.Event()) as stopped, pytest.raises(TimeoutError):
        await fetch_or_stop(Subscription(), 10, 0.01, stopped)
