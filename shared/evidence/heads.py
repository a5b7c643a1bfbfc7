"""Signed tree heads: each service's Merkle tree over its stored rows, signed and kept apart.

Every stored row (all events, private ones too) is a leaf, in notification-id order::

    leaf = RFC 9162 leaf hash of  "rekey-row-v1" | service | notification id | originator id
                                  | version | topic | stored state (as stored: ciphertext)

so a row changed, moved to another position, aggregate or version, removed, or inserted
anywhere changes the tree. Each service's runtime signs its tree head with its evidence key
(:mod:`shared.evidence_keys`, kept with the bus keys) at a fixed interval and on demand, and
appends a :class:`HeadRecord` to ``<heads dir>/<service>.jsonl`` (append-only, 0600): the
head, the RFC 9162 consistency proof from the previous head, and the rows the new head
covers (notification id, aggregate, version, leaf hash: no content). That file is the digest
an operator ships elsewhere (the CloudTrail digest-file idea); the same record goes on the bus
(``rekey.heads.<service>``) for the audit service.

API for other modules (the audit service, export bundles): :class:`TreeHead` (``verify``),
:class:`HeadRecord`, :func:`read_records`, :func:`row_leaf`, :class:`StoredRow`,
:class:`HeadWriter`.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, ValidationError

from shared.evidence.merkle import MerkleTree, leaf_hash
from shared.settings import Settings

log = logging.getLogger(__name__)

HEADS_SUBJECT_PREFIX = "rekey.heads"
HEAD_FORMAT = "rekey-tree-head-v1"


def heads_subject(service: str) -> str:
    return f"{HEADS_SUBJECT_PREFIX}.{service}"


def heads_dir(settings: Settings) -> Path:
    return Path(settings.tree_heads_dir) if settings.tree_heads_dir else settings.data_dir / "heads"


def heads_file(settings: Settings, service: str) -> Path:
    return heads_dir(settings) / f"{service}.jsonl"


@dataclass(frozen=True)
class StoredRow:
    """One row of a service's stored events table, exactly as stored."""

    notification_id: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def _framed(parts: Iterable[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(8, "big") + p for p in parts)


def row_leaf(service: str, row: StoredRow) -> bytes:
    return leaf_hash(_framed((
        b"rekey-row-v1", service.encode(), str(row.notification_id).encode(),
        str(row.originator_id).encode(), str(row.originator_version).encode(),
        row.topic.encode(), row.state)))


def key_id(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


class TreeHead(BaseModel):
    """What a service signs: its name, its tree's size and root, and when."""

    service: str
    tree_size: int
    root_hash: str  # hex
    timestamp: datetime
    key: str  # base64 raw Ed25519 public key of the signer
    signature: str = ""  # base64 Ed25519 over signed_bytes()

    def signed_bytes(self) -> bytes:
        return "\n".join((HEAD_FORMAT, self.service, str(self.tree_size), self.root_hash,
                          self.timestamp.isoformat())).encode()

    def signed_by(self, private: Ed25519PrivateKey) -> TreeHead:
        unsigned = self.model_copy(update={"key": key_id(private.public_key())})
        signature = private.sign(unsigned.signed_bytes())
        return unsigned.model_copy(update={"signature": base64.b64encode(signature).decode()})

    def verify(self, trusted: Iterable[Ed25519PublicKey]) -> bool:
        """Signed by one of the service's trusted keys (``<service>.heads.pub``)?"""
        for public in trusted:
            if key_id(public) != self.key:
                continue
            try:
                public.verify(base64.b64decode(self.signature), self.signed_bytes())
            except (InvalidSignature, ValueError):
                return False
            return True
        return False


class HeadRecord(BaseModel):
    """One line of a heads file: the head, its proof from the previous one, its new rows."""

    head: TreeHead
    previous_size: int
    previous_root: str
    consistency: list[str]  # hex; RFC 9162 PROOF(previous_size, tree)
    rows: list[tuple[int, str, int, str]]  # (notification id, aggregate, version, leaf hex)
    # Where the service's tree stood at this head, so a restart need not re-read its store:
    # the compact range (hex, widest subtree first) and the notification id of the last row.
    compact_range: list[str] | None = None
    last_id: int | None = None


def append_record(path: Path, record: HeadRecord) -> None:
    """Append one line; the file is made 0600 and only ever appended to."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(record.model_dump_json() + "\n")
        out.flush()
        os.fsync(out.fileno())


@dataclass(frozen=True)
class UnreadableLine:
    line: int
    reason: str


def read_records(path: Path) -> Iterator[HeadRecord | UnreadableLine]:
    """Every record of a heads file in order; a damaged line is reported, never fatal."""
    if not path.exists():
        return
    with path.open() as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                yield HeadRecord.model_validate(json.loads(line))
            except (ValueError, ValidationError) as exc:
                yield UnreadableLine(number, str(exc).splitlines()[0])


class HeadRefused(RuntimeError):
    """The store no longer matches the last signed head: signing now would launder it."""


def last_record(path: Path) -> HeadRecord | None:
    """The last record of a heads file, read from its end (a file of many heads is not read
    whole); a damaged last line falls back to reading every line for the last good one."""
    if not path.exists():
        return None
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:  # past the trailing newlines
            f.seek(end - 1)
            if f.read(1) not in (b"\n", b"\r"):
                break
            end -= 1
        chunks: list[bytes] = []
        while end > 0:
            start = max(0, end - (1 << 16))
            f.seek(start)
            block = f.read(end - start)
            end = start
            cut = block.rfind(b"\n")
            if cut >= 0:
                chunks.append(block[cut + 1:])
                break
            chunks.append(block)
    line = b"".join(reversed(chunks))
    if line.strip():
        try:
            return HeadRecord.model_validate(json.loads(line))
        except (ValueError, ValidationError):
            pass
    found = None
    for record in read_records(path):
        if isinstance(record, HeadRecord):
            found = record
    return found


class HeadWriter:
    """One service's tree, kept up to date from its store, signed on request.

    At start it takes up the tree where its last head left it: that head's compact range and
    last notification id (checked: the range folds to the head's root and the head is signed
    with this service's key), so only the rows stored after it are read (``resumed``). A
    heads file without them (older heads) or that does not check out starts from an empty tree,
    and the whole store is read, as before. Rows before the last head are not read again at
    start: that they are unchanged is what `rekey audit verify` checks, from the store.
    """

    def __init__(self, service: str, private: Ed25519PrivateKey, path: Path) -> None:
        self.service = service
        self.private = private
        self.path = path
        self.tree = MerkleTree()
        self.pending: list[tuple[int, str, int, str]] = []  # rows the next head adds
        self.last_id = 0
        self.previous = last_record(path)
        self.resumed = self._resume()

    def _resume(self) -> bool:
        record = self.previous
        if record is None or record.compact_range is None or record.last_id is None:
            return False
        head = record.head
        try:
            hashes = [bytes.fromhex(h) for h in record.compact_range]
            tree = MerkleTree.from_compact_range(head.tree_size, hashes)
            fits = tree.root().hex() == head.root_hash
        except ValueError:
            fits = False
        if not fits or head.service != self.service or not head.verify([self.private.public_key()]):
            log.warning("%s: the last head's tree state does not check out; reading the whole "
                        "store to rebuild the tree", self.service)
            return False
        self.tree, self.last_id = tree, record.last_id
        return True

    @property
    def previous_size(self) -> int:
        return self.previous.head.tree_size if self.previous else 0

    def add(self, rows: Iterable[StoredRow]) -> None:
        for row in rows:
            leaf = row_leaf(self.service, row)
            self.tree.append(leaf)
            if len(self.tree) > self.previous_size:
                self.pending.append((row.notification_id, str(row.originator_id),
                                     row.originator_version, leaf.hex()))
            self.last_id = row.notification_id

    def sign(self, now: datetime) -> HeadRecord:
        """A new signed head over every row added so far, consistent with the previous one."""
        size, previous_size = len(self.tree), self.previous_size
        previous_root = self.previous.head.root_hash if self.previous else self.tree.root(0).hex()
        if size < previous_size or self.tree.root(previous_size).hex() != previous_root:
            raise HeadRefused(
                f"{self.service}: the store no longer matches the head signed at "
                f"{self.previous.head.timestamp if self.previous else '?'} (tree size "
                f"{previous_size}); no new head is signed. Run `rekey audit verify`")
        head = TreeHead(service=self.service, tree_size=size, root_hash=self.tree.root().hex(),
                        timestamp=now, key="").signed_by(self.private)
        proof = self.tree.consistency_proof(previous_size, size) if 0 < previous_size < size else []
        record = HeadRecord(head=head, previous_size=previous_size, previous_root=previous_root,
                            consistency=[p.hex() for p in proof],
                            rows=self.pending,
                            compact_range=[h.hex() for h in self.tree.compact_range()],
                            last_id=self.last_id)
        append_record(self.path, record)
        self.previous, self.pending = record, []
        return record
