"""The one request a service's key may make: its own health (what its container's healthcheck
runs, `rekey check <service>`). A stolen service key gains nothing else from it: no other
service's health, none of its own commands, no answer in another's place."""

from __future__ import annotations

import pytest

from shared.bus.identities import IDENTITIES
from shared.client import RekeyClient
from tests.integration.conftest import System, start_all
from tests.security.test_bus_boundary import _as, _refused_request

pytestmark = pytest.mark.security


async def test_a_service_key_cannot_ask_another_service_or_call_its_own_commands(system: System):
    await start_all(system)
    before = {name: system.event_names(name) for name in ("ticketing", "credentials")}
    ticketing = await _as(system, "ticketing")
    try:
        health = await RekeyClient(ticketing, timeout=5).call("ticketing", "health")
        assert health["service"] == "ticketing"  # the healthcheck works
        await _refused_request(ticketing, "rekey.rpc.credentials.health", {})
        await _refused_request(ticketing, "rekey.rpc.ticketing.request_reset", {
            "name": "Mallory", "email": "mallory@example.org", "username": "pat@masspasrr.org",
            "reason": "from a stolen service key"})
        await _refused_request(ticketing, "rekey.rpc.credentials.register_account", {})
    finally:
        await ticketing.close()
    assert {name: system.event_names(name) for name in before} == before


def test_each_service_may_publish_to_its_own_health_and_no_other_endpoint():
    for name, identity in IDENTITIES.items():
        endpoints = [s for s in identity.publish if s.startswith("rekey.rpc.")]
        if identity.responds:  # a service
            assert endpoints == [f"rekey.rpc.{name}.health"], name
