"""A service answers requests side by side on a real nats-server with the bus policy: a
request still being answered does not hold up the next one to the same endpoint (a nats-py
subscription runs its callback for one message at a time, so sixteen sign-ins used to queue
behind one argon2 verification each). A stopping service answers what it took before its
connection drains."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from shared.bus.connection import connect
from shared.bus.rpc import Endpoint, InFlight, serve_endpoints
from shared.client import RekeyClient
from tests.conftest import StoreChoice
from tests.integration.conftest import eventually


@pytest.fixture
def store() -> StoreChoice:
    """The bus is under test here, not the stores."""
    return StoreChoice("sqlite")


class Probe(BaseModel):
    n: int


class Waiting:
    """An endpoint whose first request waits until the second one has reached the service."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.second_arrived = asyncio.Event()
        self.let_go = asyncio.Event()

    async def answer(self, probe: Probe) -> dict[str, Any]:
        self.started.append(probe.n)
        if probe.n == 1:
            await self.second_arrived.wait()
        else:
            self.second_arrived.set()
        await self.let_go.wait()
        return {"n": probe.n}


async def serving(nats_server, settings_factory, in_flight: InFlight) -> tuple[Any, Any, Waiting]:
    settings = settings_factory(nats_server)
    service = await connect(settings, "credentials", name="probe-service")
    endpoint = Waiting()
    await serve_endpoints(service, "credentials", {"probe": Endpoint(Probe, endpoint.answer)},
                          in_flight)
    caller = await connect(settings, "operator", name="probe-caller")
    return service, caller, endpoint


async def test_a_request_to_an_endpoint_is_answered_while_another_one_waits(
    nats_server, settings_factory,
):
    service, caller, endpoint = await serving(nats_server, settings_factory, InFlight())
    client = RekeyClient(caller, timeout=10)
    try:
        first = asyncio.create_task(client.call("credentials", "probe", n=1))
        await eventually(lambda: endpoint.started == [1], what="the first request to start")
        second = asyncio.create_task(client.call("credentials", "probe", n=2))
        # Answered one at a time, the second would wait behind the first for ever.
        await eventually(lambda: endpoint.started == [1, 2], what="the second to start too")
        endpoint.let_go.set()
        assert await asyncio.gather(first, second) == [{"n": 1}, {"n": 2}]
    finally:
        await caller.close()
        await service.close()


async def test_a_stopping_service_answers_the_requests_it_took_before_it_drains(
    nats_server, settings_factory,
):
    in_flight = InFlight()
    service, caller, endpoint = await serving(nats_server, settings_factory, in_flight)
    client = RekeyClient(caller, timeout=10)
    try:
        calls = [asyncio.create_task(client.call("credentials", "probe", n=n)) for n in (1, 2)]
        await eventually(lambda: sorted(endpoint.started) == [1, 2], what="both to start")
        settling = asyncio.create_task(in_flight.settle(timeout=10))
        await asyncio.sleep(0)  # settle has begun: no request is a task of its own any more
        assert in_flight.stopping and not settling.done()
        endpoint.let_go.set()
        assert await settling is True
        await service.drain()
        assert sorted(a["n"] for a in await asyncio.gather(*calls)) == [1, 2]
    finally:
        await caller.close()
        if not service.is_closed:
            await service.close()
