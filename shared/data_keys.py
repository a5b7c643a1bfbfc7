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
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import MapperDeserialisationError

from shared.secrets import SecretBox
from shared.settings import Settings

DATA_MARK = b"RKD1"
_KEY_NAMESPACE = UUID("6d1c2b1e-7f0a-5b7e-9d3c-2a6f4e8b1c00")


class Erased(MapperDeserialisationError):
    """A stored event of a user whose data key was destroyed (erasure): unreadable by design."""


def user_key_id(username: str) -> UUID:
    return uuid5(_KEY_NAMESPACE, username.strip().lower())


def _aad(originator_id: Any, version: int, topic: str) -> bytes:
    return f"{originator_id}|{version}|{topic}".encode()


class DataKeys:
    """One service's user data keys, in a table of its own database; thread-safe, cached.

    ``datastore`` is the application's ``eventsourcing`` datastore (its connections, so no
    connection of its own); the table is made on first use."""

    def __init__(self, settings: Settings, service: str, datastore: Callable[[], Any], *,
                 create: bool = True) -> None:
        self._box = SecretBox(settings.vault_key_bytes)
        self._sqlite = settings.store == "sqlite"
        self._table = "data_keys" if self._sqlite else f"{service}.data_keys"
        self._datastore = datastore
        self._made = not create  # reading only: the table is there or nothing is to be read
        self._lock = threading.RLock()
        self._keys: dict[UUID, bytes | None] = {}
        self._owners: dict[str, UUID | None] = {}

    def _sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        if self._sqlite:
            statement = statement.replace("%s", "?")
        with self._datastore().transaction(commit=True) as cursor:
            if not self._made:
                blob = "BLOB" if self._sqlite else "BYTEA"
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {self._table} "
                               f"(ref TEXT PRIMARY KEY, sealed {blob} NOT NULL)")
                self._made = True
            cursor.execute(statement.format(table=self._table), params)
            try:
                return list(cursor.fetchall())
            except Exception:  # no result set (sqlite3 gives [], psycopg raises)
                return []

    def _get(self, ref: str) -> bytes | None:
        rows = self._sql("SELECT sealed FROM {table} WHERE ref=%s", (ref,))
        if not rows:
            return None
        value = rows[0]["sealed"] if isinstance(rows[0], dict) else rows[0][0]
        return self._box.open(bytes(value), ref)

    def _put(self, ref: str, value: bytes) -> None:
        sealed = self._box.seal(value, ref)
        if self._sqlite:
            self._sql("INSERT OR REPLACE INTO {table} (ref, sealed) VALUES (%s, %s)", (ref, sealed))
        else:
            self._sql("INSERT INTO {table} (ref, sealed) VALUES (%s, %s) ON CONFLICT (ref) "
                      "DO UPDATE SET sealed = EXCLUDED.sealed", (ref, sealed))

    def _delete(self, ref: str) -> None:
        self._sql("DELETE FROM {table} WHERE ref=%s", (ref,))

    # --- which key an aggregate's events use ------------------------------------------------
    def key_for(self, originator_id: Any, username: str | None) -> UUID | None:
        """The user key of this aggregate: set by its first event that names a user."""
        oid = str(originator_id)
        with self._lock:
            if oid not in self._owners:
                found = self._get(f"owner:{oid}")
                self._owners[oid] = UUID(bytes=found) if found else None
            if self._owners[oid] is None and username:
                key_id = user_key_id(username)
                self._put(f"owner:{oid}", key_id.bytes)
                self._owners[oid] = key_id
            return self._owners[oid]

    def _key(self, key_id: UUID, *, create: bool) -> bytes | None:
        with self._lock:
            if key_id not in self._keys:
                self._keys[key_id] = self._get(f"datakey:{key_id}")
            if self._keys[key_id] is None and create:
                if self._get(f"erased:{key_id}") is not None:
                    raise Erased(f"the data of user key {key_id} was erased: nothing is stored "
                                 "for that user any more")
                key = AESGCM.generate_key(256)
                self._put(f"datakey:{key_id}", key)
                self._keys[key_id] = key
            return self._keys[key_id]

    # --- sealing and opening one row's state ------------------------------------------------
    def seal(self, key_id: UUID, originator_id: Any, version: int, topic: str,
             inner: bytes) -> bytes:
        key = self._key(key_id, create=True)
        assert key is not None
        nonce = os.urandom(12)
        sealed = AESGCM(key).encrypt(nonce, inner, _aad(originator_id, version, topic))
        return DATA_MARK + key_id.bytes + nonce + sealed

    def open(self, originator_id: Any, version: int, topic: str, state: bytes) -> bytes:
        """The inner state of a row sealed with a data key; a row without one as it is."""
        if not state.startswith(DATA_MARK):
            return state
        key_id = UUID(bytes=state[4:20])
        key = self._key(key_id, create=False)
        if key is None and self._get(f"erased:{key_id}") is None:
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
        with self._lock:
            self._delete(f"datakey:{key_id}")
            self._put(f"erased:{key_id}", at.isoformat().encode())
            self._keys[key_id] = None
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
