"""The ``rekey`` command's output read by a program, a log file or CI: nothing cut."""

from __future__ import annotations

import asyncio
import os
import sys

from services.audit.history import history_over_bus
from shared.contracts import EventEnvelope
from tests.integration.conftest import USER, System, eventually, start_all


async def audit_holds(system: System, events: list) -> bool:
    held = {e["event_id"] for e in await system.call("audit", "history", username=USER)}
    return {str(e.event_id) for e in events} <= held


async def rekey(system: System, *args: str) -> str:
    """Run ``python -m rekey ARGS`` with its stdout to a pipe; its output."""
    env = {**os.environ, "REKEY_NATS_URL": system.settings.nats_url,
           "REKEY_NATS_KEYS_DIR": system.settings.nats_keys_dir,
           "REKEY_NATS_CA_FILE": system.settings.nats_ca_file,
           "REKEY_DATA_DIR": str(system.settings.data_dir)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rekey", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_a_history_piped_from_the_cli_shows_every_event_name_and_value_whole(system: System):
    await start_all(system)
    await system.start("audit")
    await system.provision()
    await system.approved_ticket()
    assert system.client is not None
    replayed = await history_over_bus(system.client, USER)
    await eventually(lambda: audit_holds(system, replayed), what="the audit service to catch up")
    events = [EventEnvelope.model_validate(e)
              for e in await system.call("audit", "history", username=USER)]

    printed = await rekey(system, "audit", "history", USER)

    assert "…" not in printed
    lines = printed.splitlines()
    assert len(lines) >= len(events) >= 3  # the history only grows (mail is sent meanwhile)
    for event in events:  # an event may occur twice (two proofs): one of its lines shows it
        shown = [f"ticket={event.correlation_id or '-'}"] + [
            f"{key}={value}" for key, value in event.body.items()
            if key not in ("ticket_id", "username", "email_digest") and value is not None
        ]
        candidates = [line for line in lines if f"  {event.source}  {event.name}  " in line]
        assert any(all(fact in line for fact in shown) for line in candidates), (event, shown)
