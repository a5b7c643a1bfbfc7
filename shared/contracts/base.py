"""The base of every public event body."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class EventBody(BaseModel):
    """A versioned event body; undeclared attributes are dropped, never published.

    Its validator is built at its first use, not at import: a process builds only the bodies
    it records or reads, and starts sooner (docs/benchmarks.md, "Start-up").
    """

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)
    schema_version: ClassVar[int] = 1
