"""What the rule tests share: the events an aggregate has just recorded, and fixed inputs."""

from __future__ import annotations

from datetime import UTC, datetime

from eventsourcing.domain import Aggregate

SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # a TOTP seed (base32, 160 bits)
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def names(aggregate: Aggregate) -> list[str]:
    """The names of the events recorded since the last collection (collecting them)."""
    return [type(e).__name__ for e in aggregate.collect_events()]
