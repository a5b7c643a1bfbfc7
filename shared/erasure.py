"""The record that a user's data was erased in one service: the erasure is itself an event.

It names the user only by their data-key id (a uuid5 of the username), holds no personal data,
and stays readable after the erasure (its aggregate has no user key).
"""

from __future__ import annotations

from datetime import datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event


class ErasureRecord(Aggregate):
    """The erasures of one user's data key in one service."""

    @classmethod
    def create_id(cls, key_id: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"https://rekey.dev/erasure/{key_id}")

    @classmethod
    def id_for(cls, key_id: UUID | str) -> UUID:
        return cls.create_id(str(key_id))

    @event("ErasureRecordOpened")
    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        self.actors: list[str] = []

    @event("UserDataErased")
    def record(self, actor: str) -> None:
        self.actors.append(actor)

    @property
    def erased_at(self) -> datetime | None:
        return self.modified_on if self.actors else None
