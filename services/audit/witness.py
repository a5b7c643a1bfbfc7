"""The audit service's own copy of every signed tree head: a second witness the system keeps.

Each service publishes every head it signs on ``rekey.heads.<service>``; the subjects are
captured by the ``REKEY_HEADS`` stream, so the audit service reads every head through a durable
consumer (none is missed while it is down) and keeps each one in its store (``audit_heads``),
checked as it arrives:

- it is a head record, about the service whose subject it came on;
- its signature verifies with ``<keys dir>/<service>.heads.pub``;
- its RFC 9162 consistency proof leads from the head it names as previous to it;
- that previous head is the last one accepted from the same service (the first head received
  from a service is the anchor; a tree that starts at size 0 is linked from the empty tree).

A head failing any of these is kept as **refused**, with the reason; it is logged, counted
(``rekey_tree_heads_refused_total``) and shown by ``rekey status`` (the ``tree heads`` check of
the audit service) until an operator looks. A refused head never becomes the one the next head
is checked against. ``rekey audit verify --audit-copy`` checks the stores against the accepted
heads (:func:`write_heads_files`), a copy an insider with a service's store and heads file
cannot edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.audit.projection import micros
from shared import metrics
from shared.bus.pulling import fetch_or_stop, stop_signal
from shared.concurrency import in_thread
from shared.contracts.envelope import HEADS_STREAM
from shared.evidence.heads import HeadRecord
from shared.evidence.merkle import verify_consistency
from shared.evidence_keys import heads_public_keys, keys_folder
from shared.health import Check
from shared.logs import Outage

log = logging.getLogger(__name__)

HEADS_CONSUMER = "audit"
TABLE = "audit_heads"


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    reason: str = ""


class HeadsCopy:
    """The ``audit_heads`` table in the audit service's store (its datastore, its dialect)."""

    def __init__(self, datastore: Any, kind: str, schema: str) -> None:
        self.datastore = datastore
        self.kind = kind
        self.table = f"{schema}.{TABLE}" if kind == "postgres" else TABLE

    def sql(self, statement: str) -> str:
        statement = statement.replace("{heads}", self.table)
        return statement.replace("?", "%s") if self.kind == "postgres" else statement

    def create(self) -> None:
        serial = "BIGSERIAL PRIMARY KEY" if self.kind == "postgres" else "INTEGER PRIMARY KEY"
        with self.datastore.transaction(commit=True) as c:
            c.execute(self.sql(
                f"CREATE TABLE IF NOT EXISTS {{heads}} (seq {serial}, stream_seq BIGINT UNIQUE, "
                "service TEXT NOT NULL, tree_size BIGINT, root_hash TEXT, signed_at TEXT, "
                "received_at BIGINT NOT NULL, accepted INTEGER NOT NULL, reason TEXT NOT NULL, "
                "record TEXT NOT NULL)"))
            c.execute(self.sql("CREATE INDEX IF NOT EXISTS audit_heads_by_service "
                               "ON {heads} (service, accepted, seq)"))

    def _select(self, statement: str, values: tuple[Any, ...] = ()) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.sql(statement), values)
            return list(c.fetchall())

    def seen(self, stream_seq: int) -> bool:
        return bool(self._select("SELECT 1 FROM {heads} WHERE stream_seq = ?", (stream_seq,)))

    def last_accepted(self, service: str) -> HeadRecord | None:
        rows = self._select("SELECT record FROM {heads} WHERE service = ? AND accepted = 1 "
                            "ORDER BY seq DESC LIMIT 1", (service,))
        return HeadRecord.model_validate_json(rows[0]["record"]) if rows else None

    def keep(self, stream_seq: int | None, service: str, record: HeadRecord | None, raw: str,
             verdict: Verdict, received_at: int) -> None:
        head = record.head if record is not None else None
        with self.datastore.transaction(commit=True) as c:
            c.execute(self.sql(
                "INSERT INTO {heads} (stream_seq, service, tree_size, root_hash, signed_at, "
                "received_at, accepted, reason, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING"),
                (stream_seq, service, head.tree_size if head else None,
                 head.root_hash if head else None, head.timestamp.isoformat() if head else None,
                 received_at, 1 if verdict.accepted else 0, verdict.reason, raw))

    def accepted(self, service: str) -> list[HeadRecord]:
        rows = self._select("SELECT record FROM {heads} WHERE service = ? AND accepted = 1 "
                            "ORDER BY seq", (service,))
        return [HeadRecord.model_validate_json(r["record"]) for r in rows]

    def refused(self) -> list[dict[str, Any]]:
        rows = self._select("SELECT service, tree_size, signed_at, received_at, reason FROM {heads} "
                            "WHERE accepted = 0 ORDER BY seq", ())
        return [dict(r) for r in rows]

    def services(self) -> list[str]:
        return [str(r["service"]) for r in
                self._select("SELECT DISTINCT service FROM {heads} WHERE accepted = 1", ())]


