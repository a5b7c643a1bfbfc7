"""Secrets at rest: an AES-GCM box, keyed hashes for codes, and a vault for TOTP seeds.

Events never carry a secret. A seed lives in the vault (a table beside the event store,
encrypted with a key that is not in any store) and events refer to it by an opaque reference.
Deleting the vault row destroys the secret for good (crypto-shredding).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import threading
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.settings import Settings


class SecretBox:
    """Authenticated encryption bound to a context string (the reference it is stored under)."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str, *, nonce: bytes | None = None) -> bytes:
        """``nonce``: only a synthetic one (see ``shared.sealed``); random by default."""
        nonce = os.urandom(12) if nonce is None else nonce
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, context: str) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], context.encode())


def keyed_hash(key: bytes, value: str) -> str:
    """HMAC-SHA256 of a short secret such as a one-time code; compare with ``hmac.compare_digest``."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


class Vault:
    """A tiny key-value table of sealed secrets, in the service's own database."""

    def __init__(self, settings: Settings, service: str, *, create: bool = True) -> None:
        self._box = SecretBox(settings.vault_key_bytes)
        self._settings = settings
        self._service = service
        self._lock = threading.Lock()
        if settings.store == "sqlite":
            path = Path(settings.data_dir) / f"{service}-vault.sqlite"
            self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if create:
                self._sqlite.execute(
                    "CREATE TABLE IF NOT EXISTS vault (ref TEXT PRIMARY KEY, sealed BLOB NOT NULL)"
                )
        else:
            import psycopg

            from shared.postgres import ensure_postgres_schema

            if create:  # else reading only (an auditor): the table is there or nothing is
                ensure_postgres_schema(settings, service)
            self._pg = psycopg.connect(settings.postgres_conninfo(), autocommit=True)
            if create:
                self._pg.execute(
                    f"CREATE TABLE IF NOT EXISTS {service}.vault "
                    "(ref TEXT PRIMARY KEY, sealed BYTEA NOT NULL)"
                )

    def put(self, ref: str, secret: bytes) -> None:
        sealed = self._box.seal(secret, ref)
        with self._lock:
            if self._settings.store == "sqlite":
                self._sqlite.execute(
                    "INSERT OR REPLACE INTO vault (ref, sealed) VALUES (?, ?)", (ref, sealed)
                )
            else:
                self._pg.execute(
                    f"INSERT INTO {self._service}.vault (ref, sealed) VALUES (%s, %s) "  # noqa: S608
                    "ON CONFLICT (ref) DO UPDATE SET sealed = EXCLUDED.sealed",
                    (ref, sealed),
                )

    def get(self, ref: str) -> bytes | None:
        with self._lock:
            if self._settings.store == "sqlite":
                row = self._sqlite.execute("SELECT sealed FROM vault WHERE ref=?", (ref,)).fetchone()
            else:
                row = self._pg.execute(
                    f"SELECT sealed FROM {self._service}.vault WHERE ref=%s",  # noqa: S608
                    (ref,),
                ).fetchone()
        return None if row is None else self._box.open(bytes(row[0]), ref)

    def delete(self, ref: str) -> None:
        with self._lock:
            if self._settings.store == "sqlite":
                self._sqlite.execute("DELETE FROM vault WHERE ref=?", (ref,))
            else:
                self._pg.execute(
                    f"DELETE FROM {self._service}.vault WHERE ref=%s",  # noqa: S608
                    (ref,),
                )

    def close(self) -> None:
        if self._settings.store == "sqlite":
            self._sqlite.close()
        else:
            self._pg.close()


def matching_number(digits: int) -> str:
    """A push's number to match: shown on one side, typed on the device (never 0-padded away)."""
    low = 10 ** (digits - 1)
    return str(low + secrets.randbelow(9 * low))
