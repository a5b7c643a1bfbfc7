"""A service process loads what it runs: not the command line, not aiohttp for nats-py's
WebSocket transport (nor does a command that makes no HTTP request), not psycopg on SQLite
(each some 5-20 MB of every process); it builds no command or event body validator before
that model is used; and its health pages answer probes without a web framework."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rekey.serve import parse
from rekey.stack.ports import free_port
from shared.health import Check, HealthServer

ROOT = Path(__file__).resolve().parents[2]

IMPORTS_OF_A_SERVICE = """
import sys
from rekey.serve import nats_without_aiohttp
nats_without_aiohttp()
import rekey.stack.environment, shared.logs, shared.runtime, shared.recorders.sqlite
import services.{service}.bootstrap
print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
"""


@pytest.mark.parametrize("service", ["ticketing", "credentials", "consent", "audit"])
def test_a_service_process_loads_neither_the_command_line_nor_aiohttp_nor_psycopg(service: str):
    done = subprocess.run([sys.executable, "-c", IMPORTS_OF_A_SERVICE.format(service=service)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    loaded = set(done.stdout.split())
    assert "shared" in loaded and "nats" in loaded
    assert loaded & {"typer", "rich", "aiohttp", "psycopg", "twilio", "webauthn", "segno"} == set()


def test_nats_still_connects_over_tls_and_aiohttp_stays_importable_after():
    done = subprocess.run([sys.executable, "-c", (
        "from rekey.serve import nats_without_aiohttp\n"
        "nats_without_aiohttp()\n"
        "import nats.aio.transport, aiohttp\n"
        "print(nats.aio.transport.aiohttp is None, aiohttp.__name__)")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    assert done.stdout.split() == ["True", "aiohttp"]


def test_a_command_that_does_not_ask_over_http_leaves_aiohttp_unloaded():
    done = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "sys.argv = ['rekey', 'audit', '--help']\n"
        "from rekey.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('LOADED', 'aiohttp' in sys.modules, 'nats' in sys.modules)")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    assert "history" in done.stdout  # the command line ran (its audit commands listed)
    assert done.stdout.split("LOADED")[-1].split() == ["False", "True"]


def test_rekey_serve_takes_the_short_way_only_for_its_own_command_line():
    assert parse(["serve", "credentials"]) == ("credentials", None)
    assert parse(["serve", "audit", "--data-dir", "/d"]) == ("audit", Path("/d"))
    assert parse(["serve", "audit", "--data-dir=/d"]) == ("audit", Path("/d"))
    for other in (["serve"], ["serve", "--help"], ["serve", "audit", "--help"], ["status"], []):
        assert parse(other) is None  # the full command line answers these


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_health_pages_answer_probes_and_refuse_what_is_not_one():
    async def fine() -> Check:
        return Check("store", True)

    async def down() -> Check:
        return Check("nats", False, "NATS unreachable")

    port = free_port()
    server = HealthServer("127.0.0.1", port, live=lambda: [("store", fine)],
                          ready=lambda: [("store", fine), ("nats", down)])
    await server.start()
    try:
        live = await _ask(port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = live.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and json.loads(body)["ok"] is True
        ready = await _ask(port, b"GET /readyz?verbose=1 HTTP/1.1\r\n\r\n")
        assert ready.startswith(b"HTTP/1.1 503") and b"NATS unreachable" in ready
        metrics = await _ask(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        assert metrics.startswith(b"HTTP/1.1 200") and b"text/plain" in metrics
        assert (await _ask(port, b"HEAD /livez HTTP/1.1\r\n\r\n")).endswith(b"\r\n\r\n")
        assert (await _ask(port, b"GET /admin HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 404")
        assert (await _ask(port, b"POST /readyz HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 405")
        assert (await _ask(port, b"GET x HTTP/1.1\r\n\r\n")).startswith(b"HTTP/1.1 400")
        huge = b"GET /livez HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n"
        assert await _ask(port, huge) == b""  # too long to be a probe: closed, no answer
    finally:
        await server.stop()


BUILT_AT_IMPORT = """
import importlib, sys
from rekey.serve import nats_without_aiohttp
nats_without_aiohttp()
import shared.runtime
import services.{service}.bootstrap
from shared.commands import Command
from shared.contracts.base import EventBody

def every(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from every(sub)

models = [*every(Command), *every(EventBody)]
print(len(models), sum(1 for m in models if m.__pydantic_complete__),
      "services.verification.domain" in sys.modules)
"""


@pytest.mark.parametrize("service", ["ticketing", "credentials", "verification", "audit"])
def test_a_service_process_builds_no_command_or_event_body_validator_while_it_imports(
        service: str):
    done = subprocess.run([sys.executable, "-c", BUILT_AT_IMPORT.format(service=service)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, check=True)
    models, built, enrolment_loaded = done.stdout.split()
    assert int(models) > 20
    assert int(built) == 0  # each is built when first used (docs/benchmarks.md, "Start-up")
    if service == "credentials":  # it needs the code length, not verification's aggregate
        assert enrolment_loaded == "False"


def test_every_command_a_service_accepts_is_a_command_built_at_its_first_use():
    import importlib

    from pydantic import BaseModel, ValidationError

    from shared.commands import Command

    modules = ["shared.runtime", *(f"services.{name}.commands" for name in
                                   ("ticketing", "credentials", "verification", "consent",
                                    "audit"))]
    models = [value for module in map(importlib.import_module, modules)
              for value in vars(module).values()
              if isinstance(value, type) and issubclass(value, BaseModel)
              and value.__module__ == module.__name__]
    assert len(models) > 30
    assert [m.__name__ for m in models if not issubclass(m, Command)] == []

    from services.credentials.commands import SignIn

    with pytest.raises(ValidationError):  # a deferred model still refuses what it must
        SignIn.model_validate({"username": "jane", "password": ""})
    assert SignIn.model_validate({"username": "jane", "password": "x"}).channel == "portal"
