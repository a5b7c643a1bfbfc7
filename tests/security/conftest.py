"""Attacks run against a real stack: the services in-process on a real nats-server that runs
the production bus policy (NKEYs, subject permissions, TLS), on both stores; or the stack as
`rekey up` starts it (``up_stack``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rekey.stack.environment import up_environment
from rekey.stack.ports import free_port
from rekey.stack.processes import Stack
from shared.settings import Settings
from tests.conftest import without_rekey_variables
from tests.integration.conftest import phone_system, system, twilio_sim  # noqa: F401
from tests.security.stores import after_resets, reset_stores  # noqa: F401


@contextlib.contextmanager
def up_stack(folder: Path, monkeypatch: pytest.MonkeyPatch, *, dev: bool = False,
             **environment: str) -> Iterator[Stack]:
    """The stack `rekey up` runs (its environment, its defaults, the portal), on free ports;
    ``environment``: REKEY_* variables set before it starts, as a person's shell would."""
    without_rekey_variables(monkeypatch)
    for key, value in {"REKEY_PORTAL_PORT": str(free_port()), **environment}.items():
        monkeypatch.setenv(key, value)
    env = up_environment(folder, dev=dev, nats_port=free_port(), smtp_port=free_port(),
                         intake_port=free_port())
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with Stack(Settings(), env=env, portal=True) as stack:
        yield stack
