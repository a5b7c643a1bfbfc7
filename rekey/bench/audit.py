"""``rekey bench audit``: a user's history from the audit service's index at 10k, 100k, 1M events.

The events are made cheaply but by the real applications: one whole guided reset runs through
the four services and the audit service in this process, and the audit service's rows for that
user are the template. Each synthetic user is a copy of it with its own username, agent (one of
50), ticket id and number, event ids, notification ids and times (a minute apart per user), bulk
inserted with their tracking rows (and, on PostgreSQL, analysed). Then the history of random
users is asked: of the application in this process (the SQL and the parsing) and over the bus
as `rekey audit history` asks it (the same plus NATS and JSON), and p50/p99 are printed beside
the 20 ms limit.
"""

from __future__ import annotations

import json
import random
import secrets
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid5

from rekey.bench.pipeline import Bench, bench_environment, reset_once
from rekey.stack.agents import agent_principal, invite_with_app
from services.audit.application import AuditApplication
from services.audit.projection import agent_of, canonical_json, micros, ticket_of
from shared.application import REKEY_NAMESPACE
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.concurrency import in_thread
from shared.contracts import EventEnvelope
from shared.contracts.ticketing import ticket_number
from shared.principals import operator_principal
from shared.runtime import HistoryQuery
from shared.settings import AUDIT, PROCESSES
from shared.waiting import eventually

LIMIT_MS = 20.0
WARM_UP = 20  # queries before the measured ones
AGENTS = 50
TEMPLATE_USER = "template.user@masspasrr.org"
TEMPLATE_AGENT = "bench.agent"


@dataclass(frozen=True)
class Latency:
    store: str
    events: int
    measure: str
    queries: int
    p50_ms: float
    p99_ms: float
    fill_seconds: float

    @property
    def within_limit(self) -> bool:
        return self.p99_ms <= LIMIT_MS


@dataclass(frozen=True)
class Template:
    events: list[dict[str, Any]]
    ticket_id: str

    def copy(self, k: int, numbers: dict[str, int]) -> Iterator[tuple[Any, ...]]:
        """User ``k``'s copy of the reset, as projection rows."""
        user, agent = f"user{k:07d}@masspasrr.org", f"agent{k % AGENTS:02d}"
        ticket = str(uuid5(REKEY_NAMESPACE, f"bench-ticket:{k}"))
        swaps = ((TEMPLATE_USER, user), (TEMPLATE_AGENT, agent), (self.ticket_id, ticket),
                 (ticket_number(self.ticket_id), ticket_number(ticket)))
        for i, event in enumerate(self.events):
            numbers[event["source"]] += 1
            text = json.dumps(event)
            for old, new in swaps:
                text = text.replace(old, new)
            copy = json.loads(text)
            at = datetime.fromisoformat(copy["occurred_at"]) + timedelta(minutes=k)
            copy.update(event_id=str(uuid5(REKEY_NAMESPACE, f"bench:{k}:{i}")),
                        notification_id=numbers[copy["source"]], occurred_at=at.isoformat())
            envelope = EventEnvelope.model_construct(**{**copy, "occurred_at": at})
            yield (copy["source"], copy["notification_id"], copy["event_id"], copy["name"],
                   micros(at), copy["subject"].lower(),
                   agent_of(envelope), ticket_of(envelope), canonical_json(copy))


async def recorded_reset(bench: Bench) -> Template:
    """One whole guided reset through every service; the audit service's rows of that user."""
    for name in PROCESSES:
        await bench.start(name)
    nc = await connect(bench.settings, "operator", name="bench-audit")
    try:
        client = RekeyClient(nc, timeout=30)
        password, operator = secrets.token_urlsafe(24), operator_principal(bench.settings)
        app = await invite_with_app(client.call, bench.settings, bench.mail.folder, TEMPLATE_AGENT,
                                    "agent@example.org", "Agent", password)
        principal = await agent_principal(client.call, TEMPLATE_AGENT, password, app)
        await client.call("credentials", "register_account", username=TEMPLATE_USER,
                          email="template.user@example.org", display_name="Template User",
                          principal=operator)
        await reset_once(client, bench.mail.folder, TEMPLATE_USER, principal)
    finally:
        await nc.close()
    audit = bench.app(AUDIT)

    def closed() -> list[str] | None:
        rows = audit.projection.history(TEMPLATE_USER)
        return rows if any('"TicketClosed"' in r for r in rows) else None

    rows = await eventually(closed, what="the audit service to record the reset", timeout=60)
    await bench.stop_all()
    events = [json.loads(r) for r in rows]
    ticket = next(e["body"]["ticket_id"] for e in events if e["name"] == "ResetRequested")
    return Template(events, ticket)


def fill(app: AuditApplication, template: Template, start: int, upto_events: int) -> int:
    """Users ``start``, ``start + 1``, ... until the projection holds ``upto_events`` rows;
    the next user number."""
    numbers = {source: 10**9 for source in ("ticketing", "credentials", "verification", "consent")}
    numbers = {s: n + start * len(template.events) for s, n in numbers.items()}
    have = app.projection.count_all()
    users = max(0, -(-(upto_events - have) // len(template.events)))

    def rows() -> Iterator[tuple[Any, ...]]:
        for k in range(start, start + users):
            yield from template.copy(k, numbers)

    app.projection.bulk(rows())
    app.projection.analyse()
    return start + users


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[98]


async def measure(bench: Bench, template: Template, users: int, size: int, queries: int,
                  fill_seconds: float, chooser: random.Random) -> list[Latency]:
    runtime = await bench.start(AUDIT)
    app: AuditApplication = runtime.wiring.app
    names = [f"user{chooser.randrange(users):07d}@masspasrr.org" for _ in range(queries)]
    for name in names[:WARM_UP]:  # the store's pages into memory, as in a service that runs
        await in_thread(app.history_rows, HistoryQuery(username=name))
    local, remote = [], []
    for name in names:
        started = time.perf_counter()
        rows = await in_thread(app.history_rows, HistoryQuery(username=name))
        if len(rows) != len(template.events):  # a copy is the whole reset, or the figure lies
            raise RuntimeError(f"{name} has {len(rows)} events, not {len(template.events)}")
        local.append((time.perf_counter() - started) * 1000)
    nc = await connect(bench.settings, "auditor", name="bench-auditor")
    try:
        client = RekeyClient(nc, timeout=30)
        for name in names[:WARM_UP]:
            await client.call(AUDIT, "history", username=name)
        for name in names:
            started = time.perf_counter()
            await client.call(AUDIT, "history", username=name)
            remote.append((time.perf_counter() - started) * 1000)
    finally:
        await nc.close()
    await bench.stop_all()
    store = bench.settings.store
    return [Latency(store, size, measure_name, queries, *percentiles(samples), fill_seconds)
            for measure_name, samples in (("history, in the service", local),
                                          ("history over the bus", remote))]


async def run_audit_bench(stores: list[str], sizes: list[int], queries: int = 300,
                          seed: int = 11) -> list[Latency]:
    figures: list[Latency] = []
    for store in stores:
        async with bench_environment(store) as bench:
            template = await recorded_reset(bench)
            app = await in_thread(AuditApplication, bench.settings)
            users = 0
            try:
                for size in sorted(sizes):
                    started = time.perf_counter()
                    users = await in_thread(fill, app, template, users, size)
                    seconds = time.perf_counter() - started
                    app.close()
                    figures += await measure(bench, template, users, size, queries, seconds,
                                             random.Random(seed))
                    app = await in_thread(AuditApplication, bench.settings)
            finally:
                app.close()
    return figures

