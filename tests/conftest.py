"""Shared fixtures: a real NATS server, a real SMTP sink and a real PostgreSQL database.

Every fixture is function-scoped and lives under ``tmp_path`` or a database of its own,
so tests never share broker streams, mail or events and can run in any order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import psycopg
import pytest
from nats.aio.client import Client

from rekey.stack.buskeys import BusKeys
from rekey.stack.inprocess import create_database, drop_database, empty_database, scratch_settings
from rekey.stack.mailsink import MailSink
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from shared.bus.connection import connect
from shared.bus.identities import Identity
from shared.settings import Settings

POSTGRES_DOWN = "PostgreSQL is not answering on 127.0.0.1:5432"
# The layers, slowest tests first (see pytest_collection_modifyitems).
LAYERS = ("browser", "e2e", "security", "integration", "unit")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the tests for workers side by side (scripts/test).

    Workers take tests one by one in this order, so the slow layers start first and the last
    tests to start are short ones: no worker ends with a long tail while the others wait. The
    order within a layer, and every test, is unchanged.
    """

    def layer(item: pytest.Item) -> int:
        parts = item.nodeid.split("/")
        return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else len(LAYERS)

    items.sort(key=layer)  # stable


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (scripts/test): a test per unit of work, a module that shares one
    stack kept on one worker (tests/workers.py says why not pytest-xdist's own groups)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.workers import SharedStackScheduling

    return SharedStackScheduling(config, log)


def without_rekey_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget every ``REKEY_*`` of the environment for one test (a developer's shell may set
    them): what a test runs reads only the settings it gives."""
    for variable in [v for v in os.environ if v.startswith("REKEY_")]:
        monkeypatch.delenv(variable)


def _postgres_unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; in CI (CI=true) a missing database is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


# Tests inspect the stream and publish forgeries: one identity with every permission, beside
# (never instead of) the real identities, whose permissions are the production table.
INSPECTOR = Identity(name="inspector", publish=(">",), subscribe=(">",), responds=True,
                     description="tests only: inspects the stream")


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh nats-server with JetStream and the real bus policy (NKEYs, permissions, TLS).

    ``.client_settings()`` gives the URL, key folder and CA a process needs;
    ``connect_as(server, identity)`` connects a test as one identity.
    """
    keys = BusKeys.create(tmp_path / "bus")
    server = EmbeddedNats(port=free_port(), store_dir=tmp_path / "nats", keys=keys,
                          extra_identities=[INSPECTOR])
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def connect_as(server: EmbeddedNats, identity: str = "inspector") -> Client:
    """A connection to ``server`` as one bus identity (the inspector by default)."""
    return await connect(Settings(**server.client_settings()), identity, name=f"tests-{identity}",
                         attempts=3)


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    """An SMTP sink on a free port storing into ``tmp_path/"mail"`` (``.folder``, ``.port``)."""
    sink = MailSink(tmp_path / "mail", port=free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


class ScratchDatabases:
    """This worker's test databases: a test takes one and gives it back emptied.

    Creating and dropping a database for each test cost the server about 0.2 s more CPU than
    emptying one (a copy of the template through the WAL), and 0.13 s against 0.02 s of
    waiting; across the suite's PostgreSQL tests the server's CPU went from 180 s to 73 s.
    """

    def __init__(self) -> None:
        self.free: list[str] = []
        self.made: list[str] = []

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        name = create_database("rekey_test")
        self.made.append(name)
        return name

    def give_back(self, name: str) -> None:
        try:
            reusable = empty_database(name)
        except psycopg.Error:
            reusable = False
        if reusable:
            self.free.append(name)
        else:  # something still holds it: never hand it to another test
            self.made.remove(name)
            drop_database(name)

    def drop_all(self) -> None:
        for name in self.made:
            drop_database(name)


@pytest.fixture(scope="session")
def scratch_databases() -> Iterator[ScratchDatabases]:
    databases = ScratchDatabases()
    try:
        yield databases
    finally:
        databases.drop_all()


@contextmanager
def scratch_database(databases: ScratchDatabases) -> Iterator[str]:
    """An empty database ``rekey_test_<hex>`` of the caller's own (no schema but an empty
    ``public``, no connection, as new), emptied again afterwards for the next; a skip when
    PostgreSQL does not answer (a failure under CI=true)."""
    try:
        name = databases.take()
    except psycopg.OperationalError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _postgres_unavailable(f"{POSTGRES_DOWN}: {detail}")
    try:
        yield name
    finally:
        databases.give_back(name)


@pytest.fixture
def postgres_db(scratch_databases: ScratchDatabases) -> Iterator[str]:
    """The name of an empty database of this test's own (:func:`scratch_database`)."""
    with scratch_database(scratch_databases) as name:
        yield name


class SettingsFactory(Protocol):
    """Type of the ``settings_factory`` fixture, for annotating tests."""

    def __call__(
        self,
        nats: EmbeddedNats | str,
        store: Literal["sqlite", "postgres"] = "sqlite",
        postgres_db: str | None = None,
        smtp_port: int | None = None,
        **overrides: Any,
    ) -> Settings: ...


@pytest.fixture
def settings_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SettingsFactory:
    """Build :class:`Settings` for one test, ignoring any ``REKEY_*`` in the environment.

    ``make(nats, store="sqlite", postgres_db=None, smtp_port=None, **overrides)``: ``nats`` is
    the ``nats_server`` fixture (its URL, bus keys and CA) or a URL; data goes to
    ``tmp_path/"data"``, keys are fresh per call, ``store="postgres"`` needs ``postgres_db``
    (from the ``postgres_db`` fixture), ``smtp_port`` points outgoing mail at e.g.
    ``mail_sink.port``; any other Settings field can be given in ``overrides``.
    """
    without_rekey_variables(monkeypatch)

    def make(
        nats: EmbeddedNats | str,
        store: Literal["sqlite", "postgres"] = "sqlite",
        postgres_db: str | None = None,
        smtp_port: int | None = None,
        **overrides: Any,
    ) -> Settings:
        return scratch_settings(tmp_path / "data", nats, store, postgres_db, smtp_port,
                                **overrides)

    return make


@dataclass(frozen=True)
class StoreChoice:
    """Which event store a parametrised test runs on; ``postgres_db`` only for postgres."""

    name: Literal["sqlite", "postgres"]
    postgres_db: str | None = None


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def store(request: pytest.FixtureRequest) -> StoreChoice:
    """Runs the test once per event store; the postgres run gets its own database."""
    if request.param == "postgres":
        return StoreChoice("postgres", request.getfixturevalue("postgres_db"))
    return StoreChoice("sqlite")
