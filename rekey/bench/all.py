"""``rekey bench all``: every figure beside the limit it is held to, measured in the same run.

Each figure is a :class:`Result`: ``value`` in ``unit``, and when it has one, the ``limit`` the
hardware sets for it measured in this run on this machine, and the ``ratio`` of the two (1.0 is
the limit reached; for a latency the ratio is limit / value, so higher is better there too).
On a shared or busy machine the absolute values move; the ratios much less, since a figure and
its limit are measured side by side under the same load.

Where the figures come from:

- the limits: argon2id verifies per second on all cores (the bound of sign-ins; a guided reset
  costs four argon2id operations; measured again right before each concurrency level), the
  bare store commit rate (the bound of the pipeline: every event ends in a consumer's commit;
  measured before and after the pipeline, and the mean taken),
  bare JetStream publishes and bare request/reply;
- the pipeline: relay -> JetStream -> durable consumer -> commit, from credentials to ticketing,
  each a process as ``rekey up`` runs it (:func:`process_pipeline_rate`); ``rekey bench
  pipeline`` measures the same between the two in one process (for a profiler), and the start
  of a service over unswept events (``start_over_unswept_s``) is timed there;
- everything else against the stack as ``rekey up`` runs it: nats-server, the mail sink, every
  service and the portal as separate processes (``rekey.stack.processes.Stack``) over the real
  bus; guided resets and sign-ins at a sweep of concurrency levels, TOTP checks one at a time,
  the time until every process answers, each process's resident memory idle and under load, and
  each service's CPU seconds per guided reset (``reset_cpu_s``: user + system time read from
  /proc before and after the resets, once the stack has gone quiet; it holds under load, where
  the rates do not), and the same per sign-in (``sign_in_cpu_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

from rekey.bench.pipeline import (
    BENCH_IDENTITY,
    Bench,
    bench_environment,
    jetstream_publish_rate,
    pipeline_rate,
    reset_once,
    store_accounts,
    store_commit_rate,
)

ARGON2_PER_RESET = 4  # the temporary password's hash, its verify at sign-in and at the change, the new hash


@dataclass
class Result:
    name: str
    store: str | None
    value: float
    unit: str
    limit: float | None = None
    ratio: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. concurrency, process

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "store": self.store, "value": round(self.value, 3),
                "unit": self.unit, "limit": None if self.limit is None else round(self.limit, 3),
                "ratio": None if self.ratio is None else round(self.ratio, 3), **self.detail}


def rate_against(name: str, store: str | None, value: float, unit: str, limit: float | None,
                 **detail: Any) -> Result:
    ratio = value / limit if limit else None
    return Result(name, store, value, unit, limit, ratio, detail)


def latency_against(name: str, store: str | None, value: float, limit: float | None,
                    **detail: Any) -> Result:
    ratio = limit / value if limit and value else None
    return Result(name, store, value, "ms", limit, ratio, detail)


@dataclass
class Size:
    events: int = 2000
    resets: int = 16
    levels: tuple[int, ...] = (1, 4, 16)  # concurrency levels of resets and sign-ins
    # Per level. A sign-in is about 20 ms of CPU, so 64 at once were over in under a second,
    # much of it the first and last waves; 256 give a steady rate (docs/benchmarks.md).
    sign_ins: int = 256
    totp: int = 200
    argon2: int = 128  # the limit over about as long as a level's sign-ins

    @classmethod
    def small(cls) -> Size:
        return cls(events=30, resets=2, levels=(1, 2), sign_ins=4, totp=5, argon2=4)


Emit = Callable[[Result], None]


# --- the limits ------------------------------------------------------------------------------
def argon2_rate(count: int) -> float:
    """argon2id verifies per second with one thread per core: argon2-cffi's own
    ``PasswordHasher`` with credentials' parameters, not credentials' code, so the limit is
    the library's and the machine's alone (argon2-cffi releases the GIL, so threads reach every
    core: docs/benchmarks.md)."""
    from argon2 import PasswordHasher

    from services.credentials.passwords import HASHER

    library = PasswordHasher(time_cost=HASHER.time_cost, memory_cost=HASHER.memory_cost,
                             parallelism=HASHER.parallelism)
    stored = library.hash("bench password, long enough")
    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:
        list(pool.map(lambda _: library.verify(stored, "bench password, long enough"),
                      range(cores)))
        started = time.perf_counter()
        list(pool.map(lambda _: library.verify(stored, "bench password, long enough"),
                      range(count)))
    return count / (time.perf_counter() - started)


async def request_reply_ms(bench: Bench, count: int) -> list[float]:
    """Bare request/reply round trips on the bench's nats-server (no service, no store)."""
    from shared.bus.connection import connect

    nc = await connect(bench.settings, BENCH_IDENTITY.name, name="bench-rr")

    async def answer(msg: Any) -> None:
        await msg.respond(b"ok")

    await nc.subscribe("bench.echo", cb=answer)
    await nc.flush()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await nc.request("bench.echo", b"x" * 200, timeout=5)
        samples.append((time.perf_counter() - started) * 1000)
    await nc.close()
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- CPU time ------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system, /proc/<pid>/stat): unlike a rate, it holds on
    a machine other work shares."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


