"""What an operator's standard NATS tooling sees: every service answers the NATS micro
``$SRV.PING``, ``$SRV.INFO`` and ``$SRV.STATS`` requests with its endpoints and their counts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.portal.methods import NEEDS, Capabilities
from shared.bus.identities import ERASE_COMMAND, TREE_HEAD_COMMAND
from shared.errors import NotFound
from shared.settings import SERVICES
from tests.conftest import StoreChoice
from tests.integration.conftest import System, start_all


@pytest.fixture
def store() -> StoreChoice:
    """The bus is under test here, not the stores."""
    return StoreChoice("sqlite")


async def everyone(system: System, subject: str, expected: int) -> list[dict[str, Any]]:
    """Every answer to a request sent to all services, as ``nats micro`` collects them."""
    nc = system._nc
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []
    subscription = await nc.subscribe(inbox)
    await nc.publish(subject, b"", reply=inbox)
    try:
        while len(answers) < expected:
            message = await subscription.next_msg(timeout=5)
            answers.append(json.loads(message.data))
    finally:
        await subscription.unsubscribe()
    return answers


async def test_every_service_answers_ping_with_its_name_and_version(system: System):
    await start_all(system)
    pings = await everyone(system, "$SRV.PING", len(SERVICES))
    assert sorted(p["name"] for p in pings) == sorted(SERVICES)
    assert all(p["type"] == "io.nats.micro.v1.ping_response" and p["version"] for p in pings)


# What every service's runtime serves besides its own commands.
RUNTIME_ENDPOINTS = {"history", "health", "republish", "drop_old_snapshots", TREE_HEAD_COMMAND,
                     ERASE_COMMAND}


async def test_info_lists_each_service_s_endpoints_on_their_rekey_subjects(system: System):
    await start_all(system)
    infos = {i["name"]: i for i in await everyone(system, "$SRV.INFO", len(SERVICES))}
    assert sorted(infos) == sorted(SERVICES)
    for name, runtime in system.runtimes.items():
        endpoints = {e["name"]: e for e in infos[name]["endpoints"]}
        assert set(endpoints) == {*runtime.wiring.endpoints, *RUNTIME_ENDPOINTS}
        for command, endpoint in endpoints.items():
            assert endpoint["subject"] == f"rekey.rpc.{name}.{command}"
            assert endpoint["queue_group"] == name
    ticketing = {e["name"]: e for e in infos["ticketing"]["endpoints"]}
    assert ticketing["request_reset"]["metadata"] == {"command": "RequestReset"}


async def test_stats_count_each_endpoint_s_requests_and_their_outcomes(system: System):
    await start_all(system)
    await system.call("ticketing", "list")
    await system.call("ticketing", "list")
    with pytest.raises(NotFound):
        await system.call("ticketing", "show", ticket="RK-NOPE")
    reply = await system._nc.request("$SRV.STATS.ticketing", b"", timeout=5)
    stats = {e["name"]: e for e in json.loads(reply.data)["endpoints"]}
    assert stats["list"]["num_requests"] == 2
    assert stats["show"]["num_requests"] == 1
    assert stats["approve"]["num_requests"] == 0
    assert (stats["list"]["data"], stats["show"]["data"]) == ({"ok": 2}, {"not_found": 1})


async def test_the_portal_learns_the_verification_methods_without_sending_a_command(
    system: System,
):
    assert await Capabilities().refresh(system.client) == dict.fromkeys(NEEDS, False)
    await start_all(system)
    assert await Capabilities().refresh(system.client) == dict.fromkeys(NEEDS, True)
    reply = await system._nc.request("$SRV.STATS.verification", b"", timeout=5)
    asked = {e["name"]: e["num_requests"] for e in json.loads(reply.data)["endpoints"]}
    assert all(asked[endpoint] == 0 for names in NEEDS.values() for endpoint in names)
