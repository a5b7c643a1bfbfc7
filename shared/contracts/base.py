"""The base of every public event body."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class EventBody(BaseModel):
    """A versioned event body; undeclared attributes are dropped, never published."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_version: ClassVar[int] = 1
