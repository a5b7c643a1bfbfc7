"""Stored events outlive their classes: a class that gains fields reads older events with defaults.

``eventsourcing`` stores ``class_version`` with an event whose class has one above 1, and on
reading runs ``upcast_v1_v2``, ``upcast_v2_v3``... from the stored version up. The aggregates
here make their event classes from ``@event`` methods, so the versions are declared after the
class, in one line per change: ``gained(Ticket.ResetRequested, 2, client=None)``.
``tests/unit/test_stored_event_shapes.py`` keeps a record of every event class's fields and
fails when one changes without a new version.
"""

from __future__ import annotations

from typing import Any


def gained(event_class: type, version: int, **defaults: Any) -> None:
    """``event_class`` gained the fields ``defaults`` names in ``version``: stored events of the
    version before it read with those values. Declare the versions in order, 2 first."""
    if version != getattr(event_class, "class_version", 1) + 1:
        raise ValueError(f"{event_class.__qualname__}: declare version {version} after the one before")

    def upcast(state: dict[str, Any]) -> None:
        for name, value in defaults.items():
            state.setdefault(name, value)

    event_class.class_version = version  # type: ignore[attr-defined]
    setattr(event_class, f"upcast_v{version - 1}_v{version}", staticmethod(upcast))
