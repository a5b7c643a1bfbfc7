"""Stored events bound to their place: a row moved or copied elsewhere fails on read.

The ``eventsourcing`` mapper turns an event into a stored row (originator id, version, topic,
state). :class:`BindingMapper` prefixes the state with a MAC over all four, under the service's
row key (:mod:`shared.evidence_keys`, kept with the bus keys, not in the store):

    state = b"RKB1" + HMAC-SHA256(row key, originator id | version | topic | inner state) + inner

where the inner state is what the plain mapper stores (JSON, encrypted with
``REKEY_CIPHER_KEY`` when set). A row copied onto another aggregate, version or topic, or
re-encrypted by someone holding the cipher key but not the row key, no longer matches and
reading it raises :class:`RowNotInPlace`, which names the row. The notification id is given by
the database at insert time, so it cannot be in the MAC: the Merkle tree over the rows
(:mod:`shared.evidence.heads`) binds positions.

Rows written before binding existed carry no prefix ("unbound"). They are refused unless
``REKEY_UNBOUND_ROWS=accept`` (a store older than binding); ``rekey audit verify`` lists
them either way, since stripping the prefix off a copied row is exactly what an insider
would try.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent

BOUND_MARK = b"RKB1"
TAG_SIZE = 32


class RowNotInPlace(MapperDeserialisationError):
    """A stored row whose binding does not match where it is (moved, copied or altered)."""


def where(row: StoredEvent) -> str:
    number = getattr(row, "id", None)
    at = f"notification id {number}, " if number is not None else ""
    return (f"{at}aggregate {row.originator_id} version {row.originator_version} "
            f"({row.topic.rsplit(':', 1)[-1]})")


def row_tag(key: bytes, originator_id: UUID | str, version: int, topic: str, inner: bytes) -> bytes:
    mac = hmac.new(key, b"rekey-row-v1", hashlib.sha256)
    for part in (str(originator_id).encode(), str(version).encode(), topic.encode(), inner):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.digest()


def split_state(state: bytes) -> tuple[bytes | None, bytes]:
    """(tag, inner state) of a bound row; (None, state) of an unbound one."""
    if state.startswith(BOUND_MARK) and len(state) >= len(BOUND_MARK) + TAG_SIZE:
        start = len(BOUND_MARK)
        return state[start:start + TAG_SIZE], state[start + TAG_SIZE:]
    return None, state


def check_row(key: bytes, row: StoredEvent, *, accept_unbound: bool) -> bytes:
    """The row's inner state if it is bound to where it is; else :class:`RowNotInPlace`."""
    tag, inner = split_state(row.state)
    if tag is None:
        if accept_unbound:
            return inner
        raise RowNotInPlace(
            f"{where(row)} is unbound (no place binding): written before binding existed, or "
            "its binding was stripped. Set REKEY_UNBOUND_ROWS=accept only for a store older "
            "than binding, and check it with `rekey audit verify`")
    expected = row_tag(key, row.originator_id, row.originator_version, row.topic, inner)
    if not hmac.compare_digest(tag, expected):
        raise RowNotInPlace(
            f"{where(row)} does not belong where it is stored: moved, copied or altered "
            "(its place binding does not match)")
    return inner


class BindingMapper(Mapper[UUID]):
    """The plain mapper, with each stored row's state bound to its place."""

    def __init__(self, transcoder: Any, compressor: Any = None, cipher: Any = None, *,
                 key: bytes, accept_unbound: bool = False, data_keys: Any = None) -> None:
        super().__init__(transcoder, compressor=compressor, cipher=cipher)
        self.key = key
        self.accept_unbound = accept_unbound
        self.data_keys = data_keys  # shared.data_keys.DataKeys: per-user keys, or None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        row = super().to_stored_event(domain_event)
        state = row.state
        if self.data_keys is not None:
            user = self.data_keys.key_for(row.originator_id, getattr(domain_event, "username", None),
                                          first=row.originator_version == Aggregate.INITIAL_VERSION)
            if user is not None:
                state = self.data_keys.seal(user, row.originator_id, row.originator_version,
                                            row.topic, state)
        tag = row_tag(self.key, row.originator_id, row.originator_version, row.topic, state)
        return StoredEvent(originator_id=row.originator_id, originator_version=row.originator_version,
                           topic=row.topic, state=BOUND_MARK + tag + state)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        inner = self.open_data_layer(
            stored_event, check_row(self.key, stored_event, accept_unbound=self.accept_unbound))
        plain = StoredEvent(originator_id=stored_event.originator_id,
                            originator_version=stored_event.originator_version,
                            topic=stored_event.topic, state=inner)
        return super().to_domain_event(plain)

    def open_data_layer(self, row: StoredEvent, inner: bytes) -> bytes:
        """The state under a user's data key, opened (``Erased`` when the key is destroyed)."""
        if self.data_keys is None:
            return inner
        return bytes(self.data_keys.open(row.originator_id, row.originator_version, row.topic,
                                         inner))
