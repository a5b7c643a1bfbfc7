"""The audit service's indexed projection: one row per public event, in its own store.

A relational table beside the audit service's event store (the same SQLite file, or the same
PostgreSQL schema), indexed for the questions an auditor asks: by user, by agent, by ticket, by
event type, each over a time range. A row is written in one transaction with the consumer's
tracking row (upstream service, notification id), so a redelivered event never makes a second
row: the tracking insert finds its key and the row is not written.

Times are microseconds since the epoch (``at``), the same integer in both stores, so ranges and
ordering need no dialect of their own. ``seq`` is the order rows were recorded: the cursor an
export pages on, and the snapshot bound (``upto``) that keeps a bundle's pages and its signed
manifest about the same rows while new events keep arriving.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.contracts import EventEnvelope
from shared.contracts.envelope import agent_of
from shared.contracts.ticketing import ticket_number

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TABLE = "audit_events"


def micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (no float rounding)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1)


def user_digest(username: str) -> str:
    """How the projection remembers an erased user: a digest, not the name."""
    return hashlib.sha256(b"rekey-erased:" + username.strip().lower().encode()).hexdigest()


def canonical_json(event: dict[str, Any]) -> str:
    """The form a row keeps an envelope in: sorted keys, no spaces, UTF-8 as is. An export
    bundle's lines are exactly these, so its digest is computed from the rows as stored."""
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ticket_of(envelope: EventEnvelope) -> str | None:
    """The ticket number people quote (``RK-`` and 8 hex digits), from the correlation id."""
    ticket = envelope.correlation_id or envelope.body.get("ticket_id")
    if not ticket:
        return None
    try:
        return ticket_number(str(ticket))
    except ValueError:
        return str(ticket).upper()


@dataclass(frozen=True)
class Filters:
    """Which rows an export or a count covers; every field narrows, none widens."""

    user: str | None = None
    agent: str | None = None
    ticket: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    types: tuple[str, ...] = ()

    def where(self) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        values: list[Any] = []
        if self.user:
            clauses.append("subject = ?")
            values.append(self.user.strip().lower())
        if self.agent:
            clauses.append("agent = ?")
            values.append(self.agent.strip().lower())
        if self.ticket:
            clauses.append("ticket = ?")
            values.append(normalise_ticket(self.ticket))
        if self.since:
            clauses.append("at >= ?")
            values.append(micros(self.since))
        if self.until:
            clauses.append("at < ?")
            values.append(micros(self.until))
        if self.types:
            clauses.append("name IN (" + ", ".join("?" for _ in self.types) + ")")
            values.extend(self.types)
        return clauses, values


def normalise_ticket(ref: str) -> str:
    """A ticket id or its number, as the number (the form the projection indexes)."""
    ref = ref.strip()
    if ref.upper().startswith("RK-"):
        return ref.upper()
    try:
        return ticket_number(ref)
    except ValueError:
        return ref.upper()


@dataclass(frozen=True)
class Row:
    seq: int
    envelope: str  # the envelope as JSON, as received


