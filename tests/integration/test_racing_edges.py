"""Edges racing on one aggregate: every edge reaches the application through ``in_thread``,
so a writer that loses the optimistic-concurrency race runs again instead of failing."""

from __future__ import annotations

import asyncio
import threading

import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from rekey.stack.ports import free_port
from services.ticketing.commands import RequestReset
from shared.caught import list_mails
from tests.integration.conftest import (
    AGENT_PASSWORD,
    USER,
    USER_EMAIL,
    System,
    eventually,
    start_all,
)
from tests.integration.test_intake_mail import HELPDESK, WELL_FORMED, mail

ROUNDS = 6  # requests per edge, all at once, all joining the same open ticket
SIGN_INS_AT_ONCE = 12


@pytest.fixture
async def intake(system: System) -> System:
    system.settings.intake_port = free_port()
    system.settings.helpdesk_address = HELPDESK
    system.settings.requests_per_sender = 100  # the race, not the rate limit, is under test
    system.settings.requests_per_account = 100
    await start_all(system)
    await system.provision()
    return system


async def test_mail_and_bus_requests_racing_on_one_ticket_all_succeed(intake: System):
    first = await intake.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                              username=USER, reason="new phone")

    async def by_mail() -> str:
        _, reply = await aiosmtplib.send(
            mail(USER_EMAIL, WELL_FORMED), hostname="127.0.0.1",
            port=intake.settings.intake_port, sender=USER_EMAIL, recipients=[HELPDESK], timeout=10,
        )
        return reply

    async def by_bus() -> str:
        ticket = await intake.call("ticketing", "request_reset", name="Jane Doe",
                                   email=USER_EMAIL, username=USER, reason="new phone")
        return str(ticket["ticket_number"])

    replies = await asyncio.gather(*(by_mail() for _ in range(ROUNDS)),
                                   *(by_bus() for _ in range(ROUNDS)))

    assert all("Request received" in reply for reply in replies[:ROUNDS]), replies
    assert set(replies[ROUNDS:]) == {first["ticket_number"]}
    [ticket] = intake.app("ticketing").list_tickets("open")
    assert ticket["joined_requests"] == 2 * ROUNDS
    await eventually(  # and each mail's acknowledgement, recorded on the same ticket meanwhile
        lambda: len([m for m in list_mails(intake.mail.folder) if "received" in m.subject])
        == ROUNDS
    )


async def test_a_ticket_shown_while_a_request_joins_it_is_one_consistent_view(
    intake: System, monkeypatch: pytest.MonkeyPatch
):
    """``show`` reads the ticket, then its events for the timeline. A save between the two
    reads (a request joining, a flag) must not appear in the timeline of a state without it:
    the console would show a noted method with no flag, and a test once did."""
    first = await intake.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                              username=USER, reason="new phone")
    app = intake.app("ticketing")
    read = app.ticket

    def read_then_another_request_joins(ref: str):
        ticket = read(ref)
        app.request_reset(RequestReset(name="Jane Doe", email=USER_EMAIL, username=USER,
                                       reason="still no phone"))
        return ticket

    monkeypatch.setattr(app, "ticket", read_then_another_request_joins)
    shown = await intake.call("ticketing", "show", ticket=first["ticket_number"])

    joins = [t for t in shown["timeline"] if t["event"] == "RequestJoined"]
    assert shown["joined_requests"] == len(joins) == 0
    monkeypatch.undo()
    shown = await intake.call("ticketing", "show", ticket=first["ticket_number"])
    assert shown["joined_requests"] == 1 and [t["event"] for t in shown["timeline"]].count(
        "RequestJoined") == 1


async def test_a_request_run_again_after_losing_a_race_counts_once_against_the_limits(
    intake: System, monkeypatch: pytest.MonkeyPatch
):
    """Two new tickets at once race on the log of all tickets; the loser is run again. Its
    first attempt must not count against the sender's and the account's limits: at one
    request each, the retry was refused "too many requests" (sixteen resets at once did
    that to the benchmark with the default limits)."""
    intake.settings.requests_per_sender = intake.settings.requests_per_account = 1
    app = intake.app("ticketing")
    log, raced = app.all_tickets, []

    class Racing:
        def entry(self, aggregate_id):
            entry = log.entry(aggregate_id)  # the next position, read...
            if not raced:  # ...and taken by another request before this one saves
                raced.append(True)
                other = threading.Thread(target=app.request_reset, args=(RequestReset(
                    name="Someone Else", email="someone@example.org",
                    username="someone.else@masspasrr.org", reason="new phone"),))
                other.start()
                other.join()
            return entry

        def __getattr__(self, name: str):
            return getattr(log, name)

    monkeypatch.setattr(app, "all_tickets", Racing())
    answer = await intake.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                               username=USER, reason="new phone")

    assert raced and answer["joined"] is False
    assert len(app.list_tickets("open")) == 2


def _argon2_verifications() -> float:
    return REGISTRY.get_sample_value("rekey_argon2_seconds_count", {"operation": "verify"}) or 0.0


async def test_sign_ins_racing_on_one_account_all_succeed_and_verify_the_password_once_each(
    system: System,
):
    """Every sign-in is an event on the account, so sign-ins at once on one account race to
    save and the losers run again. The password was verified again in every attempt: each
    retry cost another argon2id verification (concurrent guesses on one account multiplied
    the CPU they cost), and with the retries' waits for an argon2id slot the same request
    could lose ten times and answer "internal error"."""
    await start_all(system)
    await system.provision()
    racer = "racing.user@masspasrr.org"
    await system.call("credentials", "register_account", username=racer,
                      email="racing.user@example.org", display_name="Racing User",
                      password=AGENT_PASSWORD, principal=system.operator())
    before = _argon2_verifications()

    answers = await asyncio.gather(*(
        system.call("credentials", "sign_in", username=racer, password=AGENT_PASSWORD)
        for _ in range(SIGN_INS_AT_ONCE)))

    assert all(answer["username"] == racer and answer["token"] for answer in answers)
    assert _argon2_verifications() - before == SIGN_INS_AT_ONCE
    names = system.event_names("credentials")
    assert names.count("SignInSucceeded") == SIGN_INS_AT_ONCE
