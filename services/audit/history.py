"""Rebuild one user's history from every service's event store, in order.

Two ways in, one result: ask the running services over the bus (each replays its own store),
or open the stores directly when the system is down. Either way the events are the public
contracts, so no secret can appear: the contract models have no field that could hold one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from shared.client import RekeyClient
from shared.contracts import EventEnvelope
from shared.settings import SERVICES, Settings


def in_order(events: Iterable[EventEnvelope]) -> list[EventEnvelope]:
    return sorted(events, key=lambda e: (e.occurred_at, e.source, e.notification_id))


async def history_over_bus(client: RekeyClient, username: str) -> list[EventEnvelope]:
    answers = await asyncio.gather(
        *(client.call(service, "history", username=username) for service in SERVICES)
    )
    return in_order(EventEnvelope.model_validate(e) for answer in answers for e in answer)


def history_from_stores(settings: Settings, username: str) -> list[EventEnvelope]:
    from services.consent.application import ConsentApplication
    from services.credentials.application import CredentialsApplication
    from services.ticketing.application import TicketingApplication
    from services.verification.application import VerificationApplication

    events: list[EventEnvelope] = []
    for cls in (
        TicketingApplication,
        CredentialsApplication,
        VerificationApplication,
        ConsentApplication,
    ):
        app = cls(settings)
        try:
            events.extend(app.history(username))
        finally:
            app.close()
    return in_order(events)


def describe(event: EventEnvelope) -> str:
    """One line of facts for people; the JSON form carries everything."""
    skip = {"ticket_id", "username", "email_digest"}
    return ", ".join(
        f"{k}={_short(v)}" for k, v in event.body.items() if k not in skip and v is not None
    )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."
