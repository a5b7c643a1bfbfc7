"""Crashes at the worst moments change nothing: tracking records, msg-id de-duplication, catch-up."""

from __future__ import annotations

import asyncio

from services.ticketing.commands import ApproveReset, RequestReset
from shared.concurrency import in_thread
from shared.contracts.envelope import STREAM_NAME
from tests.integration.conftest import USER, USER_EMAIL, System, eventually, start_all


async def hang_forever(*_: object) -> None:
    """Stands for a process that dies right here: whatever comes next never happens."""
    await asyncio.Event().wait()


async def stream_messages(system: System) -> int:
    info = await system._nc.jetstream().stream_info(STREAM_NAME)
    return int(info.state.messages)


async def test_a_consumer_killed_after_its_commit_and_before_its_ack_records_nothing_new(
    system: System,
):
    await system.start("credentials")
    await system.start("ticketing", consumer_ack_wait=1.0, consumer_hook=hang_forever)
    await system.call("credentials", "register_account", username=USER,
                      email="jane@example.org", display_name="Jane", principal=system.operator())
    ticketing = system.app("ticketing")
    await eventually(lambda: ticketing.max_notification_id() > 0, what="ticketing's commit")
    recorded = ticketing.max_notification_id()
    await system.kill("ticketing")

    restarted = await system.start("ticketing", consumer_ack_wait=1.0)
    await eventually(lambda: restarted.consumer.processed == 1, what="the redelivery's ack")
    assert system.app("ticketing").max_notification_id() == recorded
    assert system.event_names("ticketing") == []  # AccountNoted has no public contract
    assert restarted.consumer.processed == 1


async def registered_on_the_stream(system: System, prefix: str, count: int = 5) -> list[str]:
    """Credentials running alone registers ``count`` accounts and relays them all: a consumer
    started next finds them waiting, and one fetch takes them together."""
    await system.start("credentials")
    users = [f"{prefix}{i}@masspasrr.org" for i in range(count)]
    for user in users:
        await system.call("credentials", "register_account", username=user,
                          email=f"{user.split('@')[0]}@example.org", display_name="B",
                          principal=system.operator())
    credentials = system.app("credentials")
    await eventually(lambda: credentials.relay_position() == credentials.max_notification_id(),
                     what="credentials' relay")
    return users


async def test_a_consumer_killed_after_committing_a_batch_and_before_its_acks_records_nothing_new(
    system: System,
):
    users = await registered_on_the_stream(system, "batch")  # ticketing's next fetch: all five
    first = await system.start("ticketing", consumer_ack_wait=1.0, consumer_hook=hang_forever)
    ticketing = system.app("ticketing")
    await eventually(lambda: ticketing.max_notification_id() > 0, what="ticketing's commit")
    # the five recorded in one transaction (counted a moment after its commit is visible)
    await eventually(lambda: first.consumer.batches == 1, what="the batch's count")
    assert all(ticketing._file(user).known for user in users)
    recorded = ticketing.max_notification_id()
    await system.kill("ticketing")

    restarted = await system.start("ticketing", consumer_ack_wait=1.0)
    await eventually(lambda: restarted.consumer.processed == len(users), what="the redeliveries")
    assert system.app("ticketing").max_notification_id() == recorded  # every tracking row was there


async def test_the_audit_service_killed_after_committing_a_fetched_run_keeps_each_event_once(
    system: System,
):
    users = await registered_on_the_stream(system, "audited")  # the audit's next fetch: all five
    first = await system.start("audit", consumer_ack_wait=1.0, consumer_hook=hang_forever)
    # the five recorded in one transaction (counted a moment after its commit is visible)
    await eventually(lambda: first.consumer.batches == 1, what="the run's count")
    counted = await system.call("audit", "count", types=["AccountRegistered"])
    assert counted["count"] == len(users)
    projection = system.app("audit").projection
    noted = projection._select("SELECT COUNT(*) AS n FROM {stream}", [])[0]["n"]
    assert noted == len(users), "each message's stream sequence is noted for erasure"
    await system.kill("audit")

    restarted = await system.start("audit", consumer_ack_wait=1.0)
    await eventually(lambda: restarted.consumer.processed == len(users), what="the redeliveries")
    again = await system.call("audit", "count", types=["AccountRegistered"])
    assert again["count"] == len(users)  # every tracking row was there: no second row
    for user in users:
        history = await system.call("audit", "history", username=user)
        assert [e["name"] for e in history] == ["AccountRegistered"]


async def test_a_relay_killed_after_publishing_re_publishes_and_the_stream_drops_the_copy(
    system: System,
):
    await system.start("credentials", relay_hook=hang_forever)
    await system.call("credentials", "register_account", username=USER,
                      email="jane@example.org", display_name="Jane", principal=system.operator())
    await eventually(lambda: stream_messages(system), what="the publish")
    assert system.app("credentials").relay_position() == 0  # never saved
    await system.kill("credentials")

    restarted = await system.start("credentials")
    app = system.app("credentials")
    await eventually(lambda: app.relay_position() == app.max_notification_id(), what="relay")
    assert await stream_messages(system) == 1
    assert restarted.relay.published == 0  # JetStream answered "duplicate"


async def test_a_service_stopped_while_events_are_published_catches_up_on_restart(
    system: System,
):
    await start_all(system)
    await system.provision()
    await system.stop("verification")

    await system.approved_ticket()
    await eventually(lambda: "TemporaryPasswordSent" in system.event_names("credentials"))

    await system.start("verification")
    await eventually(lambda: "MethodsRevoked" in system.event_names("verification"),
                     what="verification to catch up")


async def test_events_recorded_while_nats_is_down_are_delivered_after_it_restarts(
    system: System,
):
    await start_all(system)
    await system.provision()
    ticketing = system.app("ticketing")
    ticket = await in_thread(
        ticketing.request_reset,
        RequestReset(name="Jane", email=USER_EMAIL, username=USER, reason="new phone"),
    )
    await system.prove_identity(ticket["ticket_number"])
    system.nats.stop()
    # The help desk records a decision while the bus is down (the store is the source of
    # truth; the relay owes the bus everything after its saved position).
    relay = system.runtimes["ticketing"].relay
    assert relay is not None
    taken = relay.read
    await in_thread(ticketing.approve, ApproveReset(ticket=ticket["ticket_number"],
                                                    principal=system.principal()))
    # the relay has taken the decision from the log and cannot hand it to the bus
    await eventually(lambda: relay.read > taken, what="the relay to try")
    assert "MethodsRevoked" not in system.event_names("verification")
    assert ticketing.relay_position() < ticketing.max_notification_id()

    system.nats.start()
    await eventually(lambda: "MethodsRevoked" in system.event_names("verification"),
                     timeout=30, what="verification after the restart")
    await eventually(lambda: "TemporaryPasswordSent" in system.event_names("credentials"),
                     timeout=30, what="credentials after the restart")
