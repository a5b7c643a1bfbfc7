"""A service's PostgreSQL schema, made when missing (the stores and the vault share it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from shared.settings import Settings

__all__ = ["building_on", "ensure_postgres_schema"]

# The connection a service's build already holds (shared.duties.setting_up), with its conninfo:
# the schema checks of the build use it instead of each opening one of their own (one
# connection fewer per store and vault; docs/benchmarks.md).
_BUILDING_ON: ContextVar[tuple[str, Any] | None] = ContextVar("building_on", default=None)


@contextlib.contextmanager
def building_on(conninfo: str, conn: Any) -> Iterator[None]:
    """Within the block, this thread's schema checks for ``conninfo`` run on ``conn`` (an
    autocommit connection)."""
    token = _BUILDING_ON.set((conninfo, conn))
    try:
        yield
    finally:
        _BUILDING_ON.reset(token)


def ensure_postgres_schema(settings: Settings, schema: str) -> None:
    """Create the service's schema (and nothing else) if it is missing.

    Only when missing: a deployment's service role owns its schema, made beforehand
    (deploy/postgres/init-roles.sh), and may not create schemas, which PostgreSQL checks even
    for ``CREATE SCHEMA IF NOT EXISTS``."""
    import psycopg

    conninfo = settings.postgres_conninfo()
    held = _BUILDING_ON.get()
    if held is not None and held[0] == conninfo:
        _ensure_on(held[1], schema)
        return
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _ensure_on(conn, schema)


def _ensure_on(conn: Any, schema: str) -> None:
    from psycopg import sql

    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
        return
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
