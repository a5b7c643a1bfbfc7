"""The whole guide against the system as it runs for real: separate processes, real stores.

`rekey demo` walks the guide through the public interfaces only. The secret-free check reads
the stores twice: as bytes (files, tables, vault, logs) and as the events decrypted (the payload
cipher is off here and per-user data keys are opened), so it proves what the events hold, rather
than that a cipher hides it.
"""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from rich.console import Console

from rekey.demo.guide import run_demo
from rekey.stack.processes import Stack
from shared.settings import PROCESSES, Settings
from shared.waiting import eventually
from tests.e2e.running import rekey, stack_environment, use_environment
from tests.e2e.stores import decrypted_events

pytestmark = pytest.mark.e2e
USER = "pat.smith@masspasrr.org"


@pytest.fixture
def stack(tmp_path: Path, store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """A stack of the test's own, for a test that walks the guide or changes a store."""
    env = stack_environment(tmp_path / "rekey", store.name, store.postgres_db)
    use_environment(env, monkeypatch)
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
        for schema in PROCESSES:
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
    # Written to a file, not a terminal: the history is one whole line per event, nothing cut.
    assert "…" not in printed
    assert "  consent  AgreementAccepted  actor=" in printed
    assert set(witness) == {"temporary_password", "new_password", "totp_seed", "agent_totp_seed"}

    # No secret at rest: not in any store file, table, vault or log line.
    kept, events = stored_bytes(stack), decrypted_events(stack.settings)
    for name, secret in witness.items():
        for where in (kept, events):
            assert secret.encode() not in where, f"the {name} is stored in plain text"
            assert secret.lower().encode() not in where, f"the {name} is stored in plain text"
    assert USER.encode() in events  # payloads are read here, so the check above means something

    # The auditor's view, from the audit service and straight from the stores, agree (once the
    # audit service has caught up) and hold no secret.
    offline = rekey("audit", "history", USER, "--json", "--from-stores")
    assert offline.returncode == 0, offline.stderr
    replayed = [json.loads(line)["event_id"] for line in offline.stdout.splitlines()]

    def audited() -> subprocess.CompletedProcess[str] | None:
        answer = rekey("audit", "history", USER, "--json")
        assert answer.returncode == 0, answer.stderr
        ids = [json.loads(line)["event_id"] for line in answer.stdout.splitlines()]
        return answer if ids == replayed else None

    live = asyncio.run(eventually(audited, what="the audit service to hold the whole history"))
    events = [json.loads(line) for line in live.stdout.splitlines()]
    names = [e["name"] for e in events]
    assert names[0] == "AccountRegistered"
    ticketing = [e["name"] for e in events if e["source"] == "ticketing"]
    assert ticketing[-1] == "TicketClosed"
    assert names.index("AgreementAccepted") < names.index("TicketClosed")
    assert {"NoticeIntended", "NoticeSent"} <= set(names)  # the user was told by mail
    for expected in ("ResetRequested", "ProofStarted", "ProofSucceeded", "ResetApproved",
                     "MethodsRevoked",
                     "PasswordIssued", "TemporaryPasswordSent", "SignInSucceeded",
                     "PasswordChanged", "MethodRegistrationStarted", "ChallengeIssued",
                     "ChallengeVerified", "MethodRegistered", "DefaultMethodSet",
                     "AgreementPresented", "AgreementAccepted"):
        assert expected in names
    assert names.index("ProofSucceeded") < names.index("ResetApproved")
    assert names.index("ResetApproved") < names.index("PasswordIssued")
    assert names.index("PasswordChanged") < names.index("MethodRegistered")
    assert names.index("MethodRegistered") < names.index("AgreementAccepted")
    for secret in witness.values():
        assert secret not in live.stdout


def tamper(stack: Stack, old: str, new: str) -> int:
    """What an intruder with write access to a store and its keys would do: edit a recorded
    fact (under the user's data key, so the intruder holds the vault key too)."""
    from tests.security.insider import Insider

    return Insider(stack.settings, "ticketing").replace_text(old, new)


def test_an_auditor_s_checkpoint_exposes_a_fact_edited_in_a_store(stack: Stack, tmp_path: Path):
    out = io.StringIO()
    assert asyncio.run(run_demo(stack.settings, USER, Console(file=out, width=200))) == 0, out
    kept = tmp_path / "checkpoint.json"
    taken = rekey("audit", "checkpoint", USER, "--out", str(kept))
    assert taken.returncode == 0, taken.stderr
    intact = rekey("audit", "verify", USER, str(kept), "--from-stores")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "verified" in intact.stdout

    assert tamper(stack, "Photo ID checked", "Nothing checked") == 1  # the ID check, rewritten
    broken = rekey("audit", "verify", USER, str(kept), "--from-stores")
    assert broken.returncode == 1
    # Named either way: the row now fails its place binding when read, before any chain.
    assert ("ticketing" in broken.stdout and "TAMPERED" in broken.stdout) or (
        "place binding does not match" in broken.stderr), broken.stdout + broken.stderr