def judge(service: str, record: HeadRecord, trusted: list[Any],
          last: HeadRecord | None) -> Verdict:
    """Whether a head record received on ``rekey.heads.<service>`` is to be kept as accepted."""
    head = record.head
    if head.service != service:
        return Verdict(False, f"published on rekey.heads.{service} but names {head.service}")
    if not trusted:
        return Verdict(False, f"no {service}.heads.pub to check it with")
    if not head.verify(trusted):
        return Verdict(False, f"not signed by {service}'s evidence key")
    try:
        proven = verify_consistency(record.previous_size, head.tree_size,
                                    bytes.fromhex(record.previous_root),
                                    bytes.fromhex(head.root_hash),
                                    [bytes.fromhex(p) for p in record.consistency])
    except ValueError:
        proven = False
    if not proven:
        return Verdict(False, f"its consistency proof from size {record.previous_size} does not "
                              f"lead to its root (size {head.tree_size})")
    if last is None:
        return Verdict(True, "the first head received from this service")
    if (record.previous_size, record.previous_root) != (last.head.tree_size, last.head.root_hash):
        return Verdict(False, f"not consistent with the head of size {last.head.tree_size} "
                              f"signed at {last.head.timestamp.isoformat()}: it follows a tree "
                              f"of size {record.previous_size} with another root (history "
                              "rewritten, heads lost, or a forged head)")
    return Verdict(True, "")


class HeadsWitness:
    """The audit service's consumer of ``REKEY_HEADS`` and its checks."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.copy = HeadsCopy(app.recorder.datastore, app.settings.store, app.service)
        self.copy.create()
        self.nc: Any = None
        self.outage = Outage(log, "audit tree heads")
        self.received = 0

    def connected(self, nc: Any) -> None:
        self.nc = nc

    def trusted(self, service: str) -> list[Any]:
        folder = keys_folder(self.app.settings)
        if folder is None:
            return []
        try:
            return heads_public_keys(folder, service)
        except Exception:  # no such file: nothing trusted for it
            return []

    def receive(self, subject: str, data: bytes, stream_seq: int | None = None) -> Verdict:
        """Check one head as it arrives and keep it, accepted or refused (a redelivery is
        recognised by its stream sequence and kept once)."""
        if stream_seq is not None and self.copy.seen(stream_seq):
            return Verdict(True, "already kept")
        service = subject.rsplit(".", 1)[-1]
        raw = data.decode(errors="replace")
        record: HeadRecord | None = None
        try:
            record = HeadRecord.model_validate(json.loads(data))
        except (ValueError, ValidationError):
            verdict = Verdict(False, "not a tree head record")
        else:
            verdict = judge(service, record, self.trusted(service), self.copy.last_accepted(service))
        self.copy.keep(stream_seq, service, record, raw, verdict,
                       micros(self.app.clock.now()))
        self.received += 1
        if verdict.accepted:
            assert record is not None
            metrics.TREE_HEAD_RECEIVED.labels(service=service).set(record.head.timestamp.timestamp())
        else:
            metrics.TREE_HEADS_REFUSED.labels(service=service).inc()
            log.error("refused a tree head on %s: %s", subject, verdict.reason)
        return verdict

    # --- the consumer ---------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        subscription = None
        while subscription is None and not stopping.is_set():
            try:
                subscription = await self._subscribe()
            except Exception as exc:  # the bus away at start: tried again
                self.outage.failed(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)
        try:
            with stop_signal(stopping) as stopped:
                while not stopping.is_set():
                    try:
                        messages = await fetch_or_stop(subscription, 50, 1.0, stopped)
                    except Exception as exc:  # nothing new (a timeout), or the bus away
                        if "timeout" not in type(exc).__name__.lower():
                            self.outage.failed(exc)
                        continue
                    if messages is None:  # stopping
                        break
                    self.outage.succeeded()
                    for message in messages:
                        seq = int(message.metadata.sequence.stream)
                        await in_thread(self.receive, message.subject, message.data, seq)
                        await message.ack()
        finally:
            if subscription is not None:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = self.nc.jetstream()
        config = ConsumerConfig(durable_name=HEADS_CONSUMER, ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.ALL, ack_wait=30)
        with contextlib.suppress(Exception):  # exists already
            await js.add_consumer(HEADS_STREAM, config)
        return await js.pull_subscribe_bind(HEADS_CONSUMER, stream=HEADS_STREAM)

    # --- rekey status ---------------------------------------------------------------------
    async def check(self) -> Check:
        refused = await in_thread(self.copy.refused)
        if not refused:
            return Check("tree heads", True, f"{self.received} heads received and checked "
                                             "since start; none refused")
        last = refused[-1]
        return Check("tree heads", False,
                     f"{len(refused)} tree heads refused; the last from {last['service']}: "
                     f"{last['reason']}")


def write_heads_files(app: Any, folder: Path) -> list[str]:
    """The accepted heads of the audit service's copy as heads files (``<service>.jsonl``) in
    ``folder``, for ``rekey audit verify``; the services written."""
    copy = HeadsCopy(app.recorder.datastore, app.settings.store, app.service)
    copy.create()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for service in copy.services():
        lines = [record.model_dump_json() + "\n" for record in copy.accepted(service)]
        (folder / f"{service}.jsonl").write_text("".join(lines))
        written.append(service)
    return written
