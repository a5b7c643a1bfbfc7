"""How aggregate state beyond plain JSON values goes into a snapshot (eventsourcing transcodings).

Events carry plain values; a snapshot carries an aggregate's whole state, which may hold small
dataclasses and sets. Each dataclass is stored as its fields by name (decoded with its own
constructor, so a field added later with a default still reads an old snapshot), a set as a
sorted list. A snapshot is a cache: one taken by other code is never read
(:func:`shared.application.snapshot_fingerprint`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from eventsourcing.persistence import Transcoding


class DataclassAsDict(Transcoding):
    def __init__(self, cls: type[Any]) -> None:
        self.type = cls
        self.name = f"rekey:{cls.__module__}.{cls.__qualname__}"
        self.fields = tuple(f.name for f in dataclasses.fields(cls))

    def encode(self, obj: Any) -> dict[str, Any]:
        return {name: getattr(obj, name) for name in self.fields}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


class SetAsSortedList(Transcoding):
    type = set
    name = "rekey:set"

    def encode(self, obj: set[Any]) -> list[Any]:
        return sorted(obj)

    def decode(self, data: list[Any]) -> set[Any]:
        return set(data)
