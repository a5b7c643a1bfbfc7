"""Indexes instead of log scans, and stores recorded before the indexes existed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.utils import get_topic

from services.credentials.application import CredentialsApplication
from services.credentials.domain import Account
from services.ticketing.application import TicketingApplication
from services.ticketing.commands import RejectReset, RequestReset
from services.ticketing.domain import AccountFile, QuarantinedMail, Ticket
from shared.clock import ManualClock
from shared.contracts.ticketing import ticket_number
from shared.errors import NotFound
from shared.indexes import IndexesBackfilled
from tests.integration.conftest import AGENT, USER, USER_EMAIL, System, start_all


def backfills(app: Any) -> list[IndexesBackfilled]:
    topic = get_topic(IndexesBackfilled.IndexesBackfilled)  # type: ignore[attr-defined]
    found = app.recorder.select_notifications(1, 100, topics=[topic])
    return [app.repository.get(n.originator_id) for n in found]


def old_ticket(app: TicketingApplication, username: str = USER) -> Ticket:
    """A ticket saved as the code before the indexes saved it: no number index, no log entry."""
    ticket = Ticket(name="Jane Doe", email=USER_EMAIL, username=username, reason="new phone",
                    requested_by=username, channel="api")
    app.save(ticket)
    return ticket


async def test_tickets_recorded_before_the_indexes_are_found_after_a_restart(system: System):
    before = TicketingApplication(system.settings)
    old = old_ticket(before)
    before.save(QuarantinedMail(reason="no username", sender="x@example.org", size=10,
                                digest="d" * 64, path="/q/x.eml"))
    with pytest.raises(NotFound):
        before.ticket(ticket_number(old.id))  # what the upgrade must fix
    before.close()

    await start_all(system)
    await system.provision()
    shown = await system.call("ticketing", "show", ticket=ticket_number(old.id))
    assert shown["ticket_id"] == str(old.id)
    fresh = await system.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                              username="other@masspasrr.org", reason="new phone")
    listed = [t["ticket_number"] for t in await system.call("ticketing", "list")]
    assert listed == [ticket_number(old.id), fresh["ticket_number"]]
    [kept] = await system.call("ticketing", "quarantine")
    assert kept["reason"] == "no username"
    await system.prove_identity(ticket_number(old.id))
    await system.call("ticketing", "approve", ticket=ticket_number(old.id), principal=system.principal())

    app = system.app("ticketing")
    [backfilled] = backfills(app)
    assert backfilled.entries == 3  # the number index and the log entry, the quarantined mail
    assert app.backfill_indexes() == 0  # once per store
    assert len(list(app.all_tickets.ids())) == 2


async def test_a_new_store_starts_without_recording_anything(system: System):
    await system.start("ticketing")
    await system.start("credentials")
    assert system.app("ticketing").max_notification_id() == 0
    assert system.app("credentials").max_notification_id() == 0


def test_two_old_tickets_sharing_a_number_leave_it_to_the_first(system: System):
    app = TicketingApplication(system.settings)
    try:
        first = old_ticket(app)
        twin_id = UUID(first.id.hex[:8] + "f" * 24)  # the number is the id's first 8 hex digits
        app.save(Ticket._create(Ticket.ResetRequested, id=twin_id, name="B",  # type: ignore[attr-defined]
                                email="b@example.org", username="b@masspasrr.org", reason="r",
                                requested_by="b@masspasrr.org", channel="api",
                                sender_verified=True, client=None))

        assert app.backfill_indexes() == 3  # one number index, two log entries
        assert app.ticket(ticket_number(first.id)).id == first.id
        assert [t["ticket_id"] for t in app.list_tickets()] == [str(first.id), str(twin_id)]
    finally:
        app.close()


def test_accounts_registered_before_the_accounts_log_are_logged_by_the_backfill_and_swept(
    system: System,
):
    app = CredentialsApplication(system.settings)
    try:
        account = Account(username=USER, email=USER_EMAIL, display_name="Jane Doe", role="user",
                          actor="operator")
        account.issue_temporary_password("old-hash", app.clock.now() + timedelta(hours=1), None)
        app.save(account)  # saved as before the accounts log
        assert list(app.all_accounts.ids()) == []

        assert app.backfill_indexes() == 1
        assert list(app.all_accounts.ids()) == [account.id]
        # The sweep reads what changed since its checkpoint, not the accounts log.
        [delivery] = app.reissue_undelivered()
        assert delivery.username == USER
        assert app.backfill_indexes() == 0
        assert [b.entries for b in backfills(app)] == [1]
    finally:
        app.close()


def test_the_open_list_and_the_expiry_sweep_see_every_undecided_ticket(system: System):
    clock = ManualClock()
    app = TicketingApplication(system.settings, clock=clock)
    try:
        agent = AccountFile(username=AGENT)
        agent.note_account(role="agent")
        app.save(agent)

        def ask(username: str) -> str:
            cmd = RequestReset(name="N", email=USER_EMAIL, username=username, reason="r")
            return str(app.request_reset(cmd)["ticket_number"])

        def reject(number: str) -> None:
            app.reject(RejectReset(ticket=number, principal=system.principal(), reason="no"))

        def open_numbers() -> list[str]:
            return [t["ticket_number"] for t in app.list_tickets("open")]

        first, second, third = ask("a@x.org"), ask("b@x.org"), ask("c@x.org")
        reject(first)
        reject(third)
        assert open_numbers() == [second]
        assert open_numbers() == [second]  # asked again: still there
        reject(second)
        assert open_numbers() == []
        fourth = ask("d@x.org")
        assert open_numbers() == [fourth]
        last_handled = app.ticket(fourth).handled_on  # stamped by the wall clock, which ran on
        clock.advance_to(last_handled + timedelta(hours=system.settings.ticket_expiry_hours,
                                                  seconds=1))
        assert app.expire_stale() == [fourth]
        assert open_numbers() == []
    finally:
        app.close()
