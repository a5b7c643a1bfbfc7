"""The drill on a real 3-node JetStream cluster: three nats-servers from the pip package, each
with the configuration `rekey bus init --node ...` renders (mutual TLS routes, the bus policy),
the event stream with three replicas, and every service on it. Guided resets run while one node
is killed and later restarted, and while the stream's leader is killed: every reset completes,
nothing is lost (every stored event reaches the stream and the audit record) and nothing is done
twice (one ticket per request, one temporary password and its mail per approval, one effect
per event in each consumer).

The services run in this process (``System``, as in the integration tests) on the cluster's
three URLs; the nodes are real processes killed with SIGKILL. Timings are printed (`-s`), never
asserted.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rekey.cli.app import app as rekey_cli
from rekey.stack.busdeploy import ClusterNode
from rekey.stack.inprocess import scratch_settings
from rekey.stack.journey import complete_reset
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from shared.bus.connection import connect
from shared.caught import latest_mail_to, list_mails
from shared.client import RekeyClient
from shared.contracts.envelope import STREAM_NAME
from shared.errors import Conflict, Unavailable
from shared.settings import PROCESSES, SERVICES
from tests.integration.conftest import AGENT, System, eventually

pytestmark = pytest.mark.e2e

NODES = ("nats-1", "nats-2", "nats-3")
PATIENCE = 120.0  # seconds for anything the cluster does after a kill (2 shared cores)
NEW_PASSWORD = "a brand new and long passphrase"
TEMPORARY = "Temporary password: "


@dataclass
class Cluster:
    folder: Path
    nodes: dict[str, ClusterNode]
    servers: dict[str, EmbeddedNats]

    @property
    def url(self) -> str:
        return ",".join(f"tls://127.0.0.1:{n.client_port}" for n in self.nodes.values())

    def jsz(self, name: str) -> dict[str, Any]:
        port = self.nodes[name].monitor_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=2) as answer:
            return json.load(answer)

    def meta_leader(self) -> str | None:
        for name, server in self.servers.items():
            if server.running:
                try:
                    leader = (self.jsz(name).get("meta_cluster") or {}).get("leader")
                except OSError:
                    continue
                if leader:
                    return str(leader)
        return None

    def kill(self, name: str) -> None:
        self.servers[name].kill()

    def restart(self, name: str) -> None:
        self.servers[name].start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    nodes = {name: ClusterNode(name, "127.0.0.1", free_port(), free_port(), free_port())
             for name in NODES}
    folder = tmp_path / "bus"
    specs = [arg for n in nodes.values()
             for arg in ("--node", f"{n.name}={n.host}:{n.client_port}:{n.route_port}:{n.monitor_port}")]
    rendered = CliRunner().invoke(rekey_cli, ["bus", "init", str(folder), *specs, "--mount", "",
                                              "--store-dir", str(tmp_path / "jetstream")])
    assert rendered.exit_code == 0, rendered.output
    servers = {name: EmbeddedNats(port=n.client_port, store_dir=tmp_path / "logs" / name,
                                  config_file=folder / f"{name}.conf") for name, n in nodes.items()}
    running = Cluster(folder, nodes, servers)
    try:
        for server in servers.values():
            server.start()
        yield running
    finally:
        running.stop()


@dataclass
class Drill:
    """The system on the cluster, a client that rides out a node's loss, and the figures."""

    system: System
    cluster: Cluster
    bus: RekeyClient
    timings: dict[str, float] = field(default_factory=dict)
    retried: Counter[str] = field(default_factory=Counter)
    lost_answers: Counter[str] = field(default_factory=Counter)

    open: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        """A call that is tried again while the bus says nobody answers (a node just died and
        the client or the service is reconnecting to another); every retry is counted.

        A node is killed between calls (:meth:`between_calls`): a reply lost with a dying
        connection is a caller's ambiguity (a timeout is not a cancellation) that the
        idempotency keys answer, not what this drill is about, which is everything the events
        carry: relays, the stream's replicas, the consumers. A call tried again that is then
        refused as a conflict ("already approved") was done by its first attempt."""
        deadline = time.monotonic() + PATIENCE
        tried_again = False
        while True:
            await self.open.wait()
            self.in_flight += 1
            try:
                return await self.bus.call(service, command, **payload)
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                self.retried[f"{service}.{command}"] += 1
                tried_again = True
            except Conflict:
                if not tried_again:
                    raise
                # The first attempt did it and its answer was lost ("already approved"):
                # refused the second time, done once.
                self.lost_answers[f"{service}.{command}"] += 1
                return {}
            finally:
                self.in_flight -= 1
            await asyncio.sleep(0.5)

    async def between_calls(self, action: Any) -> None:
        """Hold new calls, let those under way finish, run ``action``, let calls go on."""
        self.open.clear()
        try:
            await eventually(lambda: self.in_flight == 0, timeout=PATIENCE, what="calls to end")
            action()
        finally:
            self.open.set()

    async def stream(self) -> Any:
        js = self.system._nc.jetstream()
        return await eventually(lambda: _quietly(js.stream_info(STREAM_NAME)), timeout=PATIENCE,
                                what="the stream's info")

    async def consumer_drained(self, durable: str) -> bool:
        """Nothing waits for ``durable``: none undelivered and none delivered but unacked."""
        info = await _quietly(self.system._nc.jetstream().consumer_info(STREAM_NAME, durable))
        return info is not None and info.num_pending == 0 and info.num_ack_pending == 0

    async def stream_leader(self) -> str:
        info = await self.stream()
        return str(info.cluster.leader)


