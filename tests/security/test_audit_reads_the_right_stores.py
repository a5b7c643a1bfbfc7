"""An auditor must never be told "no events" by stores that are not the system's: `rekey.env`
records where the stores are (the backend too), and ``--from-stores`` refuses to read stores
that do not exist instead of making empty ones and answering from them."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from rich.console import Console

from rekey.demo.guide import run_demo
from rekey.stack.environment import load_env_file, prepare_environment
from rekey.stack.inprocess import POSTGRES_ADMIN
from shared.settings import SERVICES
from tests.security.conftest import up_stack

pytestmark = pytest.mark.security
USER = "pat.smith@masspasrr.org"


def audit_from_stores(folder: Path, *env: str) -> subprocess.CompletedProcess[str]:
    """`rekey audit history --from-stores` as an auditor runs it later: nothing in the shell."""
    variables = {"PATH": "/usr/bin:/bin", **dict(e.split("=", 1) for e in env)}
    return subprocess.run(
        [sys.executable, "-m", "rekey", "audit", "history", USER, "--from-stores",
         "--data-dir", str(folder)], env=variables, capture_output=True, text=True, timeout=120)


def schemas(database: str) -> set[str]:
    with psycopg.connect(POSTGRES_ADMIN.replace("dbname=postgres", f"dbname={database}")) as conn:
        rows = conn.execute("SELECT schema_name FROM information_schema.schemata").fetchall()
    return {name for (name,) in rows} & set(SERVICES)


@pytest.mark.postgres
def test_an_audit_of_a_postgres_stack_reads_its_stores_not_empty_sqlite_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_db: str,
) -> None:
    folder = tmp_path / "rekey"
    with up_stack(folder, monkeypatch, REKEY_STORE="postgres", REKEY_POSTGRES_DB=postgres_db) as stack:
        assert asyncio.run(run_demo(stack.settings, USER, Console(file=io.StringIO()))) == 0
    recorded = load_env_file(folder)
    assert (recorded["REKEY_STORE"], recorded["REKEY_POSTGRES_DB"]) == ("postgres", postgres_db)

    audit = audit_from_stores(folder)

    assert audit.returncode == 0, audit.stderr
    assert "ResetApproved" in audit.stdout and "MethodRegistered" in audit.stdout
    assert not list(folder.glob("*.sqlite"))  # nothing made on the side


def test_an_audit_of_a_folder_without_stores_refuses_and_makes_none(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()

    audit = audit_from_stores(folder)

    assert audit.returncode == 2
    assert audit.stderr.count("no event store for ticketing, credentials") == 1, audit.stderr
    assert "No events about" not in audit.stdout
    assert list(folder.glob("*.sqlite")) == []


@pytest.mark.postgres
def test_an_audit_of_an_empty_postgres_database_refuses_and_makes_no_schema(
    tmp_path: Path, postgres_db: str,
) -> None:
    audit = audit_from_stores(tmp_path, "REKEY_STORE=postgres", f"REKEY_POSTGRES_DB={postgres_db}",
                              "REKEY_POSTGRES_PASSWORD=pg-secret-never-printed")

    assert audit.returncode == 2
    assert f"database '{postgres_db}'" in audit.stderr
    assert "pg-secret-never-printed" not in audit.stdout + audit.stderr
    assert schemas(postgres_db) == set()


def test_rekey_env_records_the_store_backend_from_the_shell(tmp_path, monkeypatch) -> None:
    for variable in ("REKEY_STORE", "REKEY_POSTGRES_DB", "REKEY_POSTGRES_PASSWORD"):
        monkeypatch.setenv(variable, {"REKEY_STORE": "postgres"}.get(variable, "kept"))
    prepare_environment(tmp_path / "rekey")
    recorded = load_env_file(tmp_path / "rekey")
    assert recorded["REKEY_STORE"] == "postgres"
    assert recorded["REKEY_POSTGRES_DB"] == recorded["REKEY_POSTGRES_PASSWORD"] == "kept"
    assert (tmp_path / "rekey" / "rekey.env").stat().st_mode & 0o777 == 0o600
