"""The whole guide against the system as it runs for real: separate processes, real stores.

`rekey demo` walks the guide through the public interfaces only. Stored events are left
unencrypted here on purpose, so the secret-free check proves what the events hold, rather
than that a cipher hides it.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from rich.console import Console

from rekey.demo import run_demo
from rekey.ports import free_port
from rekey.stack import Stack, prepare_environment
from shared.settings import SERVICES, Settings

pytestmark = pytest.mark.e2e
USER = "pat.smith@masspasrr.org"


@pytest.fixture
def stack(tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    overrides = {
        "REKEY_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "REKEY_SMTP_PORT": str(free_port()),
        "REKEY_CIPHER_KEY": "",
        "REKEY_STORE": store.name,
    }
    if store.postgres_db:
        overrides["REKEY_POSTGRES_DB"] = store.postgres_db
    env = prepare_environment(tmp_path / "rekey", **overrides)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with Stack(Settings(), env=env) as running:
        yield running


def stored_bytes(stack: Stack) -> bytes:
    """Everything the services keep: store files, vault, logs; or every PostgreSQL table."""
    settings = stack.settings
    if settings.store == "sqlite":
        kept = [p for p in stack.data_dir.rglob("*") if p.is_file() and "mail" not in p.parts]
        return b"\n".join(p.read_bytes() for p in kept if p.name != "rekey.env")
    chunks = [p.read_bytes() for p in (stack.data_dir / "logs").glob("*.log")]
    with psycopg.connect(settings.postgres_conninfo()) as conn:
        for schema in SERVICES:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            ).fetchall()
            for (table,) in tables:
                query = sql.SQL("SELECT * FROM {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                for row in conn.execute(query):
                    chunks += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    return b"\n".join(chunks)


def rekey(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rekey", *args], capture_output=True, text=True, timeout=120
    )


def test_the_guide_end_to_end_leaves_a_secret_free_auditable_history(stack: Stack):
    out = io.StringIO()
    witness: dict[str, str] = {}
    code = asyncio.run(
        run_demo(stack.settings, USER, Console(file=out, width=200), witness=witness)
    )
    printed = out.getvalue()
    assert code == 0, printed
    assert "Default sign-in method: Microsoft Authenticator" in printed
    assert "21 clauses" in printed
    assert "Demo complete" in printed
    assert set(witness) == {"temporary_password", "new_password", "totp_seed"}

    # No secret at rest: not in any store file, table, vault or log line.
    kept = stored_bytes(stack)
    for name, secret in witness.items():
        assert secret.encode() not in kept, f"the {name} is stored in plain text"
        assert secret.lower().encode() not in kept, f"the {name} is stored in plain text"
    assert b'"step":' in kept  # payloads are readable here, so the check above means something

    # The auditor's view, over the bus and straight from the stores, agree and hold no secret.
    live = rekey("audit", "history", USER, "--json")
    assert live.returncode == 0, live.stderr
    events = [json.loads(line) for line in live.stdout.splitlines()]
    names = [e["name"] for e in events]
    assert names[0] == "AccountRegistered"
    ticketing = [e["name"] for e in events if e["source"] == "ticketing"]
    assert ticketing[-1] == "TicketClosed"
    assert names.index("AgreementAccepted") < names.index("TicketClosed")
    assert {"NoticeIntended", "NoticeSent"} <= set(names)  # the user was told by mail
    for expected in ("ResetRequested", "IdentityVerified", "ResetApproved", "MethodsRevoked",
                     "PasswordIssued", "TemporaryPasswordSent", "SignInSucceeded",
                     "PasswordChanged", "MethodRegistrationStarted", "ChallengeIssued",
                     "ChallengeVerified", "MethodRegistered", "DefaultMethodSet",
                     "AgreementPresented", "AgreementAccepted"):
        assert expected in names
    assert names.index("ResetApproved") < names.index("PasswordIssued")
    assert names.index("PasswordChanged") < names.index("MethodRegistered")
    assert names.index("MethodRegistered") < names.index("AgreementAccepted")
    for secret in witness.values():
        assert secret not in live.stdout

    offline = rekey("audit", "history", USER, "--json", "--from-stores")
    assert offline.returncode == 0, offline.stderr
    assert [json.loads(line)["event_id"] for line in offline.stdout.splitlines()] == [
        e["event_id"] for e in events
    ]


def test_the_cli_explains_bad_input_without_a_traceback(stack: Stack):
    result = rekey("tickets", "approve", "RK-00000000", "--agent", "nobody")
    assert result.returncode == 1
    assert "There is no ticket" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def tamper(stack: Stack, old: str, new: str) -> int:
    """What an intruder with write access to a store would do: edit a recorded fact."""
    if stack.settings.store == "sqlite":
        import sqlite3

        with sqlite3.connect(stack.data_dir / "ticketing.sqlite") as db:
            return db.execute(
                "UPDATE stored_events SET state = CAST(replace(CAST(state AS TEXT), ?, ?) AS BLOB)"
                " WHERE instr(CAST(state AS TEXT), ?) > 0", (old, new, old),
            ).rowcount
    with psycopg.connect(stack.settings.postgres_conninfo(), autocommit=True) as conn:
        return conn.execute(
            "UPDATE ticketing.ticketingapplication_events SET state = convert_to("
            "replace(convert_from(state, 'UTF8'), %s, %s), 'UTF8') "
            "WHERE position(%s in convert_from(state, 'UTF8')) > 0", (old, new, old),
        ).rowcount


def test_an_auditor_s_checkpoint_exposes_a_fact_edited_in_a_store(stack: Stack, tmp_path: Path):
    out = io.StringIO()
    assert asyncio.run(run_demo(stack.settings, USER, Console(file=out, width=200))) == 0, out
    kept = tmp_path / "checkpoint.json"
    taken = rekey("audit", "checkpoint", USER, "--out", str(kept))
    assert taken.returncode == 0, taken.stderr
    intact = rekey("audit", "verify", USER, str(kept), "--from-stores")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "verified" in intact.stdout

    assert tamper(stack, "call_back", "id_check") == 1  # the identity check, rewritten
    broken = rekey("audit", "verify", USER, str(kept), "--from-stores")
    assert broken.returncode == 1
    assert "ticketing" in broken.stdout and "TAMPERED" in broken.stdout
