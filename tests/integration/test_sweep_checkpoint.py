"""Start-up sweeps read what changed since the last one (``shared.sweeps``): a restart of a
service with a long history loads only the aggregates that opened an intent since, and an
intent still open is never passed over, however often the service restarts before it is
sent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from uuid import UUID

import pytest

from services.credentials.application import CredentialsApplication
from services.credentials.domain import Account
from services.ticketing.application import TicketingApplication
from services.ticketing.commands import RequestReset
from services.ticketing.proofs import EMAIL_CODE
from tests.integration.conftest import AGENT, System

ACCOUNTS = 20


@pytest.fixture
def credentials(system: System) -> Iterator[CredentialsApplication]:
    app = CredentialsApplication(system.settings)
    yield app
    app.close()


@pytest.fixture
def ticketing(system: System) -> Iterator[TicketingApplication]:
    app = TicketingApplication(system.settings)
    yield app
    app.close()


def _registered(app: CredentialsApplication, i: int, role: str = "user") -> Account:
    account = Account(username=f"user{i}@masspasrr.org", email=f"user{i}@example.org",
                      display_name=f"User {i}", role=role, actor="operator")
    app.save(account, app.all_accounts.entry(account.id))
    return account


def _crashed_before_sending(app: CredentialsApplication, account: Account) -> None:
    """A temporary password's intent recorded, and the process gone before it was sent."""
    account = app.repository.get(account.id)
    account.issue_temporary_password("hash", app.clock.now() + timedelta(hours=1), None)
    app.save(account)


def _changed_opening_nothing(app: CredentialsApplication, account: Account) -> None:
    """A change that opens no intent (a password changed): nothing for a sweep to look at."""
    account = app.repository.get(account.id)
    account.change_password("another hash", "changed", account.username)
    app.save(account)


def test_a_sweep_loads_only_what_opened_an_intent_since_the_last_one(
    credentials: CredentialsApplication,
):
    accounts = [_registered(credentials, i) for i in range(ACCOUNTS)]
    assert credentials.reissue_undelivered() == []
    assert credentials.sweeps.looked_at == 0  # the first sweep reads the whole log: none opened one
    credentials.sweeps.advance()

    assert credentials.reissue_undelivered() == [] and credentials.unsent_notices() == []
    assert credentials.sweeps.looked_at == 0  # nothing changed since

    _changed_opening_nothing(credentials, accounts[5])
    _crashed_before_sending(credentials, accounts[3])
    [found] = credentials.reissue_undelivered()
    assert found.username == accounts[3].username
    assert credentials.sweeps.looked_at == 1  # the one account with an intent, not the other


def test_an_intent_left_open_is_found_at_every_start_until_it_is_sent(
    credentials: CredentialsApplication,
):
    accounts = [_registered(credentials, i) for i in range(ACCOUNTS)]
    credentials.sweeps.advance()
    _crashed_before_sending(credentials, accounts[7])
    _registered(credentials, ACCOUNTS)  # and others change after it

    for _ in range(3):  # the process dies again before sending, start after start
        [found] = credentials.reissue_undelivered()
        assert found.username == accounts[7].username
        credentials.sweeps.advance()  # the checkpoint stays before the open intent

    credentials.mark_delivered(found, None)  # sent at last, and recorded
    credentials.sweeps.advance()
    assert credentials.reissue_undelivered() == []
    assert credentials.sweeps.looked_at == 0


def test_every_kind_of_account_intent_left_open_is_found_and_only_those_accounts_load(
    credentials: CredentialsApplication,
):
    accounts = [_registered(credentials, i, role="agent" if i == 3 else "user")
                for i in range(ACCOUNTS)]
    credentials.sweeps.advance()
    for account in accounts[10:]:
        _changed_opening_nothing(credentials, account)
    _crashed_before_sending(credentials, accounts[1])  # a temporary password
    noticed = credentials.repository.get(accounts[2].id)
    noticed.intend_notice("notice-1", "password_changed")  # a notice
    credentials.save(noticed)
    invited = credentials.repository.get(accounts[3].id)
    in_a_day = credentials.clock.now() + timedelta(days=1)
    invited.invite("digest", in_a_day, "operator")  # an invitation
    credentials.save(invited)

    assert [d.username for d in credentials.reissue_undelivered()] == [accounts[1].username]
    assert credentials.sweeps.looked_at == 3  # the three that opened one, not the ten others
    assert [n.username for n in credentials.unsent_notices()] == [accounts[2].username]
    assert [i.username for i in credentials.reinvite_undelivered()] == [accounts[3].username]
    assert credentials.sweeps.looked_at == 3


def test_every_kind_of_ticket_intent_left_open_is_found_and_only_those_tickets_load(
    ticketing: TicketingApplication,
):
    ids = [UUID(ticketing.request_reset(RequestReset(
        name="N", email=f"user{i}@example.org", username=f"user{i}@masspasrr.org",
        reason="r"))["ticket_id"]) for i in range(ACCOUNTS)]
    ticketing.sweeps.advance()
    for ticket_id in ids[10:]:  # changes that open no intent
        ticket = ticketing.repository.get(ticket_id)
        ticket.note_delivery("sent")
        ticketing.save(ticket)
    opened = [ticketing.repository.get(ticket_id) for ticket_id in ids[:4]]
    opened[0].intend_acknowledgement("ack-1", "user0@example.org")
    opened[1].intend_rejection_notice("notice-1", "user1@example.org")
    opened[2].flag("new-method", "a method registered from elsewhere", {}, alert=True)
    opened[3].start_proof("proof-1", EMAIL_CODE, AGENT, "u***@example.org",
                          ticketing.clock.now() + timedelta(minutes=15), code_hash="digest")
    for ticket in opened:
        ticketing.save(ticket)  # ...and the process gone before any of the four mails left

    assert [a.ticket_id for a in ticketing.unsent_acknowledgements()] == [ids[0]]
    assert ticketing.sweeps.looked_at == 4  # the four that opened one, not the ten others
    assert [n.ticket_id for n in ticketing.unsent_rejection_notices()] == [ids[1]]
    assert [a.ticket_id for a in ticketing.unsent_alerts()] == [ids[2]]
    assert ticketing.fail_unmailed_proofs() == 1
    assert ticketing.sweeps.looked_at == 4


def test_a_proof_whose_mail_never_left_fails_at_the_next_start_and_only_once(
    ticketing: TicketingApplication,
):
    """A proof's code or approval link existed only in memory: a crash before its mail left
    fails the proof (the agent starts a new one). That start-up step loaded every ticket too."""
    ids = [ticketing.request_reset(RequestReset(name="N", email=f"user{i}@example.org",
                                                username=f"user{i}@masspasrr.org", reason="r"))
           ["ticket_id"] for i in range(ACCOUNTS)]
    ticketing.sweeps.advance()
    ticket = ticketing.repository.get(UUID(ids[5]))
    ticket.start_proof("proof-1", EMAIL_CODE, AGENT, "u***@example.org",
                       ticketing.clock.now() + timedelta(minutes=15), code_hash="digest")
    ticketing.save(ticket)  # ...and the process gone before the code's mail was sent

    assert ticketing.fail_unmailed_proofs() == 1
    assert ticketing.sweeps.looked_at == 1
    assert ticketing.repository.get(ticket.id).proofs["proof-1"]["state"] == "failed"
    ticketing.sweeps.advance()
    assert ticketing.fail_unmailed_proofs() == 0 and ticketing.sweeps.looked_at == 0

