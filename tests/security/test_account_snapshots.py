"""Account snapshots (credentials takes one every 20 events, so loading an account does not
replay every sign-in it ever had) against an insider with write access to the store: a
snapshot is a cache, bound to its place and sealed with the user's data key like every
event. A forged or moved snapshot is refused, a deleted one changes nothing, and an erased
user's snapshots are as unreadable as their events. Both stores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest

from services.credentials.application import CredentialsApplication
from services.credentials.commands import RegisterAccount, SignIn
from shared import application
from shared.application import READ_ONLY
from shared.binding import RowNotInPlace
from shared.data_keys import Erased
from shared.errors import AuthenticationFailed
from shared.principals import operator_principal
from tests.security.insider import Insider

PASSWORD = "a long password for the snapshot tests"
USERS = ("snap.one@masspasrr.org", "snap.two@masspasrr.org")


@pytest.fixture
def credentials(nats_server, settings_factory, store) -> Iterator[CredentialsApplication]:
    settings = settings_factory(nats_server, store=store.name, postgres_db=store.postgres_db)
    app = CredentialsApplication(settings)
    try:
        for user in USERS:
            app.register_account(RegisterAccount(
                username=user, email=f"{user.split('@')[0]}@example.org", display_name="S",
                role="agent", password=PASSWORD, principal=operator_principal(settings)))
            app.sign_in(SignIn(username=user, password=PASSWORD, channel="cli"))
            for _ in range(24):  # past the first snapshot (version 20); what a sign-in
                account = app._account(user)  # records, without 24 more argon2id checks
                account.record_sign_in(temporary=False, actor=user)
                app.save(account)
        yield app
    finally:
        app.close()


class Snapshots:
    """The insider's view of the snapshots table (no notification ids there)."""

    def __init__(self, app: CredentialsApplication) -> None:
        self.insider = Insider(app.settings, "credentials")
        if self.insider.sqlite:
            (self.table,), = self.insider._run(
                "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE %s",
                ("stored_snapshots_%",))
        else:
            (name,), = self.insider._run(
                "SELECT table_name FROM information_schema.tables WHERE table_schema=%s AND "
                "table_name LIKE %s", ("credentials", "%\\_snapshots\\_%"))
            self.table = f"credentials.{name}"

    def rows(self) -> list[tuple[Any, int, bytes]]:
        found = self.insider._run(f"SELECT originator_id, originator_version, state FROM "  # noqa: S608
                                  f"{self.table} ORDER BY originator_version")
        return [(str(UUID(str(o))), v, bytes(s)) for o, v, s in found]

    def set_state(self, originator_id: str, version: int, state: bytes) -> None:
        stored = UUID(originator_id).hex if self.insider.sqlite else originator_id
        self.insider._run(f"UPDATE {self.table} SET state=%s WHERE originator_id=%s AND "  # noqa: S608
                          "originator_version=%s", (state, stored, version))

    def delete_all(self) -> None:
        self.insider._run(f"DELETE FROM {self.table}")  # noqa: S608


def account_id(app: CredentialsApplication, user: str) -> str:
    return str(app._account(user).id)


def state_of(app: CredentialsApplication, user: str) -> dict[str, Any]:
    account = app._account(user)
    return {"version": account.version, **{k: v for k, v in account.__dict__.items()
                                           if not k.startswith("_")}}


def test_an_account_is_loaded_from_its_snapshot_to_the_same_state(credentials):
    snapshots = Snapshots(credentials)
    ids = {account_id(credentials, u) for u in USERS}
    assert {(o, v) for o, v, _ in snapshots.rows()} == {(i, 20) for i in ids}
    with_snapshots = [state_of(credentials, u) for u in USERS]

    snapshots.delete_all()  # a cache: without it, the same state from every event

    assert [state_of(credentials, u) for u in USERS] == with_snapshots


def test_an_insider_cannot_forge_an_accounts_snapshot(credentials):
    snapshots = Snapshots(credentials)
    [(originator, version, state)] = [r for r in snapshots.rows()
                                      if r[0] == account_id(credentials, USERS[0])]
    forged = bytearray(state)
    forged[-5] ^= 0x01
    snapshots.set_state(originator, version, bytes(forged))

    with pytest.raises(RowNotInPlace):
        credentials._account(USERS[0])


def test_an_insider_cannot_move_one_accounts_snapshot_onto_another(credentials):
    snapshots = Snapshots(credentials)
    rows = {o: (v, s) for o, v, s in snapshots.rows()}
    one, two = (account_id(credentials, u) for u in USERS)
    snapshots.set_state(two, rows[two][0], rows[one][1])  # user one's state as user two's

    with pytest.raises(RowNotInPlace):
        credentials._account(USERS[1])
    assert credentials._account(USERS[0]).username == USERS[0]


def test_an_erased_users_snapshot_is_as_unreadable_as_their_events(credentials):
    credentials.erase_user(USERS[0], actor="operator")

    with pytest.raises(Erased):
        credentials._account(USERS[0])
    with pytest.raises(AuthenticationFailed):  # the other user is untouched: a wrong password
        credentials.sign_in(SignIn(username=USERS[1], password="not it", channel="cli"))
    assert credentials._account(USERS[1]).failures == 1


def test_a_snapshot_taken_by_other_code_is_never_read(credentials, monkeypatch):
    """A snapshot holds the aggregate's attributes as the code that took it had them: after a
    change to that code it could load a state no replay would give. Such snapshots are not
    read (the new code keeps its own table); the account is replayed from its events."""
    before = [state_of(credentials, u) for u in USERS]
    monkeypatch.setattr(application, "snapshot_fingerprint", lambda classes: "0ther0c0de00")
    changed = CredentialsApplication(credentials.settings)
    try:
        assert changed.snapshots is not None
        assert not list(changed.snapshots.get(UUID(account_id(credentials, USERS[0]))))
        assert [state_of(changed, u) for u in USERS] == before
    finally:
        changed.close()


def test_a_read_only_opening_reads_events_only(credentials):
    """An auditor's read-only role creates no table; it never needs the snapshots."""
    reading = CredentialsApplication(credentials.settings, READ_ONLY)
    try:
        assert reading.snapshots is None
        assert [state_of(reading, u) for u in USERS] == [state_of(credentials, u) for u in USERS]
    finally:
        reading.close()
