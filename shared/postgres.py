"""A service's PostgreSQL schema, made when missing (the stores and the vault share it)."""

from __future__ import annotations

from shared.settings import Settings

__all__ = ["ensure_postgres_schema"]


def ensure_postgres_schema(settings: Settings, schema: str) -> None:
    """Create the service's schema (and nothing else) if it is missing.

    Only when missing: a deployment's service role owns its schema, made beforehand
    (deploy/postgres/init-roles.sh), and may not create schemas, which PostgreSQL checks even
    for ``CREATE SCHEMA IF NOT EXISTS``."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.postgres_conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
            return
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
