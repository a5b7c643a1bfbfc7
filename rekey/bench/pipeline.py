"""``rekey bench pipeline``: throughput figures, printed beside the raw baselines.

Figures, not assertions: the baselines (JetStream publish rate, store commit rate) are
measured in the same run on the same machine, so the pipeline's figures read as ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rekey.stack.agents import agent_principal, invite_with_app
from rekey.stack.buskeys import BusKeys
from rekey.stack.inprocess import InProcessServices, scratch_database, scratch_settings
from rekey.stack.journey import complete_reset
from rekey.stack.mailsink import MailSink
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from rekey.stack.proofs import prove_by_mail_and_id
from services.credentials.commands import RegisterAccount
from shared.bus.connection import connect
from shared.bus.identities import Identity
from shared.caught import latest_mail_to
from shared.client import RekeyClient
from shared.concurrency import in_thread
from shared.principals import operator_principal
from shared.settings import SERVICES
from shared.waiting import eventually

TEMPORARY = re.compile(r"Temporary password: (\S+)")


@dataclass
class Figure:
    store: str
    name: str
    count: int
    seconds: float
    unit: str

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


# The baseline publishes to a scratch stream of its own, on the bench's own server only.
BENCH_IDENTITY = Identity(
    name="bench",
    publish=("bench.>", "$JS.API.INFO", "$JS.API.STREAM.CREATE.BENCH", "$JS.API.STREAM.DELETE.BENCH",
             "_INBOX_bench.>"),
    subscribe=("_INBOX_bench.>", "bench.echo"),
    description="rekey bench: the JetStream publish and request/reply baselines",
)


class Bench(InProcessServices):
    """The services in this process on their own nats-server and mail sink under ``folder``."""

    def __init__(self, folder: Path, store: str, postgres_db: str | None) -> None:
        self.folder = folder
        self.nats = EmbeddedNats(port=free_port(), store_dir=folder / "nats",
                                 keys=BusKeys.create(folder / "bus"),
                                 extra_identities=[BENCH_IDENTITY])
        self.mail = MailSink(folder / "mail", port=free_port())
        super().__init__(scratch_settings(
            folder / "data", self.nats, store,
            postgres_db, self.mail.port, log_level="WARNING",
        ))


@contextlib.asynccontextmanager
async def bench_environment(store: str) -> AsyncIterator[Bench]:
    with contextlib.ExitStack() as stack:
        postgres_db = None
        if store == "postgres":
            postgres_db = stack.enter_context(scratch_database("rekey_bench"))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rekey-bench-")))
        bench = Bench(folder, store, postgres_db)
        stack.enter_context(bench.nats)
        stack.enter_context(bench.mail)
        try:
            yield bench
        finally:
            await bench.stop_all()


async def jetstream_publish_rate(bench: Bench, count: int) -> Figure:
    """Baseline: one publish at a time, each waiting for its ack, as the relay does."""
    from nats.js.api import StreamConfig

    nc = await connect(bench.settings, BENCH_IDENTITY.name, name="bench")
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], duplicate_window=600))
    payload = b"x" * 400
    started = time.perf_counter()
    for i in range(count):
        await js.publish("bench.events", payload, headers={"Nats-Msg-Id": f"bench:{i}"})
    seconds = time.perf_counter() - started
    await js.delete_stream("BENCH")
    await nc.close()
    return Figure(bench.settings.store, "JetStream publish (baseline)", count, seconds, "msg/s")


def store_commit_rate(bench: Bench, count: int) -> Figure:
    """Baseline: one event per transaction into a service's own store."""
    from services.credentials.application import CredentialsApplication
    from services.credentials.domain import Account

    app = CredentialsApplication(bench.settings, {"POSTGRES_SCHEMA": "bench_baseline"}
                                 if bench.settings.store == "postgres" else None)
    if bench.settings.store == "sqlite":
        app.close()
        app = CredentialsApplication(
            bench.settings, {"SQLITE_DBNAME": str(bench.folder / "baseline.sqlite")}
        )
    started = time.perf_counter()
    for i in range(count):
        app.save(Account(username=f"baseline{i}", email="b@example.org", display_name="B",
                         role="user", actor="bench"))
    seconds = time.perf_counter() - started
    app.close()
    return Figure(bench.settings.store, "store commit (baseline)", count, seconds, "commit/s")


