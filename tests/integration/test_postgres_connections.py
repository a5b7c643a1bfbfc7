"""A service's start on PostgreSQL opens no connection only to look at its schemas: the build
runs holding the catalog lock (replicas build one at a time, ``shared.duties.setting_up``), and
the schema checks of its stores and vault run on that same connection. Five services started
opened 28 sessions before and 22 after, and the server spent about a quarter less CPU on a
start (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from rekey.stack.inprocess import POSTGRES_ADMIN
from shared.duties import setting_up
from shared.postgres import ensure_postgres_schema

pytestmark = pytest.mark.postgres


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The conninfo of every connection psycopg opens from here on (each really opened)."""
    calls: list[str] = []
    real = psycopg.Connection.connect

    def counting(conninfo: str = "", **options: Any) -> Any:
        calls.append(conninfo)
        return real(conninfo, **options)

    monkeypatch.setattr(psycopg, "connect", counting)
    return calls


def schemas(database: str) -> set[str]:
    info = POSTGRES_ADMIN.replace("dbname=postgres", f"dbname={database}")
    with psycopg.connect(info) as conn:
        return {row[0] for row in conn.execute("SELECT nspname FROM pg_namespace")}


def test_a_build_checks_and_makes_its_schemas_on_the_connection_that_holds_its_lock(
        postgres_db, settings_factory, opened):
    settings = settings_factory("nats://127.0.0.1:4222", store="postgres", postgres_db=postgres_db)
    with setting_up(settings, "credentials"):
        assert len(opened) == 1  # the lock's
        ensure_postgres_schema(settings, "credentials")
        ensure_postgres_schema(settings, "credentials_vault")
        ensure_postgres_schema(settings, "credentials")  # there already: looked at only
        assert len(opened) == 1
    assert {"credentials", "credentials_vault"} <= schemas(postgres_db)


def test_outside_a_build_a_schema_check_opens_a_connection_of_its_own(
        postgres_db, settings_factory, opened):
    settings = settings_factory("nats://127.0.0.1:4222", store="postgres", postgres_db=postgres_db)
    ensure_postgres_schema(settings, "audit")
    assert len(opened) == 1
    assert "audit" in schemas(postgres_db)
