"""An insider with write access to a service's store (and, in some tests, the cipher key):
what such a person can do with SQL and ``REKEY_CIPHER_KEY``, never with Rekey's code paths.

They do not have the evidence seeds (``<service>.heads.nk``, kept with the bus keys): that is
the line the audit evidence draws, see docs/audit.md.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.cryptography import AESCipher
from eventsourcing.utils import Environment

from rekey.stack.inprocess import POSTGRES_ADMIN
from shared.binding import split_state
from shared.data_keys import DATA_MARK, DataKeys
from shared.settings import Settings


@dataclass(frozen=True)
class Row:
    notification_id: int
    originator_id: Any
    originator_version: int
    topic: str
    state: bytes

    @property
    def name(self) -> str:
        return self.topic.replace(":", ".").rsplit(".", 1)[-1]


class Insider:
    def __init__(self, settings: Settings, service: str) -> None:
        self.settings = settings
        self.service = service
        self.sqlite = settings.store == "sqlite"
        self.id_column = "rowid" if self.sqlite else "notification_id"
        self.table = "stored_events"
        if not self.sqlite:  # eventsourcing names it after the application: <app>_events
            (name,), = self._run("SELECT table_name FROM information_schema.tables WHERE "
                                 "table_schema=%s AND table_name LIKE %s", (service, "%\\_events"))
            self.table = f"{service}.{name}"

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.sqlite:
            with sqlite3.connect(self.settings.data_dir / f"{self.service}.sqlite") as db:
                return db.execute(sql.replace("%s", "?"), params).fetchall()
        info = POSTGRES_ADMIN.replace("dbname=postgres", f"dbname={self.settings.postgres_db}")
        with psycopg.connect(info, autocommit=True) as db:
            cursor = db.execute(sql, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    # --- reading ----------------------------------------------------------------------------
    def rows(self) -> list[Row]:
        found = self._run(f"SELECT {self.id_column}, originator_id, originator_version, topic, "  # noqa: S608
                          f"state FROM {self.table} ORDER BY {self.id_column}")
        return [Row(n, o, v, t, bytes(s)) for n, o, v, t, s in found]

    def row(self, name: str, aggregate: Any | None = None, last: bool = False) -> Row:
        """The first (or last) row of event ``name`` (of one aggregate, when given)."""
        found = [r for r in self.rows() if r.name == name
                 and (aggregate is None or UUID(str(r.originator_id)) == UUID(str(aggregate)))]
        assert found, f"no {name} in {self.service}"
        return found[-1] if last else found[0]

    def plaintext(self, row: Row) -> dict[str, Any]:
        inner = split_state(row.state)[1]
        if inner.startswith(DATA_MARK):  # under the user's data key: the vault key opens it
            with contextlib.closing(self._data_keys()) as keys:
                inner = keys.open(UUID(str(row.originator_id)), row.originator_version,
                                  row.topic, inner)
        return json.loads(self._decrypt(inner))

    # --- writing ----------------------------------------------------------------------------
    def set_state(self, row: Row, state: bytes) -> None:
        self._run(f"UPDATE {self.table} SET state=%s WHERE {self.id_column}=%s",  # noqa: S608
                  (state, row.notification_id))

    def reencrypt(self, row: Row, **changes: Any) -> None:
        """Decrypt with the cipher key, change fields, encrypt again; the binding prefix, which
        the insider cannot compute, is left as it was."""
        inner = split_state(row.state)[1]
        tag_part = row.state[: len(row.state) - len(inner)]
        fields = {**self.plaintext(row), **changes}
        sealed = self._encrypt(json.dumps(fields).encode())
        if inner.startswith(DATA_MARK):
            with contextlib.closing(self._data_keys()) as keys:
                sealed = keys.seal(UUID(bytes=inner[4:20]), UUID(str(row.originator_id)),
                                   row.originator_version, row.topic, sealed)
        self.set_state(row, tag_part + sealed)

    def replace_text(self, old: str, new: str) -> int:
        """Rewrite a recorded fact wherever it appears (readable with the keys held): the
        number of rows changed."""
        changed = 0
        for row in self.rows():
            try:
                fields = self.plaintext(row)
            except Exception:  # noqa: S112 (not a row these keys open)
                continue
            text = json.dumps(fields)
            if old in text:
                self.reencrypt(row, **json.loads(text.replace(old, new)))
                changed += 1
        return changed

    def flip_byte(self, row: Row, at: int = -5) -> None:
        state = bytearray(row.state)
        state[at] ^= 0x01
        self.set_state(row, bytes(state))

    def delete(self, row: Row) -> None:
        self._run(f"DELETE FROM {self.table} WHERE {self.id_column}=%s",  # noqa: S608
                  (row.notification_id,))

    def insert(self, notification_id: int | None, originator_id: Any, version: int, topic: str,
               state: bytes) -> None:
        if notification_id is None:
            self._run(f"INSERT INTO {self.table} (originator_id, originator_version, topic, "  # noqa: S608
                      "state) VALUES (%s, %s, %s, %s)", (originator_id, version, topic, state))
            return
        self._run(f"INSERT INTO {self.table} ({self.id_column}, originator_id, "  # noqa: S608
                  "originator_version, topic, state) VALUES (%s, %s, %s, %s, %s)",
                  (notification_id, originator_id, version, topic, state))

    def make_room_after(self, notification_id: int) -> None:
        """Shift every later row up by one, so a row can be put in between (backdating)."""
        for step in (1_000_000, -999_999):
            self._run(f"UPDATE {self.table} SET {self.id_column}={self.id_column}+%s "  # noqa: S608
                      f"WHERE {self.id_column}>%s", (step, notification_id))

    def _data_keys(self) -> DataKeys:
        """The insider also holds REKEY_VAULT_KEY here: the most a store insider can have
        without the evidence seeds."""
        return DataKeys(self.settings, self.service, lambda: _Datastore(self))

    def _decrypt(self, data: bytes) -> bytes:
        return self._cipher().decrypt(data) if self.settings.cipher_key.get_secret_value() else data

    def _encrypt(self, data: bytes) -> bytes:
        return self._cipher().encrypt(data) if self.settings.cipher_key.get_secret_value() else data

    def _cipher(self) -> AESCipher:
        key = self.settings.cipher_key.get_secret_value()
        return AESCipher(Environment(env={"CIPHER_KEY": key}))


class _Datastore:
    """What DataKeys needs of a datastore (``transaction``), over the insider's own SQL access."""

    def __init__(self, insider: Insider) -> None:
        self.insider = insider

    @contextlib.contextmanager
    def transaction(self, commit: bool) -> Iterator[Any]:
        if self.insider.sqlite:
            db = sqlite3.connect(self.insider.settings.data_dir / f"{self.insider.service}.sqlite")
            try:
                yield db.cursor()
                db.commit()
            finally:
                db.close()
            return
        info = POSTGRES_ADMIN.replace("dbname=postgres",
                                      f"dbname={self.insider.settings.postgres_db}")
        with psycopg.connect(info, autocommit=True) as db, db.cursor() as cursor:
            yield cursor
