"""``rekey check PROCESS``: exit 0 when the process is ready, for container healthchecks.

With ``REKEY_HEALTH_PORT`` set (compose sets it for every Rekey container), a service or the
portal is asked ``GET /readyz`` on that port: 200 means connected to NATS, the store answers
and the relay and consumer loops make progress; a 503 names each failing check. Without it, a
service is asked for its own ``health`` over the bus with its own key (the bus policy lets
each service ask its own health and nothing else of its endpoints), and the portal ``/healthz``.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from shared.settings import PROCESSES, Settings

LISTENERS = ("mailsink", "twilio-sim")  # stand-ins: ready when they accept a connection


def check(
    process: Annotated[str, typer.Argument(help="A service, portal, mailsink or twilio-sim")],
    port: Annotated[int, typer.Option(help="mailsink, twilio-sim: the port they listen on")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer")] = 3.0,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (default: REKEY_DATA_DIR)")] = None,
) -> None:
    """Exit 0 if PROCESS answers (a service its own health over the bus, the portal /healthz,
    the mail sink and the Twilio sim a connection to --port on 127.0.0.1)."""
    from rekey.stack.environment import settings_for

    if process not in (*PROCESSES, "portal", *LISTENERS) or (process in LISTENERS and not port):
        typer.echo(f"Unknown process {process!r}: one of {', '.join(PROCESSES)}, portal, or "
                   f"{' or '.join(LISTENERS)} with --port.", err=True)
        raise typer.Exit(2)
    settings = settings_for(data_dir)
    try:
        if process in LISTENERS:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout):
                detail = f"127.0.0.1:{port} accepts connections"
        elif settings.health_port:
            detail = readyz(settings, timeout)
        elif process == "portal":
            detail = portal_ready(settings, timeout)
        else:
            detail = asyncio.run(service_ready(settings, process, timeout))
    except Exception as exc:
        typer.echo(f"{process} is not ready: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{process} is ready: {detail}")


def readyz(settings: Settings, timeout: float) -> str:
    """The process's own ``/readyz``: ready, or an error naming every failing check."""
    import json
    import urllib.error

    url = f"http://127.0.0.1:{settings.health_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            body = json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        body = json.loads(refused.read() or b"{}")
        failing = [c["detail"] or c["name"] for c in body.get("checks", []) if not c["ok"]]
        raise RuntimeError("; ".join(failing) or f"{url} answered {refused.code}") from None
    return ", ".join(f"{c['name']} ok" for c in body.get("checks", []))


def portal_ready(settings: Settings, timeout: float) -> str:
    host = "127.0.0.1" if settings.portal_host in ("0.0.0.0", "::") else settings.portal_host
    url = f"http://{host}:{settings.portal_port}/healthz"
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return f"{url} {answer.status}"


async def service_ready(settings: Settings, service: str, timeout: float) -> str:
    from shared.bus.connection import connect
    from shared.client import RekeyClient

    nc = await asyncio.wait_for(connect(settings, service, name=f"rekey-check-{service}",
                                        attempts=1), timeout)
    try:
        health = await RekeyClient(nc, timeout=timeout).call(service, "health")
    finally:
        await nc.close()
    return f"store {health['store']}, relay lag {health['relay_lag']}"
