"""``rekey bench pipeline``: throughput figures, printed beside the raw baselines.

Figures, not assertions: the baselines (JetStream publish rate, store commit rate) are
measured in the same run on the same machine, so the pipeline's figures read as ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pyotp

from rekey.mailsink import MailSink, latest_mail_to
from rekey.natsd import EmbeddedNats
from rekey.ports import free_port
from services.credentials.commands import RegisterAccount
from shared.bus.stream import connect
from shared.client import RekeyClient
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES, Settings, new_key
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


class Bench:
    def __init__(self, folder: Path, store: str, postgres_db: str | None) -> None:
        self.folder = folder
        self.nats = EmbeddedNats(port=free_port(), store_dir=folder / "nats")
        self.mail = MailSink(folder / "mail", port=free_port())
        values: dict[str, Any] = {
            "nats_url": self.nats.url, "data_dir": folder / "data", "store": store,
            "vault_key": new_key(), "token_key": new_key(), "cipher_key": new_key(),
            "smtp_port": self.mail.port, "log_level": "WARNING",
        }
        if postgres_db:
            values["postgres_db"] = postgres_db
        self.settings = Settings(**values)
        self.runtimes: dict[str, ServiceRuntime] = {}

    async def start(self, name: str) -> ServiceRuntime:
        bootstrap = importlib.import_module(f"services.{name}.bootstrap")
        wiring = await asyncio.to_thread(bootstrap.build, self.settings)
        runtime = ServiceRuntime(wiring, self.settings)
        await runtime.start()
        self.runtimes[name] = runtime
        return runtime

    async def stop_all(self) -> None:
        for name in list(self.runtimes):
            await self.runtimes.pop(name).stop()


@contextlib.asynccontextmanager
async def bench_environment(store: str) -> AsyncIterator[Bench]:
    postgres_db = None
    if store == "postgres":
        postgres_db = f"rekey_bench_{secrets.token_hex(4)}"
        _admin(f'CREATE DATABASE "{postgres_db}"')
    with tempfile.TemporaryDirectory(prefix="rekey-bench-") as tmp:
        bench = Bench(Path(tmp), store, postgres_db)
        bench.nats.start()
        bench.mail.start()
        try:
            yield bench
        finally:
            await bench.stop_all()
            bench.mail.stop()
            bench.nats.stop()
            if postgres_db:
                _admin(f'DROP DATABASE IF EXISTS "{postgres_db}" WITH (FORCE)')


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(statement)  # type: ignore[arg-type]


async def jetstream_publish_rate(bench: Bench, count: int) -> Figure:
    """Baseline: one publish at a time, each waiting for its ack, as the relay does."""
    from nats.js.api import StreamConfig

    nc = await connect(bench.settings.nats_url, "bench")
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


async def pipeline_rate(bench: Bench, count: int) -> Figure:
    """Events through relay -> JetStream -> durable consumer -> tracking commit downstream."""
    from services.credentials.application import CredentialsApplication

    app = CredentialsApplication(bench.settings)
    await asyncio.to_thread(
        lambda: [
            app.register_account(RegisterAccount(username=f"user{i}@masspasrr.org",
                                                 email=f"user{i}@example.org", display_name="U"))
            for i in range(count)
        ]
    )
    app.close()
    started = time.perf_counter()
    await bench.start("credentials")
    ticketing = await bench.start("ticketing")
    while ticketing.consumer is None or ticketing.consumer.processed < count:
        await asyncio.sleep(0.01)
    seconds = time.perf_counter() - started
    await bench.stop_all()
    return Figure(bench.settings.store, "relay -> JetStream -> consumer", count, seconds, "event/s")


async def guided_reset_rate(bench: Bench, count: int, concurrency: int = 4) -> Figure:
    """Whole guided resets through all four services over the bus, several at once."""
    for name in SERVICES:
        await bench.start(name)
    nc = await connect(bench.settings.nats_url, "bench-client")
    client = RekeyClient(nc, timeout=30)
    agent = "bench.agent"
    await client.call("credentials", "register_account", username=agent, email="a@example.org",
                      display_name="Agent", role="agent", password=secrets.token_urlsafe(24))
    users = [f"reset{i}@masspasrr.org" for i in range(count)]
    for user in users:
        await client.call("credentials", "register_account", username=user,
                          email=f"{user.split('@')[0]}@example.org", display_name="R")
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


async def reset_once(client: RekeyClient, mail: Path, user: str, agent: str) -> None:
    email = f"{user.split('@')[0]}@example.org"
    ticket = await _retry(lambda: client.call(
        "ticketing", "request_reset", name="R", email=email, username=user, reason="new phone"))
    await _retry(lambda: client.call("ticketing", "approve", ticket=ticket["ticket_number"],
                                     agent=agent))
    message = await _retry(lambda: asyncio.to_thread(latest_mail_to, mail, email, "temporary"))
    temporary = TEMPORARY.search(message.body).group(1)  # type: ignore[union-attr]
    await client.call("credentials", "sign_in", username=user, password=temporary)
    token = (await client.call("credentials", "change_password", username=user,
                               current_password=temporary,
                               new_password=f"{secrets.token_urlsafe(12)} bench"))["token"]
    registration = await client.call("verification", "start_app_registration", username=user,
                                     token=token)
    seed = parse_qs(urlparse(registration["otpauth_uri"]).query)["secret"][0]
    verified = await client.call("verification", "verify_code", username=user, token=token,
                                 method_id=registration["method_id"], code=pyotp.TOTP(seed).now())
    agreement = await client.call("consent", "present", username=user, token=verified["mfa_token"])
    await client.call("consent", "accept", username=user, token=verified["mfa_token"],
                      version=agreement["version"], content_hash=agreement["content_hash"],
                      accepted=True, confirmed=True)


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
            figures.append(await pipeline_rate(bench, events))
            figures.append(await guided_reset_rate(bench, resets))
    return figures
