"""Start-up sweeps read what changed since the last one (``shared.sweeps``): a restart of a
service with a long history loads only the aggregates touched since, and an intent still open
is never passed over, however often the service restarts before it is sent."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from services.credentials.application import CredentialsApplication
from services.credentials.domain import Account
from services.ticketing.application import TicketingApplication
from services.ticketing.commands import RequestReset
from services.ticketing.proofs import EMAIL_CODE
from tests.integration.conftest import AGENT, System

ACCOUNTS = 20


def _registered(app: CredentialsApplication, i: int) -> Account:
    account = Account(username=f"user{i}@masspasrr.org", email=f"user{i}@example.org",
                      display_name=f"User {i}", role="user", actor="operator")
    app.save(account, app.all_accounts.entry(account.id))
    return account


def _crashed_before_sending(app: CredentialsApplication, account: Account) -> None:
    """A temporary password's intent recorded, and the process gone before it was sent."""
    account = app.repository.get(account.id)
    account.issue_temporary_password("hash", app.clock.now() + timedelta(hours=1), None)
    app.save(account)


def test_a_sweep_loads_only_what_changed_since_the_last_one(system: System):
    app = CredentialsApplication(system.settings)
    try:
        accounts = [_registered(app, i) for i in range(ACCOUNTS)]
        assert app.reissue_undelivered() == []
        assert app.sweeps.looked_at == ACCOUNTS  # the first sweep of this store reads it all
        app.sweeps.advance()

        assert app.reissue_undelivered() == [] and app.unsent_notices() == []
        assert app.sweeps.looked_at == 0  # nothing changed since

        _crashed_before_sending(app, accounts[3])
        [found] = app.reissue_undelivered()
        assert found.username == accounts[3].username
        assert app.sweeps.looked_at == 1  # the one account touched since, not all twenty
    finally:
        app.close()


def test_an_intent_left_open_is_found_at_every_start_until_it_is_sent(system: System):
    app = CredentialsApplication(system.settings)
    try:
        accounts = [_registered(app, i) for i in range(ACCOUNTS)]
        app.sweeps.advance()
        _crashed_before_sending(app, accounts[7])
        _registered(app, ACCOUNTS)  # and others change after it

        for _ in range(3):  # the process dies again before sending, start after start
            [found] = app.reissue_undelivered()
            assert found.username == accounts[7].username
            app.sweeps.advance()  # the checkpoint stays before the open intent

        app.mark_delivered(found, None)  # sent at last, and recorded
        app.sweeps.advance()
        assert app.reissue_undelivered() == []
        assert app.sweeps.looked_at == 0
    finally:
        app.close()


def test_a_proof_whose_mail_never_left_fails_at_the_next_start_and_only_once(system: System):
    """A proof's code or approval link existed only in memory: a crash before its mail left
    fails the proof (the agent starts a new one). That start-up step loaded every ticket too."""
    app = TicketingApplication(system.settings)
    try:
        ids = [app.request_reset(RequestReset(name="N", email=f"user{i}@example.org",
                                              username=f"user{i}@masspasrr.org", reason="r"))
               ["ticket_id"] for i in range(ACCOUNTS)]
        app.sweeps.advance()
        ticket = app.repository.get(UUID(ids[5]))
        ticket.start_proof("proof-1", EMAIL_CODE, AGENT, "u***@example.org",
                           app.clock.now() + timedelta(minutes=15), code_hash="digest")
        app.save(ticket)  # ...and the process gone before the code's mail was sent

        assert app.fail_unmailed_proofs() == 1
        assert app.sweeps.looked_at == 1
        assert app.repository.get(ticket.id).proofs["proof-1"]["state"] == "failed"
        app.sweeps.advance()
        assert app.fail_unmailed_proofs() == 0 and app.sweeps.looked_at == 0
    finally:
        app.close()
