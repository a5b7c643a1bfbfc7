"""A stack for an e2e test, and the ``rekey`` command run against it as an operator would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rekey.stack.environment import prepare_environment
from rekey.stack.ports import free_port
from tests.conftest import without_rekey_variables


def stack_environment(folder: Path, store: str, postgres_db: str | None) -> dict[str, str]:
    """The REKEY_* variables of an e2e stack (the payload cipher off, so the
    secret-free check reads what the events hold), written under ``folder``."""
    overrides = {
        "REKEY_NATS_URL": f"tls://127.0.0.1:{free_port()}",
        "REKEY_SMTP_PORT": str(free_port()),
        "REKEY_CIPHER_KEY": "",
        "REKEY_STORE": store,
    }
    if postgres_db:
        overrides["REKEY_POSTGRES_DB"] = postgres_db
    return prepare_environment(folder, **overrides)


def use_environment(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's variables, and no other REKEY_*, for this test and the commands it runs."""
    without_rekey_variables(monkeypatch)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def rekey(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rekey", *args], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL,
    )