class Projection:
    """SQL over the audit service's own datastore (``eventsourcing``'s, so one connection pool
    and one transaction for the row and its tracking)."""

    def __init__(self, datastore: Any, kind: str, schema: str, tracking_table: str) -> None:
        self.datastore = datastore
        self.kind = kind
        prefix = f"{schema}." if kind == "postgres" else ""
        self.table = f"{prefix}{TABLE}"
        self.tracking = f"{prefix}{tracking_table}"
        self.erased_table = f"{prefix}audit_erased"
        self.stream_table = f"{prefix}audit_stream"

    def sql(self, statement: str) -> str:
        statement = statement.replace("{table}", self.table).replace("{tracking}", self.tracking)
        statement = statement.replace("{erased}", self.erased_table)
        statement = statement.replace("{stream}", self.stream_table)
        return statement.replace("?", "%s") if self.kind == "postgres" else statement

    def create(self) -> None:
        serial = "BIGSERIAL PRIMARY KEY" if self.kind == "postgres" else "INTEGER PRIMARY KEY"
        statements = [
            f"CREATE TABLE IF NOT EXISTS {{table}} (seq {serial}, source TEXT NOT NULL, "
            "notification_id BIGINT NOT NULL, event_id TEXT NOT NULL, name TEXT NOT NULL, "
            "at BIGINT NOT NULL, subject TEXT NOT NULL, agent TEXT, ticket TEXT, "
            "envelope TEXT NOT NULL, UNIQUE (source, notification_id))",
            "CREATE INDEX IF NOT EXISTS audit_by_user ON {table} (subject, at)",
            "CREATE INDEX IF NOT EXISTS audit_by_agent ON {table} (agent, at)",
            "CREATE INDEX IF NOT EXISTS audit_by_ticket ON {table} (ticket)",
            "CREATE INDEX IF NOT EXISTS audit_by_type ON {table} (name, at)",
            "CREATE INDEX IF NOT EXISTS audit_by_time ON {table} (at)",
            "CREATE TABLE IF NOT EXISTS {erased} (user_digest TEXT PRIMARY KEY, at BIGINT NOT NULL)",
            # Every stream message consumed, by its stream sequence: the user it is about (NULL
            # once erased), and for an erased user's message when it was deleted from the stream.
            "CREATE TABLE IF NOT EXISTS {stream} (stream_seq BIGINT PRIMARY KEY, "
            "source TEXT NOT NULL, notification_id BIGINT NOT NULL, subject TEXT, "
            "erase INTEGER NOT NULL DEFAULT 0, deleted_at BIGINT)",
            "CREATE INDEX IF NOT EXISTS audit_stream_by_user ON {stream} (subject)",
            "CREATE INDEX IF NOT EXISTS audit_stream_to_erase ON {stream} (erase, deleted_at)",
            # how far back the stream was read for messages consumed before sequences were noted
            "CREATE TABLE IF NOT EXISTS {stream}_backfill (name TEXT PRIMARY KEY, "
            "below BIGINT NOT NULL)",
        ]
        with self.datastore.transaction(commit=True) as c:
            for statement in statements:
                c.execute(self.sql(statement))

    # --- writing ---------------------------------------------------------------------------
    @staticmethod
    def values(envelope: EventEnvelope) -> tuple[Any, ...]:
        return (
            envelope.source, envelope.notification_id, str(envelope.event_id), envelope.name,
            micros(envelope.occurred_at), envelope.subject.lower(), agent_of(envelope),
            ticket_of(envelope), canonical_json(envelope.model_dump(mode="json")),
        )

    INSERT = ("INSERT INTO {table} (source, notification_id, event_id, name, at, subject, agent, "
              "ticket, envelope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
              "ON CONFLICT (source, notification_id) DO NOTHING")

    def record(self, envelope: EventEnvelope, stream_seq: int | None = None) -> bool:
        """:meth:`record_all` for one message: whether its row was written."""
        return self.record_all([(envelope, stream_seq)]) == 1

    def record_all(self, delivered: Sequence[tuple[EventEnvelope, int | None]]) -> int:
        """Each message's row and tracking row, all in one transaction (a fetched run: one
        commit instead of one each); the number of rows written. A message already recorded,
        or about an erased user, writes no row (tracked, never kept).

        A message's stream sequence, when given, is noted (in the same transaction) for every
        message, a republished copy of a recorded event too, so that erasing the user later
        deletes every copy from the stream; a message about a user already erased is noted as
        one to delete at once."""
        written = 0
        with self.datastore.transaction(commit=True) as c:
            for envelope, stream_seq in delivered:
                written += self._record(c, envelope, stream_seq)
        return written

    def _record(self, c: Any, envelope: EventEnvelope, stream_seq: int | None) -> bool:
        digest = user_digest(envelope.subject)
        self._hold_user(c, digest, exclusive=False)
        c.execute(self.sql("SELECT 1 FROM {erased} WHERE user_digest = ?"), (digest,))
        erased = c.fetchone() is not None
        if stream_seq is not None:
            c.execute(self.sql(
                "INSERT INTO {stream} (stream_seq, source, notification_id, subject, erase) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                (stream_seq, envelope.source, envelope.notification_id,
                 None if erased else envelope.subject.lower(), 1 if erased else 0))
        c.execute(self.sql(
            "INSERT INTO {tracking} (application_name, notification_id) VALUES (?, ?) "
            "ON CONFLICT DO NOTHING RETURNING notification_id"),
            (envelope.source, envelope.notification_id))
        if c.fetchone() is None or erased:
            return False
        c.execute(self.sql(self.INSERT), self.values(envelope))
        return True

    def _hold_user(self, cursor: Any, digest: str, *, exclusive: bool) -> None:
        """Order recording and erasing one user's rows, until the transaction ends.

        On PostgreSQL (read committed) a recording that checked "not erased" just before an
        erasure committed would otherwise insert its row after the erasure's DELETE had run,
        and keep an erased user's event. Recordings share the user's lock; an erasure takes it
        alone. SQLite needs none: a write transaction that read before another committed fails
        and is redelivered."""
        if self.kind != "postgres":
            return
        key = int.from_bytes(hashlib.sha256(digest.encode()).digest()[:8], "big", signed=True)
        lock = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        cursor.execute(f"SELECT {lock}(%s)", (key,))

    # --- erasure ---------------------------------------------------------------------------
    def erase(self, username: str, at: datetime) -> int:
        """Remove every row about the user and remember (by digest only) that they were erased;
        the number of rows removed."""
        name = username.strip().lower()
        with self.datastore.transaction(commit=True) as c:
            self._hold_user(c, user_digest(name), exclusive=True)
            c.execute(self.sql("INSERT INTO {erased} (user_digest, at) VALUES (?, ?) "
                               "ON CONFLICT DO NOTHING"), (user_digest(name), micros(at)))
            c.execute(self.sql("DELETE FROM {table} WHERE subject = ? RETURNING seq"), (name,))
            removed = len(c.fetchall())
            c.execute(self.sql("UPDATE {stream} SET erase = 1, subject = NULL WHERE subject = ?"),
                      (name,))
            return removed

    # --- the user's messages on the stream: deleted after the erasure -----------------------
    def stream_to_delete(self, limit: int = 500) -> list[int]:
        """Stream sequences of erased users' messages not yet deleted from the stream."""
        rows = self._select(  # fixed clauses; the limit an int
            "SELECT stream_seq FROM {stream} WHERE erase = 1 AND deleted_at IS NULL "  # noqa: S608
            f"ORDER BY stream_seq LIMIT {int(limit)}", [])
        return [int(r["stream_seq"]) for r in rows]

    def stream_deleted(self, sequences: Sequence[int], at: datetime) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(self.sql("UPDATE {stream} SET deleted_at = ? WHERE stream_seq = ?"),
                          [(micros(at), seq) for seq in sequences])

    # --- messages consumed before sequences were noted: read back from the stream -----------
    def backfill_below(self) -> int | None:
        """The stream sequence below which the stream is still to be read back (None: no
        backfill started; then it starts below the first sequence noted)."""
        rows = self._select("SELECT below FROM {stream}_backfill WHERE name = 'stream'", [])
        if rows:
            return int(rows[0]["below"])
        first = self._select("SELECT MIN(stream_seq) AS first FROM {stream}", [])
        return int(first[0]["first"]) if first and first[0]["first"] is not None else None

    def backfilled(self, noted: Sequence[tuple[int, EventEnvelope]], below: int) -> None:
        """Note messages read back from the stream (each marked at once if its user was
        erased) and how far back the stream has been read, in one transaction."""
        with self.datastore.transaction(commit=True) as c:
            for seq, envelope in noted:
                c.execute(self.sql("SELECT 1 FROM {erased} WHERE user_digest = ?"),
                          (user_digest(envelope.subject),))
                erased = c.fetchone() is not None
                c.execute(self.sql(
                    "INSERT INTO {stream} (stream_seq, source, notification_id, subject, erase) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                    (seq, envelope.source, envelope.notification_id,
                     None if erased else envelope.subject.lower(), 1 if erased else 0))
            c.execute(self.sql("DELETE FROM {stream}_backfill WHERE name = 'stream'"))
            c.execute(self.sql("INSERT INTO {stream}_backfill (name, below) VALUES ('stream', ?)"),
                      (below,))

    def stream_deletions(self) -> dict[str, int]:
        """Per service, how many of its messages were deleted from the stream (erasures)."""
        rows = self._select("SELECT source, COUNT(*) AS n FROM {stream} WHERE deleted_at IS NOT NULL "
                            "GROUP BY source", [])
        return {str(r["source"]): int(r["n"]) for r in rows}

    def erased(self, username: str) -> bool:
        return bool(self._select("SELECT 1 FROM {erased} WHERE user_digest = ?",
                                 [user_digest(username)]))

    def bulk(self, rows: Iterable[tuple[Any, ...]], batch: int = 5000) -> int:
        """Many rows (:meth:`values` tuples) with their tracking, a batch per transaction
        (benchmarks, backfills)."""
        written = 0
        chunk: list[tuple[Any, ...]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                written += self._bulk(chunk)
                chunk = []
        if chunk:
            written += self._bulk(chunk)
        return written

    def analyse(self) -> None:
        """Fresh planner statistics after a bulk load (streaming inserts leave it to autovacuum
        on PostgreSQL, and SQLite's planner needs none for these indexes)."""
        if self.kind == "postgres":
            with self.datastore.transaction(commit=True) as c:
                c.execute(self.sql("ANALYZE {table}"))

    def _bulk(self, rows: Sequence[tuple[Any, ...]]) -> int:
        with self.datastore.transaction(commit=True) as c:
            c.executemany(self.sql(
                "INSERT INTO {tracking} (application_name, notification_id) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING"), [(r[0], r[1]) for r in rows])
            c.executemany(self.sql(self.INSERT), list(rows))
        return len(rows)

    # --- reading ---------------------------------------------------------------------------
    def _select(self, statement: str, values: Sequence[Any]) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(self.sql(statement), tuple(values))
            return list(c.fetchall())

    def history(self, username: str, until: datetime | None = None) -> list[str]:
        """The events about the user and the events the user did to others (as an agent), in
        time order; two index range scans."""
        name = username.strip().lower()
        bound, values = ("", [name, name])
        if until is not None:
            bound = " AND at <= ?"
            values = [name, micros(until), name, micros(until)]
        rows = self._select(  # fixed clauses; every value is a parameter
            f"SELECT at, source, notification_id, envelope FROM {{table}} WHERE subject = ?{bound} "  # noqa: S608
            f"UNION SELECT at, source, notification_id, envelope FROM {{table}} "
            f"WHERE agent = ?{bound} ORDER BY at, source, notification_id", values)
        return [row["envelope"] for row in rows]

    def about(self, username: str, until: datetime) -> list[str]:
        """Only the events about the user, up to ``until`` (what the user's state is made of)."""
        rows = self._select(
            "SELECT envelope FROM {table} WHERE subject = ? AND at <= ? "
            "ORDER BY at, source, notification_id", [username.strip().lower(), micros(until)])
        return [row["envelope"] for row in rows]

    def known(self, username: str) -> bool:
        name = username.strip().lower()
        return bool(self._select(
            "SELECT 1 FROM {table} WHERE subject = ? UNION SELECT 1 FROM {table} WHERE agent = ?",
            [name, name]))

    def count_all(self) -> int:
        return int(self._select("SELECT COUNT(*) AS n FROM {table}", [])[0]["n"])

    def last_seq(self) -> int:
        rows = self._select("SELECT MAX(seq) AS last FROM {table}", [])
        return int(rows[0]["last"] or 0)

    def page(self, filters: Filters, after: int, upto: int, limit: int) -> list[Row]:
        clauses, values = filters.where()
        clauses += ["seq > ?", "seq <= ?"]
        rows = self._select(  # fixed clauses; every value is a parameter
            f"SELECT seq, envelope FROM {{table}} WHERE {' AND '.join(clauses)} "  # noqa: S608
            f"ORDER BY seq LIMIT {int(limit)}", [*values, after, upto])
        return [Row(int(r["seq"]), r["envelope"]) for r in rows]

    def rows(self, filters: Filters, upto: int, batch: int = 2000) -> Iterator[Row]:
        after = 0
        while True:
            page = self.page(filters, after, upto, batch)
            yield from page
            if len(page) < batch:
                return
            after = page[-1].seq

    def count(self, filters: Filters, upto: int) -> int:
        clauses, values = filters.where()
        clauses.append("seq <= ?")
        rows = self._select(  # fixed clauses; every value is a parameter
            f"SELECT COUNT(*) AS n FROM {{table}} WHERE {' AND '.join(clauses)}",  # noqa: S608
            [*values, upto])
        return int(rows[0]["n"])