async def settled_cpu(pids: dict[str, int], most: float = 5.0) -> dict[str, float]:
    """Each process's CPU time once the stack has gone quiet (work a reset left behind, such as
    the audit trail, counts to it): read until a 0.25 s step adds almost nothing, at most ``most``
    seconds."""
    seen = {name: cpu_seconds(pid) for name, pid in pids.items()}
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        now = {name: cpu_seconds(pid) for name, pid in pids.items()}
        if sum(now.values()) - sum(seen.values()) < 0.02:
            return now
        seen = now
    return seen


# --- resident memory -------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """The highest RSS of each process while the block runs (sampled every 0.2 s)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = {name: rss_mb(pid) for name, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mb(pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the stack as `rekey up` runs it ---------------------------------------------------------
@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def stack_environment(store: str) -> Iterator[tuple[dict[str, str], Path]]:
    from rekey.stack.environment import prepare_environment
    from rekey.stack.inprocess import scratch_database
    from rekey.stack.ports import free_port

    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rekey-bench-up-")))
        overrides = {
            "REKEY_NATS_URL": f"tls://127.0.0.1:{free_port()}", "REKEY_SMTP_PORT": str(free_port()),
            "REKEY_PORTAL_PORT": str(free_port()), "REKEY_INTAKE_PORT": str(free_port()),
            "REKEY_STORE": store, "REKEY_LOG_LEVEL": "WARNING",
        }
        if store == "postgres":
            overrides["REKEY_POSTGRES_DB"] = stack.enter_context(scratch_database("rekey_bench"))
        with _environment(overrides):
            env = prepare_environment(folder / "rekey", **overrides)
        with _environment(env):
            yield env, folder


async def process_pipeline_rate(store: str, count: int) -> float:
    """Events/s from credentials' relay through JetStream to ticketing's durable consumer and
    its commit, the two services as separate processes.

    ``count`` accounts are stored while credentials is down, with ticketing already consuming;
    then credentials starts and relays them. The clock runs from the last look (JetStream's
    consumer info, every 5 ms) that found nothing delivered to ticketing yet to the first that
    finds all acknowledged, so the process's own start is not in the figure
    (``start_over_unswept_s`` is)."""
    from rekey.stack.processes import Stack
    from shared.bus.connection import connect
    from shared.contracts.envelope import STREAM_NAME
    from shared.settings import Settings

    with stack_environment(store) as (env, _):
        settings = Settings()
        stack = Stack(settings, env=env)
        stack.nats.start()
        stack.mail.start()
        try:
            stack.start_service("ticketing")
            await stack.wait_healthy()
            await store_accounts(settings, count)
            nc = await connect(settings, "operator", name="rekey-bench")
            try:
                js = nc.jetstream()
                base = (await js.consumer_info(STREAM_NAME, "ticketing")).ack_floor.consumer_seq or 0
                stack.start_service("credentials")
                deadline = time.monotonic() + 60 + count / 10
                quiet_at = time.perf_counter()  # the last look that found nothing delivered
                while True:
                    info = await js.consumer_info(STREAM_NAME, "ticketing")
                    now = time.perf_counter()
                    if (info.delivered.consumer_seq or 0) <= base:
                        quiet_at = now
                    elif (info.ack_floor.consumer_seq or 0) - base >= count and \
                            not info.num_ack_pending:
                        return count / (now - quiet_at)
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"ticketing did not consume {count} events in time; "
                                           f"see {settings.data_dir}/logs")
                    await asyncio.sleep(0.005)
            finally:
                await nc.close()
        finally:
            await asyncio.to_thread(stack.stop)


