"""`rekey demo --method push|sms|call` against the stack as separate processes, Twilio sim included."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from rekey.demo.guide import run_demo
from rekey.stack.environment import prepare_environment
from rekey.stack.ports import free_port
from rekey.stack.processes import Stack
from shared.settings import Settings
from shared.waiting import eventually
from tests.conftest import without_rekey_variables
from tests.e2e.stores import decrypted_events

pytestmark = pytest.mark.e2e
USER = "sam.jones@masspasrr.org"


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    without_rekey_variables(monkeypatch)
    env = prepare_environment(
        tmp_path / "rekey",
        REKEY_NATS_URL=f"tls://127.0.0.1:{free_port()}",
        REKEY_SMTP_PORT=str(free_port()),
        REKEY_CIPHER_KEY="",
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with Stack(Settings(), env=env) as running:
        yield running


def service_bytes(stack: Stack) -> bytes:
    """What the services keep (stores, vault, logs): not the mail or the phone's texts."""
    kept = [p for p in stack.data_dir.rglob("*")
            if p.is_file() and not {"mail", "twilio"} & set(p.parts) and p.name != "rekey.env"]
    return b"\n".join(p.read_bytes() for p in kept)


@pytest.mark.parametrize("method", ["push", "sms", "call"])
def test_each_method_path_of_the_demo_ends_with_a_closed_ticket_and_a_clean_history(
    stack: Stack, method: str
):
    out = io.StringIO()
    witness: dict[str, str] = {}
    code = asyncio.run(run_demo(stack.settings, USER, Console(file=out, width=200),
                                witness=witness, method=method))
    printed = out.getvalue()
    assert code == 0, printed
    assert "Demo complete" in printed
    expected = {
        "push": "Notification approved",
        "sms": "code accepted",
        "call": "Call answered. Your phone was registered successfully.",
    }[method]
    assert expected in printed
    if method != "push":
        assert "Default sign-in method: Phone +1 ••• ••• 01" in printed

    kept, events = service_bytes(stack), decrypted_events(stack.settings)
    assert USER.encode() in events  # the events are read in clear, so the check means something
    if "totp_seed" in witness:
        assert witness["totp_seed"].encode() not in kept + events
    def audited() -> tuple[subprocess.CompletedProcess[str], list[str]] | None:
        history = subprocess.run([sys.executable, "-m", "rekey", "audit", "history", USER, "--json"],
                                 capture_output=True, text=True, timeout=120)
        assert history.returncode == 0, history.stderr
        names = [json.loads(line)["name"] for line in history.stdout.splitlines()]
        wanted = {"MethodRegistered", "DefaultMethodSet", "ChallengeVerified", "TicketClosed"}
        return (history, names) if wanted <= set(names) else None

    history, names = asyncio.run(eventually(audited, what="the audit service to hold the reset"))
    if method == "push":
        assert "DeviceActivated" in names
    else:
        assert "CodeDispatched" in names
        assert "+1508555" not in history.stdout