async def _quietly(awaitable: Any) -> Any:
    try:
        return await awaitable
    except Exception:
        return None


class Retrying:
    """What ``prove_identity`` and ``complete_reset`` call through: the drill's patient call."""

    def __init__(self, drill: Drill) -> None:
        self.drill = drill

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        return await self.drill.call(service, command, **payload)


@pytest.fixture
async def drill(cluster: Cluster, mail_sink, tmp_path: Path) -> AsyncIterator[Drill]:
    started = time.monotonic()
    await eventually(cluster.meta_leader, timeout=PATIENCE, what="the cluster's meta leader")
    formed = time.monotonic()
    settings = scratch_settings(
        tmp_path / "data", cluster.url, "sqlite", None, mail_sink.port,
        nats_keys_dir=str(cluster.folder), nats_ca_file=str(cluster.folder / "ca.pem"),
        stream_replicas=3,
    )
    system = System(settings, cluster.servers[NODES[0]], mail_sink)
    system._nc = await connect(settings, "operator", name="drill", attempts=3)
    running = Drill(system, cluster, RekeyClient(system._nc, timeout=10))
    running.open.set()
    system.client = Retrying(running)  # type: ignore[assignment]
    try:
        for name in PROCESSES:
            await system.start(name)
        running.timings["cluster formed (meta leader elected)"] = formed - started
        running.timings["services started on it"] = time.monotonic() - formed
        yield running
    finally:
        try:
            await system.stop_all()
        finally:
            await system._nc.close()


def user(i: int) -> tuple[str, str]:
    return f"drill.user{i}@masspasrr.org", f"drill.user{i}@example.org"


async def provision(drill: Drill, users: range) -> None:
    system = drill.system
    await system.provision()  # the agent (and the integration tests' user)
    for i in users:
        username, email = user(i)
        await drill.call("credentials", "register_account", username=username, email=email,
                         display_name=f"Drill User {i}", principal=system.operator(),
                         idempotency_key=f"drill-register-{i}")
    await eventually(lambda: all(system._ticketing_knows(user(i)[0]) for i in users),
                     timeout=PATIENCE, what="ticketing to know every user")


@dataclass
class Reset:
    username: str
    email: str
    ticket: str = ""
    approved: asyncio.Event = field(default_factory=asyncio.Event)
    mailed: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    seconds: float = 0.0


