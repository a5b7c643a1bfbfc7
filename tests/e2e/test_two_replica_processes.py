"""Two credentials processes on one PostgreSQL store, as separate processes beside the rest of
the stack: the guide runs through them, both answer requests, one relays and sweeps (the other
says "standby" in its /readyz), and the temporary password is issued and mailed once."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from rekey.demo.guide import run_demo
from rekey.stack.environment import prepare_environment
from rekey.stack.ports import free_port
from rekey.stack.processes import Stack
from shared.caught import list_mails
from shared.settings import Settings
from shared.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
USER = "pat.smith@masspasrr.org"


@pytest.fixture
def stack(tmp_path: Path, postgres_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    env = prepare_environment(tmp_path / "rekey", **{
        "REKEY_NATS_URL": f"tls://127.0.0.1:{free_port()}", "REKEY_SMTP_PORT": str(free_port()),
        "REKEY_STORE": "postgres", "REKEY_POSTGRES_DB": postgres_db})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with Stack(Settings(), env=env) as running:
        yield running


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def relay_check(port: int) -> str | None:
    try:
        status, body = get(port, "/readyz")
    except OSError:
        return None
    if status != 200:
        return None
    return next(c["detail"] for c in json.loads(body)["checks"] if c["name"] == "relay")


def requests_answered(port: int) -> float:
    _, text = get(port, "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("rekey_request_seconds_count{") and 'service="credentials"' in line)


async def test_two_credentials_processes_serve_the_guide_and_mail_its_password_once(
    stack: Stack, tmp_path: Path,
):
    port = free_port()
    with (tmp_path / "credentials-2.log").open("wb") as log:
        second = subprocess.Popen([sys.executable, "-m", "rekey", "serve", "credentials"],
                                  env={**stack.env, "REKEY_HEALTH_PORT": str(port)},
                                  stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        first_port = stack.health_ports["credentials"]
        standby = await eventually(lambda: relay_check(port), timeout=60,
                                   what="the second credentials process to be ready")
        assert standby.startswith("standby")  # the first one relays and sweeps
        assert not (relay_check(first_port) or "").startswith("standby")

        out = io.StringIO()
        code = await run_demo(stack.settings, USER, Console(file=out, width=200))
        assert code == 0, out.getvalue()

        assert requests_answered(first_port) > 0 and requests_answered(port) > 0
        temporary = [m for m in list_mails(stack.mail_folder) if "temporary" in m.subject.lower()]
        assert len(temporary) == 1
        assert second.poll() is None
    finally:
        second.terminate()
        await asyncio.to_thread(second.wait, 30)
