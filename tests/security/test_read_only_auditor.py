"""An auditor checks the stores with a PostgreSQL role that can only read them: the check
needs no write access (no table, schema or function is created), so an auditor is never handed
the means to change what they audit."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from rekey.cli.app import app as rekey_cli
from shared.settings import SERVICES
from tests.integration.conftest import USER, System

pytestmark = pytest.mark.security


def _read_only_role(system: System) -> Iterator[str]:
    """A login role with USAGE and SELECT on the services' schemas, nothing else."""
    role = f"auditor_{secrets.token_hex(4)}"
    schemas = ", ".join(SERVICES)
    with psycopg.connect(system.settings.postgres_conninfo(), autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        admin.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
        admin.execute(f"GRANT USAGE ON SCHEMA {schemas} TO {role}")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schemas} TO {role}")
    try:
        yield role
    finally:
        with psycopg.connect(system.settings.postgres_conninfo(), autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def _rekey(system: System, role: str, *args: str) -> tuple[int, str]:
    s = system.settings
    env = {"REKEY_STORE": "postgres", "REKEY_POSTGRES_DB": s.postgres_db,
           "REKEY_POSTGRES_USER": role,
           "REKEY_CIPHER_KEY": s.cipher_key.get_secret_value(),
           "REKEY_VAULT_KEY": s.vault_key.get_secret_value(),
           "REKEY_TOKEN_KEY": s.token_key.get_secret_value(),
           "REKEY_NATS_KEYS_DIR": s.nats_keys_dir}
    result = CliRunner().invoke(rekey_cli, [*args, "--data-dir", str(s.data_dir)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, " ".join(result.output.split())


# A database role is PostgreSQL's (a SQLite auditor reads a copy of the files): PostgreSQL only.
@pytest.mark.parametrize("store", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True, ids=["postgres"])
async def test_an_auditor_with_a_read_only_role_verifies_the_stores_and_reads_a_history(
    after_resets: System,
) -> None:
    assert after_resets.settings.store == "postgres"
    for role in _read_only_role(after_resets):
        code, out = _rekey(after_resets, role, "audit", "verify")
        assert code == 0, out
        assert out.count("intact") == len(SERVICES)
        code, out = _rekey(after_resets, role, "audit", "history", USER, "--from-stores")
        assert code == 0, out
        assert "ResetApproved" in out and "PasswordChanged" in out