async def guided_reset(drill: Drill, reset: Reset) -> Reset:
    """The whole guide for one person: request, proofs, approval, the temporary password's
    mail, sign-in, a new password, an authenticator app, the agreement; the ticket closes."""
    started = time.monotonic()
    system = drill.system
    requested = await drill.call("ticketing", "request_reset", name="Drill User", email=reset.email,
                                 username=reset.username, reason="new phone",
                                 idempotency_key=f"drill-{reset.username.split('@')[0]}")
    reset.ticket = requested["ticket_number"]
    await system.prove_identity(reset.ticket)
    await drill.call("ticketing", "approve", ticket=reset.ticket, principal=system.principal(AGENT))
    reset.approved.set()
    mail = await eventually(lambda: latest_mail_to(system.mail.folder, reset.email, "temporary"),
                            timeout=PATIENCE, what=f"{reset.username}'s temporary password")
    temporary = mail.body.split(TEMPORARY, 1)[1].split()[0]
    reset.mailed.set()
    await complete_reset(Retrying(drill), reset.username, temporary, NEW_PASSWORD)

    async def closed() -> bool:
        shown = await drill.call("ticketing", "show", ticket=reset.ticket,
                                 principal=system.principal(AGENT))
        return shown["state"] == "closed"

    await eventually(closed, timeout=PATIENCE, what=f"ticket {reset.ticket} to close")
    reset.seconds = time.monotonic() - started
    reset.closed.set()
    return reset


async def resets_through(drill: Drill, users: range, chaos: Any) -> list[Reset]:
    """Run the resets side by side; ``chaos(resets)`` runs beside them (it kills nodes)."""
    resets = [Reset(*user(i)) for i in users]
    done = await asyncio.gather(*(guided_reset(drill, r) for r in resets), chaos(resets))
    return list(done[:-1])