async def store_accounts(settings: Any, count: int) -> None:
    """``count`` accounts stored by credentials' application in this process (its service down),
    their events waiting in its store for its relay."""
    from services.credentials.application import CredentialsApplication

    operator = operator_principal(settings)
    app = CredentialsApplication(settings)
    try:
        for i in range(count):
            await in_thread(app.register_account, RegisterAccount(
                username=f"user{i}@masspasrr.org", email=f"user{i}@example.org",
                display_name="U", principal=operator))
    finally:
        app.close()


async def pipeline_rate(bench: Bench, count: int) -> tuple[Figure, Figure]:
    """Events through relay -> JetStream -> durable consumer -> tracking commit downstream,
    and, apart, the start of the service that holds them.

    ``count`` accounts are stored while credentials is down, with ticketing's consumer already
    waiting; the pipeline's clock starts when credentials has started, that is when its relay
    starts (a service relays only after its start-up sweeps). Its start, timed apart, is the
    first start over ``count`` events no sweep has read (``rekey.bench`` docs/benchmarks.md)."""
    await store_accounts(bench.settings, count)
    ticketing = await bench.start("ticketing")
    starting = time.perf_counter()
    await bench.start("credentials")
    started = time.perf_counter()
    while ticketing.consumer is None or ticketing.consumer.processed < count:
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    await bench.stop_all()
    return (Figure(bench.settings.store, "relay -> JetStream -> consumer", count, seconds,
                   "event/s"),
            Figure(bench.settings.store, "start over unswept events", count,
                   started - starting, "event/s"))


async def guided_reset_rate(bench: Bench, count: int, concurrency: int = 4) -> Figure:
    """Whole guided resets through all four services over the bus, several at once."""
    for name in SERVICES:
        await bench.start(name)
    nc = await connect(bench.settings, "operator", name="bench-client")
    client = RekeyClient(nc, timeout=30)
    agent, password = "bench.agent", secrets.token_urlsafe(24)
    operator = operator_principal(bench.settings)
    app = await invite_with_app(client.call, bench.settings, bench.mail.folder, agent,
                                "a@example.org", "Agent", password)
    agent = await agent_principal(client.call, agent, password, app)
    users = [f"reset{i}@masspasrr.org" for i in range(count)]
    for user in users:
        await client.call("credentials", "register_account", username=user,
                          email=f"{user.split('@')[0]}@example.org", display_name="R",
                          principal=operator)
    limiter = asyncio.Semaphore(concurrency)

    async def one(user: str) -> None:
        async with limiter:
            await reset_once(client, bench.mail.folder, user, agent)

    started = time.perf_counter()
    await asyncio.gather(*(one(u) for u in users))
    seconds = time.perf_counter() - started
    await nc.close()
    await bench.stop_all()
    return Figure(bench.settings.store, f"guided resets ({concurrency} at a time)", count,
                  seconds, "reset/s")


async def reset_once(client: RekeyClient, mail: Path, user: str, principal: str,
                     new_password: str | None = None) -> None:
    email = f"{user.split('@')[0]}@example.org"
    ticket = await _retry(lambda: client.call(
        "ticketing", "request_reset", name="R", email=email, username=user, reason="new phone"))
    await prove_by_mail_and_id(client, mail, ticket["ticket_number"], principal, _retry)
    await _retry(lambda: client.call("ticketing", "approve", ticket=ticket["ticket_number"],
                                     principal=principal))
    message = await _retry(lambda: asyncio.to_thread(latest_mail_to, mail, email, "temporary"))
    temporary = TEMPORARY.search(message.body).group(1)  # type: ignore[union-attr]
    await complete_reset(client, user, temporary,
                         new_password or f"{secrets.token_urlsafe(12)} bench")


async def _retry(attempt: Any, timeout: float = 60.0) -> Any:
    from shared.errors import NotFound

    return await eventually(attempt, what="the services to catch up", timeout=timeout,
                            retry_on=(NotFound,))


async def run_pipeline_bench(stores: list[str], events: int, resets: int) -> list[Figure]:
    figures: list[Figure] = []
    for store in stores:
        async with bench_environment(store) as bench:
            figures.append(await jetstream_publish_rate(bench, events))
            figures.append(await asyncio.to_thread(store_commit_rate, bench, events))
            figures.extend(await pipeline_rate(bench, events))
            figures.append(await guided_reset_rate(bench, resets))
    return figures
