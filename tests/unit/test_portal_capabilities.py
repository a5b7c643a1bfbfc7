"""The portal's view of the verification methods: from the endpoints the service serves."""

from __future__ import annotations

from typing import Any

from services.portal.methods import KNOWN_SECONDS, NEEDS, Capabilities
from shared.clock import ManualClock

ALL = {name for names in NEEDS.values() for name in names}


class Served:
    """What ``$SRV.INFO`` would list; counts how often it is asked."""

    def __init__(self, endpoints: set[str]) -> None:
        self.served = endpoints
        self.asked = 0

    async def endpoints(self, service: str) -> set[str]:
        assert service == "verification"
        self.asked += 1
        return self.served


async def test_a_method_is_offered_only_when_every_endpoint_it_needs_is_served():
    bus: Any = Served(ALL - {"start_challenge"})
    known = await Capabilities(ManualClock()).refresh(bus)
    assert known == {"app_code": True, "push": True, "phone": False, "passkey": True}


async def test_an_answer_is_kept_for_a_while_and_asked_again_after_it():
    clock = ManualClock()
    capabilities, bus = Capabilities(clock), Served(set(ALL))
    await capabilities.refresh(bus)
    clock.advance(KNOWN_SECONDS - 1)
    await capabilities.refresh(bus)
    assert bus.asked == 1
    bus.served = ALL - {"start_push"}
    clock.advance(1)
    assert (await capabilities.refresh(bus))["push"] is False
    assert bus.asked == 2


async def test_a_service_that_is_not_running_is_asked_again_at_once():
    capabilities, bus = Capabilities(ManualClock()), Served(set())
    assert await capabilities.refresh(bus) == dict.fromkeys(NEEDS, False)
    bus.served = set(ALL)
    assert await capabilities.refresh(bus) == dict.fromkeys(NEEDS, True)