async def test_resets_complete_once_each_while_a_node_and_then_the_stream_leader_are_killed(
    drill: Drill,
):
    cluster, system, t = drill.cluster, drill.system, drill.timings
    info = await drill.stream()
    assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
    await provision(drill, range(6))

    # (1) a node that does not lead the stream dies after the first approval, while three
    # resets are under way, and comes back once every temporary password is mailed and the
    # first reset is done (its person's steps and the ticket's closing ran on two nodes)
    leader = await drill.stream_leader()
    follower = next(n for n in NODES if n != leader)

    async def kill_and_restart_a_node(resets: list[Reset]) -> None:
        await resets[0].approved.wait()
        await drill.between_calls(lambda: cluster.kill(follower))
        killed = time.monotonic()
        for reset in resets:
            await reset.mailed.wait()
        await resets[0].closed.wait()
        cluster.restart(follower)
        t[f"node {follower} down"] = time.monotonic() - killed

        async def caught_up() -> bool:
            info = await drill.stream()
            peer = next((p for p in info.cluster.replicas or [] if p.name == follower), None)
            return peer is not None and peer.current and not peer.offline

        await eventually(caught_up, timeout=PATIENCE, what=f"{follower} to catch up")
        t[f"node {follower}: restart to current replica"] = time.monotonic() - killed - t[
            f"node {follower} down"]

    phase = time.monotonic()
    first = await resets_through(drill, range(3), kill_and_restart_a_node)
    t["phase 1: 3 resets, a node killed and restarted"] = time.monotonic() - phase

    # (2) the stream's leader dies after the first approval; another node takes over
    leader = await drill.stream_leader()

    async def kill_the_leader(resets: list[Reset]) -> None:
        await resets[0].approved.wait()
        await drill.between_calls(lambda: cluster.kill(leader))
        killed = time.monotonic()

        async def new_leader() -> str | None:
            info = await drill.stream()
            return info.cluster.leader if info.cluster.leader not in (None, leader) else None

        elected = await eventually(new_leader, timeout=PATIENCE, what="a new stream leader")
        t["new stream leader after the leader's kill"] = time.monotonic() - killed
        print(f"stream leader {leader} killed; {elected} leads")

    phase = time.monotonic()
    second = await resets_through(drill, range(3, 6), kill_the_leader)
    t["phase 2: 3 resets, the stream leader killed"] = time.monotonic() - phase
    cluster.restart(leader)
    resets = first + second

    # nothing lost: every service's relay has published all it stored; the stream holds each
    # public event once; the audit service recorded each one
    settle = time.monotonic()
    for name in SERVICES:
        app = system.app(name)
        await eventually(lambda app=app: app.relay_position() == app.max_notification_id(),
                         timeout=PATIENCE, what=f"{name}'s relay to catch up")
    audit = system.app("audit")
    apps = [system.app(name) for name in SERVICES]

    def relays_caught_up() -> bool:
        return all(app.relay_position() == app.max_notification_id() for app in apps)

    def audit_holds_every_stored_event() -> bool:
        # Both read again at each look, once every relay has caught up: a service can record
        # one more event (a notice mailed) after the relays first caught up, and a set of
        # stored events read before it would never equal the audit record after.
        if not relays_caught_up():
            return False
        stored = {(e.source, e.notification_id) for app in apps for e in app.envelopes()}
        rows = audit.projection._select("SELECT source, notification_id FROM {table}", [])
        return {(r["source"], int(r["notification_id"])) for r in rows} == stored

    await eventually(audit_holds_every_stored_event, timeout=PATIENCE,
                     what="the audit record to hold every stored event")
    # and every consumer has handled what it was given: a message delivered by a node that then
    # died, or whose ack died with it, comes back after the consumer's ack wait
    for name in SERVICES:
        if system.runtimes[name].wiring.handlers:
            await eventually(lambda name=name: drill.consumer_drained(name), timeout=PATIENCE,
                             what=f"{name}'s consumer to handle every message")

    # no copy past Nats-Msg-Id: the stream holds each stored public event once. Counted
    # together once every relay has caught up, since a service can record one more event (a
    # notice mailed) after `stored` was read (seen: 154 on the stream against 153 read before)
    async def each_public_event_once() -> bool:
        if not relays_caught_up():
            return False
        public = sum(1 for app in apps for _ in app.envelopes())
        return bool((await drill.stream()).state.messages == public)

    await eventually(each_public_event_once, timeout=PATIENCE,
                     what="the stream to hold each stored public event once")
    t["settled: relays, stream and audit agree"] = time.monotonic() - settle

    # nothing done twice
    tickets = [e for e in system.app("ticketing").envelopes() if e.name == "ResetRequested"]
    assert Counter(e.subject for e in tickets) == Counter(r.username for r in resets)
    assert len({r.ticket for r in resets}) == len(resets)
    temporary_mails = Counter(to for m in list_mails(system.mail.folder)
                              if "temporary" in m.subject.lower() for to in m.to)
    assert {r.email: temporary_mails[r.email] for r in resets} == {r.email: 1 for r in resets}
    for service, name in (("credentials", "PasswordIssued"), ("credentials", "TemporaryPasswordSent"),
                          ("verification", "MethodsRevoked"), ("ticketing", "TicketClosed"),
                          ("consent", "AgreementAccepted")):
        effects = Counter(e.subject for e in system.app(service).envelopes() if e.name == name)
        assert {r.username: effects[r.username] for r in resets} == {
            r.username: 1 for r in resets}, (service, name, effects)

    print("\n3-node JetStream cluster drill (seconds):")
    for what, seconds in t.items():
        print(f"  {what:<55} {seconds:7.2f}")
    for reset in resets:
        print(f"  reset of {reset.username:<47} {reset.seconds:7.2f}")
    print(f"  calls tried again while a node was away: {dict(drill.retried) or 'none'}")
    print(f"  of which done the first time (answer lost): {dict(drill.lost_answers) or 'none'}")
