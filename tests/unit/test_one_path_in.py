"""How an edge reaches an application: in_thread's conflict retry, and endpoints' arguments."""

from __future__ import annotations

import asyncio
import threading

import pytest
from eventsourcing.persistence import IntegrityError
from pydantic import BaseModel

from shared.bus.rpc import Endpoint, dispatch
from shared.concurrency import CONFLICT_ATTEMPTS, in_thread, on_the_loop, threads_settled


class Losing:
    """A get-mutate-save method whose save loses the race ``losses`` times."""

    def __init__(self, losses: int) -> None:
        self.losses = losses
        self.attempts = 0
        self.threads: set[int] = set()

    def save(self, value: str, *, suffix: str = "") -> str:
        self.attempts += 1
        self.threads.add(threading.get_ident())
        if self.attempts <= self.losses:
            raise IntegrityError("another writer saved this version first")
        return value + suffix


async def test_a_method_that_loses_a_save_race_runs_again_off_the_loop():
    method = Losing(losses=2)
    assert await in_thread(method.save, "saved", suffix="!") == "saved!"
    assert method.attempts == 3
    assert threading.get_ident() not in method.threads


async def test_a_conflict_that_never_ends_is_raised_after_the_last_attempt():
    method = Losing(losses=CONFLICT_ATTEMPTS)
    with pytest.raises(IntegrityError):
        await in_thread(method.save, "never")
    assert method.attempts == CONFLICT_ATTEMPTS


async def test_an_async_edge_function_is_called_as_it_is():
    async def edge(value: str) -> str:
        return value

    assert on_the_loop(edge) is edge
    assert await on_the_loop(Losing(losses=1).save)("synchronous") == "synchronous"


class Lookup(BaseModel):
    username: str
    state: str | None = None


async def test_an_endpoint_gives_the_command_or_with_spread_its_fields_in_order():
    def fields(username: str, state: str | None) -> list[str | None]:
        return [username, state]

    def command(cmd: Lookup) -> str:
        return type(cmd).__name__

    data = b'{"username": "jane", "state": "open"}'
    spread = await dispatch(Endpoint(Lookup, on_the_loop(fields), spread=True), data)
    whole = await dispatch(Endpoint(Lookup, on_the_loop(command)), data)
    assert spread == {"ok": True, "result": ["jane", "open"]}
    assert whole == {"ok": True, "result": "Lookup"}


async def test_a_store_call_whose_caller_was_cancelled_is_waited_for_before_closing() -> None:
    started, release = threading.Event(), threading.Event()

    def slow_save() -> None:
        started.set()
        release.wait(5)

    task = asyncio.ensure_future(in_thread(slow_save))
    await asyncio.to_thread(started.wait, 5)
    task.cancel()  # as a stopping service cancels a send: the thread goes on
    assert not threads_settled(0.05)  # still running: closing the store now would crash
    release.set()
    assert await asyncio.to_thread(threads_settled, 5)
