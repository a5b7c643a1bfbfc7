"""``rekey status``: every process asked at once, each dependency named, in under 3 s.

NATS is tried first with a short timeout; then every service is asked for its ``health``
side by side (each answers within its own check budget, see :mod:`shared.health`), and the
stream's own figures are read. Whatever is down, the whole report is bounded by
:data:`BUDGET_SECONDS`: a service that does not answer in time is reported as such.

Each service reports its checks (NATS, its store, SMTP, Twilio, its loops) with the cause of
a failure, and its relay position against what the stream really holds: fewer of its events
on the stream than it relayed is a gap (a purged or lost stream), which
``rekey repair republish`` fixes from the stores.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp

from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.contracts.envelope import STREAM_NAME
from shared.logs import describe
from shared.settings import PROCESSES, Settings

BUDGET_SECONDS = 2.8
CONNECT_SECONDS = 1.0


def health_ports(data_dir: Path) -> dict[str, int]:
    """Where each process `rekey up` started serves /readyz (``health.json``), if any."""
    try:
        return {str(k): int(v) for k, v in json.loads((data_dir / "health.json").read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


async def gather_status(settings: Settings, identity: str = "operator",
                        processes: tuple[str, ...] = PROCESSES,
                        ports: dict[str, int] | None = None) -> dict[str, Any]:
    """The whole report as data (``--json`` prints it as it is). ``ports``: processes' health
    ports to ask /readyz too (default: ``health.json`` in the data folder); this is how the
    portal is asked, and how services are heard when NATS is down."""
    started = time.monotonic()
    report: dict[str, Any] = {"nats": {}, "stream": None, "services": {}, "problems": []}
    ports = health_ports(Path(settings.data_dir)) if ports is None else ports
    readiness = asyncio.ensure_future(_readiness(ports, BUDGET_SECONDS - 0.3))
    try:
        await _over_the_bus(settings, identity, processes, report, started)
    finally:
        report["processes"] = await readiness
    for name, ready in report["processes"].items():
        if not report["services"].get(name, {}).get("answering"):
            report["problems"].extend(f"{name} (readyz): {d}" for d in ready["failing"])
    report["seconds"] = round(time.monotonic() - started, 2)
    return report


async def _readiness(ports: dict[str, int], budget: float) -> dict[str, dict[str, Any]]:
    async def one(name: str, port: int) -> tuple[str, dict[str, Any]]:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=budget)) as http, \
                    http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                body = await answer.json()
            failing = [c["detail"] or c["name"] for c in body.get("checks", []) if not c["ok"]]
            return name, {"ready": bool(body.get("ok")), "failing": failing}
        except (Exception, TimeoutError) as exc:
            return name, {"ready": False, "failing": [f"no answer on port {port} ({describe(exc)})"]}

    return dict(await asyncio.gather(*(one(n, p) for n, p in ports.items())))


async def _over_the_bus(settings: Settings, identity: str, processes: tuple[str, ...],
                        report: dict[str, Any], started: float) -> None:
    try:
        nc = await asyncio.wait_for(
            connect(settings, identity, name="rekey-status", attempts=1), CONNECT_SECONDS)
    except (Exception, TimeoutError) as exc:
        cause = "no answer" if isinstance(exc, TimeoutError) else describe(exc)
        report["nats"] = {"ok": False, "detail": f"NATS unreachable at {settings.nats_url}: {cause}"}
        report["problems"].append(report["nats"]["detail"])
        for name in processes:
            report["services"][name] = {"answering": False, "detail": "not asked: NATS is down"}
        return
    report["nats"] = {"ok": True, "detail": f"connected to {settings.nats_url}"}
    try:
        remaining = BUDGET_SECONDS - (time.monotonic() - started)
        client = RekeyClient(nc, timeout=max(0.5, remaining - 0.2))
        stream, *healths = await asyncio.gather(
            _stream(nc, remaining), *(_ask(client, name, remaining) for name in processes))
    finally:
        await nc.close()
    report["stream"] = stream
    for name, health in zip(processes, healths, strict=True):
        report["services"][name] = health
        report["problems"].extend(_problems(name, health))


async def _stream(nc: Any, budget: float) -> dict[str, Any] | None:
    try:
        info = await asyncio.wait_for(nc.jetstream().stream_info(STREAM_NAME), budget)
    except (Exception, TimeoutError):
        return None
    return {"messages": info.state.messages, "first_seq": info.state.first_seq,
            "last_seq": info.state.last_seq}


async def _ask(client: RekeyClient, name: str, budget: float) -> dict[str, Any]:
    try:
        health = await asyncio.wait_for(client.call(name, "health"), budget)
    except TimeoutError:
        return {"answering": False, "detail": f"{name} did not answer within {budget:.1f} s"}
    except Exception as exc:
        return {"answering": False, "detail": getattr(exc, "message", None) or describe(exc)}
    return {"answering": True, **health}


def _problems(name: str, health: dict[str, Any]) -> list[str]:
    if not health.get("answering"):
        return [f"{name}: {health.get('detail', 'not answering')}"]
    found = [f"{name}: {c['detail'] or c['name'] + ' failing'}"
             for c in health.get("checks", []) if not c["ok"]]
    if health.get("gap"):
        found.append(
            f"{name}: the stream holds {health['stream_events']} of its events but "
            f"{health['relayed_events']} were relayed (a gap of {health['gap']}); "
            "run `rekey repair republish`"
        )
    return found


def dependency(health: dict[str, Any], name: str) -> str:
    """One check's state for a table cell: ok, failing, or blank when the service has none."""
    for check in health.get("checks", []):
        if check["name"] == name:
            return "ok" if check["ok"] else "FAILING"
    return ""


async def republish_all(client: RekeyClient, services: list[str], run: str, start: int = 1,
                        progress: Any = None) -> dict[str, int]:
    """``rekey repair republish``: each service puts its stored events (from ``start``) on the
    stream again, 500 at a time; ``progress(service, done, total)`` after each step."""
    done: dict[str, int] = {}
    for name in services:
        last = (await client.call(name, "health"))["relay_position"] or 0
        total = max(last - start + 1, 0)
        position, published = start, 0
        if progress is not None:
            progress(name, 0, total)
        while position <= last:
            step = await client.call(name, "republish", start=position, limit=500, run=run)
            published += step["published"]
            position = step["next"]
            if progress is not None:
                progress(name, min(position, last + 1) - start, total)
        done[name] = published
    return done
