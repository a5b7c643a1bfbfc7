"""Two processes of one service on one store (architecture, section 16; deploy/README.md, "Scale"):
both answer requests (the endpoints are a queue group), both consume (one durable pull
consumer), one relays and sweeps (the duties' lock in the store's database), and every effect
happens once: one temporary password and one mail per approval, each event once on the stream,
each intent left open at a stop sent once though both processes start together, and when the
one on duty dies the other takes over without sending anything twice."""

from __future__ import annotations

import asyncio
from collections import Counter

from services.ticketing.application import TicketingApplication
from services.ticketing.commands import RejectReset, RequestReset
from shared.bus import republish
from shared.caught import list_mails
from tests.integration.conftest import (
    AGENT,
    USER,
    USER_EMAIL,
    System,
    eventually,
    from_the_web_form,
    start_all,
)

USERS = [(f"replica.user{i}@masspasrr.org", f"replica.user{i}@example.org") for i in range(6)]


def requests_served(system: System, name: str) -> int:
    stats = system.runtimes[name].service.stats()
    return sum(endpoint.num_requests for endpoint in stats.endpoints)


def mails_to(system: System, address: str, subject: str = "") -> int:
    return sum(1 for m in list_mails(system.mail.folder)
               if address in m.to and subject in m.subject.lower())


def stored(system: System, service: str) -> list[str]:
    notifications = system.app(service).recorder.select_notifications(start=1, limit=10_000)
    return [n.topic.rsplit(".", 1)[-1] for n in notifications]


async def test_two_credentials_processes_on_one_store_both_serve_and_consume_and_mail_once(
    system: System,
):
    await start_all(system)
    await system.start("credentials", replica="2", duty_poll_seconds=0.5)
    one, two = system.runtimes["credentials"], system.runtimes["credentials#2"]
    assert [one.duties.held, two.duties.held] == [True, False]  # the first one relays and sweeps
    await system.provision()
    for username, email in USERS:
        await system.call("credentials", "register_account", username=username, email=email,
                          display_name="Replica User", principal=system.operator())
    await eventually(lambda: all(system._ticketing_knows(u) for u, _ in USERS),
                     what="ticketing to know every user")

    for username, email in USERS:
        ticket = await system.call("ticketing", "request_reset", name="Replica User", email=email,
                                   username=username, reason="new phone")
        await system.prove_identity(ticket["ticket_number"])
        await system.call("ticketing", "approve", ticket=ticket["ticket_number"],
                          principal=system.principal(AGENT))
    await eventually(lambda: all(mails_to(system, e, "temporary") for _, e in USERS),
                     timeout=30, what="every temporary password's mail")
    await eventually(lambda: stored(system, "credentials").count("TemporaryPasswordSent")
                     == len(USERS), timeout=30, what="every mail recorded sent")

    # both serve: the server hands each request to either at random, so the few above can all
    # have gone to one (seen: 0 for the first); ask until each has answered one
    async def both_served() -> bool:
        await system.call("credentials", "list_agents", principal=system.operator())
        return all(requests_served(system, name) > 0 for name in ("credentials", "credentials#2"))

    await eventually(both_served, what="both replicas to answer a request")
    # both consumed
    assert one.consumer.processed > 0 and two.consumer.processed > 0, (
        one.consumer.processed, two.consumer.processed)
    # each effect once
    names = stored(system, "credentials")
    assert names.count("PasswordIssued") == len(USERS)
    assert [mails_to(system, e, "temporary") for _, e in USERS] == [1] * len(USERS)
    # each event once on the stream: the relay on duty published them, the other none. Read
    # together once both are quiet: notices (methods revoked) are still being recorded and
    # mailed after the temporary passwords, so a count taken between two reads can miss one.
    app = system.app("credentials")

    async def each_public_event_once_on_the_stream() -> bool:
        if app.relay_position() != app.max_notification_id():
            return False
        public = len(list(app.envelopes()))
        on_stream = await republish.stream_event_count(system._nc.jetstream(), "credentials")
        return on_stream == public == one.relay.published and two.relay.published == 0

    await eventually(each_public_event_once_on_the_stream,
                     what="the relay on duty to publish what both recorded, each event once")


async def test_intents_left_open_are_sent_once_when_two_processes_start_together_and_once_more_never(
    system: System,
):
    await start_all(system)
    await system.provision()
    await system.stop("ticketing")
    # The mails' intents recorded while nothing sends them (a stop between saving and sending).
    offline = TicketingApplication(system.settings)
    with from_the_web_form():
        number = offline.request_reset(RequestReset(
            name="Jane Doe", email=USER_EMAIL, username=USER, reason="new phone",
            channel="web"))["ticket_number"]
    offline.reject(RejectReset(ticket=number, principal=system.principal(), reason="no answer"))
    offline.close()

    await asyncio.gather(system.start("ticketing", duty_poll_seconds=0.5),
                         system.start("ticketing", replica="2", duty_poll_seconds=0.5))
    on_duty = [name for name in ("ticketing", "ticketing#2") if system.runtimes[name].duties.held]
    assert len(on_duty) == 1
    await eventually(lambda: Counter(stored(system, "ticketing"))["RejectionNoticeSent"] == 1,
                     what="the rejection notice sent by the start-up sweep")
    await eventually(lambda: Counter(stored(system, "ticketing"))["AcknowledgementSent"] == 1,
                     what="the acknowledgement sent by the start-up sweep")

    # the process on duty dies: the other takes over, sweeps (nothing is open) and relays
    [standby] = [name for name in ("ticketing", "ticketing#2") if name not in on_duty]
    await system.kill(on_duty[0])
    await eventually(lambda: system.runtimes[standby].duties.held, timeout=10,
                     what="the standby to take the duties over")
    with from_the_web_form():
        again = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                                  username=USER, reason="lost phone", channel="web")
    app = system.app(standby)
    await eventually(lambda: app.relay_position() == app.max_notification_id(),
                     what="the process that took over to relay")
    assert again["ticket_number"] != number
    assert mails_to(system, USER_EMAIL, "not approved") == 1
    await eventually(lambda: Counter(stored(system, standby))["AcknowledgementSent"] == 2,
                     what="the new request's acknowledgement")
    assert mails_to(system, USER_EMAIL) == 3  # two acknowledgements and the notice
    public = len(list(app.envelopes()))
    assert await republish.stream_event_count(system._nc.jetstream(), "ticketing") == public