async def stack_figures(store: str, size: Size, limits: dict[str, float], emit: Emit) -> None:
    from rekey.stack.processes import Stack
    from shared.settings import Settings

    with stack_environment(store) as (env, _):
        settings = Settings()
        stack = Stack(settings, env=env, portal=True)
        started = time.perf_counter()
        await asyncio.to_thread(stack.start)
        try:
            emit(Result("up_ready_s", store, time.perf_counter() - started, "s"))
            pids = {name: p.pid for name, p in stack.processes.items()}
            for name, pid in pids.items():
                emit(Result("rss_idle_mb", store, rss_mb(pid), "MB", detail={"process": name}))
            with PeakRss(pids) as peak:
                await _load(stack, settings, store, size, limits, emit)
            for name, mb in peak.peak.items():
                emit(Result("rss_load_mb", store, mb, "MB", detail={"process": name}))
            total = sum(peak.peak.values())
            emit(Result("rss_load_mb", store, total, "MB", detail={"process": "all"}))
        finally:
            await asyncio.to_thread(stack.stop)


async def _load(stack: Any, settings: Any, store: str, size: Size, limits: dict[str, float],
                emit: Emit) -> None:
    from rekey.stack.agents import agent_principal, invite_with_app
    from shared.bus.connection import connect
    from shared.client import RekeyClient
    from shared.principals import operator_principal
    from shared.settings import PROCESSES

    nc = await connect(settings, "operator", name="rekey-bench")
    client = RekeyClient(nc, timeout=60)
    try:
        password = secrets.token_urlsafe(24)
        app = await invite_with_app(client.call, settings, stack.mail_folder, "bench.agent",
                                    "bench.agent@example.org", "Agent", password)
        agent = await agent_principal(client.call, "bench.agent", password, app)
        operator = operator_principal(settings)
        passwords: dict[str, str] = {}
        services = {name: stack.processes[name].pid for name in PROCESSES if name in stack.processes}
        spent = dict.fromkeys(services, 0.0)  # CPU seconds of the resets alone, per service
        resets = 0
        for level in size.levels:
            # The limit measured right before the figure: on a shared machine the load moves.
            argon2 = await asyncio.to_thread(argon2_rate, size.argon2)
            users = [f"r{level}x{i}.{secrets.token_hex(3)}@masspasrr.org"
                     for i in range(size.resets)]
            for user in users:
                await client.call("credentials", "register_account", username=user,
                                  email=f"{user.split('@')[0]}@example.org", display_name="R",
                                  principal=operator)
            before = await settled_cpu(services)
            seconds, _ = await _at_once(
                level, [lambda u=u: _reset(client, stack.mail_folder, u, agent, passwords)
                        for u in users])
            after = await settled_cpu(services)
            for name in services:
                spent[name] += after[name] - before[name]
            resets += len(users)
            emit(rate_against("resets_per_s", store, len(users) / seconds, "reset/s",
                              argon2 / ARGON2_PER_RESET, concurrency=level))
        # Where a reset's CPU goes (docs/benchmarks.md): seconds per reset, each service process
        for name, cpu in (*spent.items(), ("all", sum(spent.values()))):
            emit(Result("reset_cpu_s", store, cpu / resets, "s", detail={"process": name}))
        signing = list(passwords.items())
        spent, signed = dict.fromkeys(services, 0.0), 0  # CPU seconds of the sign-ins alone
        for level in size.levels:
            calls = [lambda p=signing[i % len(signing)]: client.call(
                "credentials", "sign_in", username=p[0], password=p[1])
                for i in range(size.sign_ins)]
            argon2 = await asyncio.to_thread(argon2_rate, size.argon2)
            before = await settled_cpu(services)
            seconds, samples = await _at_once(level, calls)
            after = await settled_cpu(services)
            for name in services:
                spent[name] += after[name] - before[name]
            signed += len(calls)
            emit(rate_against("sign_ins_per_s", store, len(calls) / seconds, "sign-in/s", argon2,
                              concurrency=level))
            emit(Result("sign_in_p50_ms", store, statistics.median(samples), "ms",
                        detail={"concurrency": level}))
            emit(Result("sign_in_p99_ms", store, percentile(samples, 0.99), "ms",
                        detail={"concurrency": level}))
        # Where a sign-in's CPU goes: argon2id is about 20 ms of it (docs/benchmarks.md)
        for name, cpu in (*spent.items(), ("all", sum(spent.values()))):
            emit(Result("sign_in_cpu_ms", store, cpu / signed * 1000, "ms",
                        detail={"process": name}))
        # All at once on one account: every sign-in is an event on it, so they race to save and
        # the losers run again (without verifying the password again: docs/architecture.md).
        username, password = signing[0]
        calls = [lambda: client.call("credentials", "sign_in", username=username,
                                     password=password) for _ in range(size.sign_ins)]
        argon2 = await asyncio.to_thread(argon2_rate, size.argon2)
        seconds, _ = await _at_once(max(size.levels), calls)
        emit(rate_against("sign_ins_one_account_per_s", store, len(calls) / seconds, "sign-in/s",
                          argon2, concurrency=max(size.levels)))
        samples = await _totp_checks(client, settings, size.totp)
        emit(latency_against("totp_check_p99_ms", store, percentile(samples, 0.99),
                             limits["rr_p99_ms"] + limits["commit_ms"]))
        emit(Result("totp_check_p50_ms", store, statistics.median(samples), "ms"))
    finally:
        await nc.close()


