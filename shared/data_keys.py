"""Per-user data keys: envelope encryption of a user's stored events, and erasure by key.

Each user gets a data key per service (AES-256), kept in a ``data_keys`` table beside the
service's events, sealed under ``REKEY_VAULT_KEY`` (the service key, never in the store).
Every aggregate created by an event that names a user (``username``: accounts, enrolments,
consents, tickets, ...) has its stored events encrypted with that user's key, inside the place
binding:

    state = RKB1 | binding tag | RKD1 | key id (16 bytes) | nonce | AES-GCM(data key, inner,
            aad = originator id | version | topic)

Erasing a user destroys their data key: every stored event of theirs becomes unreadable, in
every copy of the store (backups included), while the binding and the Merkle proofs still
verify, being over the ciphertext. Reading such a row raises :class:`Erased`.

A new key, and the row naming an aggregate's key, are written by the transaction that records
the first events sealed with them (:meth:`DataKeys.staging`, :meth:`DataKeys.write_staged`):
no commit of their own, and never a key without its events or events without their key.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import MapperDeserialisationError

from shared.secrets import SecretBox
from shared.settings import Settings

log = logging.getLogger(__name__)

DATA_MARK = b"RKD1"
_KEY_NAMESPACE = UUID("6d1c2b1e-7f0a-5b7e-9d3c-2a6f4e8b1c00")


class Erased(MapperDeserialisationError):
    """A stored event of a user whose data key was destroyed (erasure): unreadable by design."""


def erased_key(key_id: UUID) -> Erased:
    return Erased(f"the data of user key {key_id} was erased: nothing is stored for that user "
                  "any more")


def user_key_id(username: str) -> UUID:
    return uuid5(_KEY_NAMESPACE, username.strip().lower())


def _aad(originator_id: Any, version: int, topic: str) -> bytes:
    return f"{originator_id}|{version}|{topic}".encode()


class DataKeys:
    """One service's user data keys, in a table of its own database; thread-safe, cached.

    ``datastore`` is the application's ``eventsourcing`` datastore (its connections, so no
    connection of its own); the table is made on first use. Only keys and owners that are
    committed are cached (an erased key never again): a thread's new ones are its own until
    the transaction that writes them has committed."""

    def __init__(self, settings: Settings, service: str, datastore: Callable[[], Any], *,
                 create: bool = True) -> None:
        self._box = SecretBox(settings.vault_key_bytes)
        self._sqlite = settings.store == "sqlite"
        self._table = "data_keys" if self._sqlite else f"{service}.data_keys"
        self._datastore = datastore
        self._made = not create  # reading only: the table is there or nothing is to be read
        self._lock = threading.RLock()
        self._keys: dict[UUID, bytes] = {}
        self._erased: set[UUID] = set()
        self._owners: dict[str, UUID | None] = {}
        self._local = threading.local()  # .staged: this thread's new rows, ref -> plain value

    def _statement(self, statement: str) -> str:
        statement = statement.format(table=self._table)
        return statement.replace("%s", "?") if self._sqlite else statement

    def _make_table(self, cursor: Any) -> None:
        if not self._made:
            blob = "BLOB" if self._sqlite else "BYTEA"
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {self._table} "
                           f"(ref TEXT PRIMARY KEY, sealed {blob} NOT NULL)")
            self._made = True

    def _sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._datastore().transaction(commit=True) as cursor:
            self._make_table(cursor)
            cursor.execute(self._statement(statement), params)
            try:
                return list(cursor.fetchall())
            except Exception:  # no result set (sqlite3 gives [], psycopg raises)
                return []

    def _get(self, ref: str) -> bytes | None:
        return self._get_all(ref).get(ref)

    def _get_all(self, *refs: str) -> dict[str, bytes]:
        """The rows of these refs that are stored (one query), opened."""
        marks = ", ".join("%s" for _ in refs)
        rows = self._sql(  # placeholders only; every value is a parameter
            f"SELECT ref, sealed FROM {{table}} WHERE ref IN ({marks})", refs)  # noqa: S608
        found = {}
        for row in rows:
            ref, value = (row["ref"], row["sealed"]) if isinstance(row, dict) else (row[0], row[1])
            found[ref] = self._box.open(bytes(value), ref)
        return found

    @property
    def _upsert(self) -> str:
        if self._sqlite:
            return "INSERT OR REPLACE INTO {table} (ref, sealed) VALUES (%s, %s)"
        return ("INSERT INTO {table} (ref, sealed) VALUES (%s, %s) ON CONFLICT (ref) "
                "DO UPDATE SET sealed = EXCLUDED.sealed")

    def _put(self, ref: str, value: bytes) -> None:
        self._sql(self._upsert, (ref, self._box.seal(value, ref)))

    # --- new keys and owners: written with the events sealed with them ----------------------
    @contextmanager
    def staging(self) -> Iterator[None]:
        """Around recording events: a new key or owner row made while sealing them is written
        by the same transaction (the recorder calls :meth:`write_staged`), and cached for
        every thread once it has committed; if it does not commit, it is forgotten, so the
        request's retry makes it again. Two commits (an fsync each) fewer for every new user
        and aggregate. Outside it, a new row is committed at once (a snapshot's, say)."""
        outer = getattr(self._local, "staged", None), getattr(self._local, "written", False)
        self._local.staged, self._local.written = {}, False
        try:
            yield
            if self._local.staged and not self._local.written:  # a recorder without the hook
                log.error("data keys made while recording were not written with the events; "
                          "writing them now")
                for ref, value in self._local.staged.items():
                    self._put(ref, value)
            with self._lock:
                for ref, value in self._local.staged.items():
                    self._cache(ref, value)
        finally:
            self._local.staged, self._local.written = outer

    def write_staged(self, cursor: Any) -> None:
        """Inside the recorder's transaction: this thread's new rows. A key made meanwhile by
        another writer is a conflict (``IntegrityError``: the request runs again and reads
        it); a user erased meanwhile is refused (the erasure and this take the same lock on
        PostgreSQL; SQLite runs one writer at a time), so no key outlives its erasure."""
        staged = getattr(self._local, "staged", None)
        if not staged:
            return
        self._make_table(cursor)
        keys = [UUID(ref.split(":", 1)[1]) for ref in staged if ref.startswith("datakey:")]
        for key_id in keys:
            self._hold(cursor, key_id)
        for ref, value in staged.items():
            # A key is never replaced (another writer's is a conflict); an owner row is, by the
            # transaction that records the aggregate's first event: one left by a save that
            # failed before owner rows were written with their events must not block it.
            insert = self._upsert if ref.startswith("owner:") else \
                "INSERT INTO {table} (ref, sealed) VALUES (%s, %s)"
            cursor.execute(self._statement(insert), (ref, self._box.seal(value, ref)))
        for key_id in keys:
            cursor.execute(self._statement("SELECT 1 FROM {table} WHERE ref=%s"),
                           (f"erased:{key_id}",))
            if cursor.fetchone() is not None:
                raise erased_key(key_id)
        self._local.written = True

    def _stage(self, ref: str, value: bytes) -> None:
        staged = getattr(self._local, "staged", None)
        if staged is None:
            self._put(ref, value)
            self._cache(ref, value)
        else:
            staged[ref] = value

    def _cache(self, ref: str, value: bytes) -> None:
        """A committed owner row or key, for every thread (never a key erased since)."""
        kind, _, name = ref.partition(":")
        if kind == "owner":
            self._owners[name] = UUID(bytes=value)
        elif UUID(name) not in self._erased:
            self._keys[UUID(name)] = value

    def _staged(self, ref: str) -> bytes | None:
        staged = getattr(self._local, "staged", None)
        return staged.get(ref) if staged else None

    def _hold(self, cursor: Any, key_id: UUID) -> None:
        """PostgreSQL: order a key's creation and its erasure, until the transaction ends."""
        if not self._sqlite:
            lock = int.from_bytes(hashlib.sha256(key_id.bytes).digest()[:8], "big", signed=True)
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))

    # --- which key an aggregate's events use ------------------------------------------------
    def key_for(self, originator_id: Any, username: str | None, *,
                first: bool = False) -> UUID | None:
        """The user key of this aggregate: set by its first event that names a user.

        ``first``: the aggregate's first event, so no owner row can be stored yet (one made
        meanwhile by another writer of the same aggregate is a conflict when this is written)."""
        oid = str(originator_id)
        with self._lock:
            staged = self._staged(f"owner:{oid}")
            if staged is not None:
                return UUID(bytes=staged)
            if oid not in self._owners and not first:
                found = self._get(f"owner:{oid}")
                self._owners[oid] = UUID(bytes=found) if found else None
            owner = self._owners.get(oid)
            if owner is None and username:
                key_id = user_key_id(username)
                # Not "no user" any more for the others: they read the store until this commits
                self._owners.pop(oid, None)
                self._stage(f"owner:{oid}", key_id.bytes)  # cached once it has committed
                return key_id
            if owner is None:
                self._owners[oid] = None  # an aggregate of no user (until an event names one)
            return owner

    def _key(self, key_id: UUID, *, create: bool) -> bytes | None:
        with self._lock:
            ref = f"datakey:{key_id}"
            key = self._staged(ref) or self._keys.get(key_id)
            if key is not None or key_id in self._erased:
                return key
            # not cached: committed since, by another thread or process, or erased
            found = self._get_all(ref, f"erased:{key_id}")
            if ref in found:
                self._keys[key_id] = found[ref]
                return found[ref]
            if f"erased:{key_id}" in found:
                self._erased.add(key_id)
                return None
            if create:
                key = AESGCM.generate_key(256)
                self._stage(ref, key)
            return key

    # --- sealing and opening one row's state ------------------------------------------------
    def seal(self, key_id: UUID, originator_id: Any, version: int, topic: str,
             inner: bytes) -> bytes:
        key = self._key(key_id, create=True)
        if key is None:
            raise erased_key(key_id)
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, inner, _aad(originator_id, version, topic))
        return DATA_MARK + key_id.bytes + nonce + sealed

    def open(self, originator_id: Any, version: int, topic: str, state: bytes) -> bytes:
        """The inner state of a row sealed with a data key; a row without one as it is."""
        if not state.startswith(DATA_MARK):
            return state
        key_id = UUID(bytes=state[4:20])
        key = self._key(key_id, create=False)
        if key is None and key_id not in self._erased:
            raise MapperDeserialisationError(
                f"aggregate {originator_id} version {version}: sealed with a data key this "
                "service never had (forged)")
        if key is None:
            raise Erased(f"aggregate {originator_id} version {version}: its user's data was "
                         "erased (the data key is destroyed)")
        try:
            return AESGCM(key).decrypt(state[20:32], state[32:],
                                       _aad(originator_id, version, topic))
        except InvalidTag:
            raise MapperDeserialisationError(
                f"aggregate {originator_id} version {version}: its data-key layer does not "
                "open (altered)") from None

    # --- erasure ------------------------------------------------------------------------------
    def erase(self, username: str, at: datetime) -> UUID:
        """Destroy the user's data key (for good) and remember that it was erased, and when."""
        key_id = user_key_id(username)
        ref = f"erased:{key_id}"
        with self._lock:
            with self._datastore().transaction(commit=True) as cursor:
                self._make_table(cursor)
                self._hold(cursor, key_id)
                cursor.execute(self._statement("DELETE FROM {table} WHERE ref IN (%s, %s)"),
                               (ref, f"datakey:{key_id}"))
                cursor.execute(
                    self._statement("INSERT INTO {table} (ref, sealed) VALUES (%s, %s)"),
                    (ref, self._box.seal(at.isoformat().encode(), ref)))
            self._keys.pop(key_id, None)
            self._erased.add(key_id)
        return key_id

    def erased_key_ids(self) -> list[UUID]:
        """The key ids of every erased user (no username: the table never had one)."""
        rows = self._sql("SELECT ref FROM {table} WHERE ref LIKE %s", ("erased:%",))
        refs = [r["ref"] if isinstance(r, dict) else r[0] for r in rows]
        return [UUID(ref.split(":", 1)[1]) for ref in refs]

    def erased_at(self, username: str) -> str | None:
        found = self._get(f"erased:{user_key_id(username)}")
        return found.decode() if found else None

    def close(self) -> None:
        """Nothing of its own to close: it uses the application's connections."""
