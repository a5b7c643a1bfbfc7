"""What an operator sees: health figures that reveal a relay or a consumer falling behind."""

from __future__ import annotations

from shared.contracts.envelope import STREAM_NAME
from tests.integration.conftest import System, eventually, start_all


async def test_health_shows_no_lag_once_every_event_is_relayed_and_consumed(system: System):
    await start_all(system)
    await system.provision()
    await system.approved_ticket()

    await eventually(system.caught_up, what="every relay and consumer to catch up")
    ticketing = await system.call("ticketing", "health")
    assert ticketing["max_notification_id"] > 0
    assert ticketing["relay_position"] == ticketing["max_notification_id"]


async def test_a_stopped_consumer_s_backlog_is_visible_and_drains_after_restart(system: System):
    await start_all(system)
    await system.provision()
    await system.stop("verification")
    await system.approved_ticket()
    js = system._nc.jetstream()

    async def backlog() -> int:
        return int((await js.consumer_info(STREAM_NAME, "verification")).num_pending)

    assert await eventually(backlog, what="the ResetApproved backlog") >= 1
    await system.start("verification")

    async def drained() -> bool:
        health = await system.call("verification", "health")
        return health["consumer_pending"] == 0 and health["consumer_unacked"] == 0

    await eventually(drained, what="the backlog to drain")
    assert "MethodsRevoked" in system.event_names("verification")
