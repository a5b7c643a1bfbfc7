"""Shared fixtures: a real NATS server, a real SMTP sink and a real PostgreSQL database.

Every fixture is function-scoped and lives under ``tmp_path`` or a database of its own,
so tests never share broker streams, mail or events and can run in any order.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import psycopg
import pytest
from psycopg import sql

from rekey.mailsink import MailSink
from rekey.natsd import EmbeddedNats
from rekey.ports import free_port
from shared.settings import Settings, new_key

POSTGRES_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
POSTGRES_DOWN = "PostgreSQL is not answering on 127.0.0.1:5432"


def _postgres_unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; in CI (CI=true) a missing database is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh JetStream-enabled nats-server on a free port; ``.url`` to connect."""
    server = EmbeddedNats(port=free_port(), store_dir=tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    """An SMTP sink on a free port storing into ``tmp_path/"mail"`` (``.folder``, ``.port``)."""
    sink = MailSink(tmp_path / "mail", port=free_port())
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def postgres_db() -> Iterator[str]:
    """The name of a new, empty database ``rekey_test_<hex>``, dropped after the test."""
    name = f"rekey_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(POSTGRES_CONNINFO, autocommit=True)
    except psycopg.OperationalError as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        _postgres_unavailable(f"{POSTGRES_DOWN}: {detail}")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        # FORCE ends connections a failed test may have left open (PostgreSQL 13+).
        with psycopg.connect(POSTGRES_CONNINFO, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class SettingsFactory(Protocol):
    """Type of the ``settings_factory`` fixture, for annotating tests."""

    def __call__(
        self,
        nats_url: str,
        store: Literal["sqlite", "postgres"] = "sqlite",
        postgres_db: str | None = None,
        smtp_port: int | None = None,
        **overrides: Any,
    ) -> Settings: ...


@pytest.fixture
def settings_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SettingsFactory:
    """Build :class:`Settings` for one test, ignoring any ``REKEY_*`` in the environment.

    ``make(nats_url, store="sqlite", postgres_db=None, smtp_port=None, **overrides)``:
    data goes to ``tmp_path/"data"``, keys are fresh per call, ``store="postgres"`` needs
    ``postgres_db`` (from the ``postgres_db`` fixture), ``smtp_port`` points outgoing mail
    at e.g. ``mail_sink.port``; any other Settings field can be given in ``overrides``.
    """
    for variable in list(os.environ):
        if variable.startswith("REKEY_"):
            monkeypatch.delenv(variable)

    def make(
        nats_url: str,
        store: Literal["sqlite", "postgres"] = "sqlite",
        postgres_db: str | None = None,
        smtp_port: int | None = None,
        **overrides: Any,
    ) -> Settings:
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "data_dir": tmp_path / "data",
            "store": store,
            "vault_key": new_key(),
            "token_key": new_key(),
            "cipher_key": new_key(),
        }
        if store == "postgres":
            if postgres_db is None:
                raise ValueError('store="postgres" needs postgres_db (the postgres_db fixture)')
            values["postgres_db"] = postgres_db
        if smtp_port is not None:
            values["smtp_host"] = "127.0.0.1"
            values["smtp_port"] = smtp_port
        values.update(overrides)
        return Settings(**values)

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