async def _reset(client: Any, mail: Path, user: str, agent: str, passwords: dict[str, str]) -> None:
    new = f"{secrets.token_urlsafe(12)} bench"
    await reset_once(client, mail, user, agent, new_password=new)
    passwords[user] = new


async def _at_once(level: int, calls: list[Callable[[], Any]]) -> tuple[float, list[float]]:
    """Run the calls, ``level`` at a time; the wall time and each call's latency (ms)."""
    limiter = asyncio.Semaphore(level)
    samples: list[float] = []

    async def one(call: Callable[[], Any]) -> None:
        async with limiter:
            started = time.perf_counter()
            await call()
            samples.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(one(c) for c in calls))
    return time.perf_counter() - started, samples


async def _totp_checks(client: Any, settings: Any, count: int) -> list[float]:
    """One TOTP check round trip each (a fresh user each: replay protection never refuses)."""
    from services.verification import totp
    from shared.tokens import all_issuers, issue_token

    keys = all_issuers(settings)
    samples = []
    for _ in range(count):
        user = f"t.{secrets.token_hex(4)}@masspasrr.org"
        token = issue_token(keys, user, "password")
        registration = await client.call("verification", "start_app_registration",
                                         username=user, token=token)
        code = pyotp.TOTP(totp.parse_uri(registration["otpauth_uri"]).secret).now()
        started = time.perf_counter()
        await client.call("verification", "verify_code", username=user, token=token,
                          method_id=registration["method_id"], code=code)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


# --- one run ---------------------------------------------------------------------------------
async def run_all(stores: list[str], size: Size, emit: Emit) -> None:
    for store in stores:
        limits: dict[str, float] = {}
        async with bench_environment(store) as bench:
            published = await jetstream_publish_rate(bench, size.events)
            emit(Result("jetstream_publish_per_s", store, published.rate, "msg/s"))
            commits = await asyncio.to_thread(store_commit_rate, bench, size.events)
            emit(Result("store_commit_per_s", store, commits.rate, "commit/s"))
            round_trips = await request_reply_ms(bench, max(size.totp, 20))
            limits["rr_p99_ms"] = percentile(round_trips, 0.99)
            limits["commit_ms"] = 1000 / commits.rate
            emit(Result("request_reply_p99_ms", store, limits["rr_p99_ms"], "ms"))
            _, start = await pipeline_rate(bench, size.events)
            emit(Result("start_over_unswept_s", store, start.seconds, "s",
                        detail={"events": start.count}))
        piped = await process_pipeline_rate(store, size.events)
        # Its limit measured on both sides of it: a shared machine's speed drifts within a
        # run (a PostgreSQL commit rate of 199, 395 and 303/s in three runs of an hour).
        async with bench_environment(store) as bench:
            again = await asyncio.to_thread(store_commit_rate, bench, size.events)
        emit(rate_against("pipeline_events_per_s", store, piped, "event/s",
                          statistics.mean([commits.rate, again.rate]),
                          processes="credentials, ticketing",
                          commits_before=round(commits.rate, 3), commits_after=round(again.rate, 3)))
        argon2 = await asyncio.to_thread(argon2_rate, size.argon2)
        emit(Result("argon2_verifies_per_s", store, argon2, "verify/s",
                    detail={"threads": os.cpu_count() or 1}))
        await stack_figures(store, size, limits, emit)
