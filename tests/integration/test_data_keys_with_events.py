"""A user's data key, and the row naming the key of an aggregate, are written by the transaction
that records the first events sealed with them (``shared.data_keys``): no key is kept for
events that were never recorded, no event is recorded without its key, and a key made while
its user is being erased is refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from rekey.stack.buskeys import BusKeys
from rekey.stack.natsd import EmbeddedNats
from services.credentials.application import CredentialsApplication
from services.credentials.domain import Account
from shared.data_keys import Erased, user_key_id
from shared.settings import Settings
from tests.conftest import StoreChoice

Apps = Callable[[], CredentialsApplication]


@pytest.fixture
def settings(tmp_path: Path, settings_factory: Any, store: StoreChoice) -> Settings:
    """A service's store and keys; no bus is needed to record events."""
    bus = EmbeddedNats(store_dir=tmp_path / "nats", keys=BusKeys.create(tmp_path / "bus"))
    return settings_factory(bus, store=store.name, postgres_db=store.postgres_db)


@pytest.fixture
def apps(settings: Settings) -> Iterator[Apps]:
    """Each call: another process of credentials on the same store (its own caches)."""
    opened: list[CredentialsApplication] = []

    def open_one() -> CredentialsApplication:
        opened.append(CredentialsApplication(settings))
        return opened[-1]

    yield open_one
    for app in opened:
        app.close()


def _account(name: str) -> Account:
    return Account(username=f"{name}@masspasrr.org", email=f"{name}@example.org",
                   display_name=name.title(), role="user", actor="operator")


def _stored_refs(app: CredentialsApplication) -> set[str]:
    return {r["ref"] if isinstance(r, dict) else r[0]
            for r in app.data_keys._sql("SELECT ref FROM {table}")}


def test_a_save_that_fails_leaves_no_key_and_the_retry_records_readable_events(apps: Apps) -> None:
    app = apps()
    first = _account("first")
    app.save(first)
    # A new user's account saved together with a second "first" account (the same id, so
    # the same version 1): the transaction fails on the events, after writing the new key.
    newcomer, clash = _account("newcomer"), _account("first")
    with pytest.raises(IntegrityError):
        app.save(newcomer, clash)
    refs = _stored_refs(app)
    assert f"datakey:{user_key_id(newcomer.username)}" not in refs
    assert f"owner:{newcomer.id}" not in refs

    app.save(_account("newcomer"))  # the request's retry: a key made afresh, with the events
    assert {f"datakey:{user_key_id(newcomer.username)}", f"owner:{newcomer.id}"} <= \
        _stored_refs(app)
    elsewhere = apps()  # another process reads the events with the key from the store
    assert elsewhere.repository.get(newcomer.id).username == newcomer.username
    assert app.repository.get(newcomer.id).username == newcomer.username


def test_a_key_made_while_its_user_is_erased_is_refused_with_the_events(apps: Apps) -> None:
    app, eraser = apps(), apps()
    victim = _account("victim")
    write_staged = app.data_keys.write_staged

    def erased_meanwhile(cursor: Any) -> None:
        """The erasure commits after this save sealed its events, before it writes the key."""
        eraser.data_keys.erase(victim.username, datetime.now(UTC))
        write_staged(cursor)

    app.data_keys.write_staged = erased_meanwhile
    app.recorder.data_keys = app.data_keys
    with pytest.raises(Erased):
        app.save(victim)
    app.data_keys.write_staged = write_staged
    refs = _stored_refs(app)
    assert f"datakey:{user_key_id(victim.username)}" not in refs
    assert f"erased:{user_key_id(victim.username)}" in refs
    assert not list(app.events.get(victim.id))
    with pytest.raises(Erased):  # and the user stays erased for this process too
        app.save(_account("victim"))


def test_an_owner_row_left_by_an_earlier_failed_save_does_not_block_the_aggregate(
        apps: Apps) -> None:
    """Before owner rows were written with their events, a save that failed kept its row."""
    app = apps()
    again = _account("again")
    app.data_keys._put(f"owner:{again.id}", user_key_id(again.username).bytes)
    app.save(again)
    assert apps().repository.get(again.id).username == again.username
