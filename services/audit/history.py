"""Rebuild one user's history from every service's event store, in order.

Two ways in, one result: ask the running services over the bus (each replays its own store),
or open the stores directly when the system is down. Either way the events are the public
contracts, so no secret can appear: the contract models have no field that could hold one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from shared.application import READ_ONLY
from shared.client import RekeyClient
from shared.contracts import EventEnvelope
from shared.errors import NotFound
from shared.settings import SERVICES, Settings


def in_order(events: Iterable[EventEnvelope]) -> list[EventEnvelope]:
    return sorted(events, key=lambda e: (e.occurred_at, e.source, e.notification_id))


async def history_over_bus(client: RekeyClient, username: str) -> list[EventEnvelope]:
    answers = await asyncio.gather(
        *(client.call(service, "history", username=username) for service in SERVICES)
    )
    return in_order(EventEnvelope.model_validate(e) for answer in answers for e in answer)


def missing_stores(settings: Settings, services: Sequence[str] = SERVICES) -> list[str]:
    """The services whose store is not where ``settings`` point (opening one would make it)."""
    if settings.store == "sqlite":
        return [s for s in services if not (settings.data_dir / f"{s}.sqlite").exists()]
    import psycopg

    try:
        with psycopg.connect(settings.postgres_conninfo(), connect_timeout=5) as conn:
            found = {row[0] for row in conn.execute(
                "SELECT DISTINCT table_schema FROM information_schema.tables"
                " WHERE table_schema = ANY(%s)", (list(services),))}
    except psycopg.OperationalError:
        return list(services)
    return [s for s in services if s not in found]


def where_stores_are(settings: Settings) -> str:
    if settings.store == "sqlite":
        return f"REKEY_STORE=sqlite in {settings.data_dir}"
    return (f"REKEY_STORE=postgres, database {settings.postgres_db!r} on "
            f"{settings.postgres_host}:{settings.postgres_port} as {settings.postgres_user!r}")


def check_stores_exist(settings: Settings) -> None:
    """Refuses (:class:`NotFound`) rather than answer "no events" from stores that are not
    there: reading a wrong folder or backend would otherwise look like an empty history."""
    missing = missing_stores(settings)
    if missing:
        raise NotFound(
            f"no event store for {', '.join(missing)} ({where_stores_are(settings)}): nothing "
            "read. Use the data folder Rekey was started with (its rekey.env names the stores), "
            "or set REKEY_STORE and REKEY_POSTGRES_* as it ran"
        )


def application_classes() -> list[type[Any]]:
    """Every service's application class, in the order of ``SERVICES``."""
    from services.consent.application import ConsentApplication
    from services.credentials.application import CredentialsApplication
    from services.ticketing.application import TicketingApplication
    from services.verification.application import VerificationApplication

    return [TicketingApplication, CredentialsApplication, VerificationApplication,
            ConsentApplication]


def history_from_stores(settings: Settings, username: str) -> list[EventEnvelope]:
    check_stores_exist(settings)
    events: list[EventEnvelope] = []
    for cls in application_classes():
        app = cls(settings, READ_ONLY)
        try:
            events.extend(app.history(username))
        finally:
            app.close()
    return in_order(events)


def describe(event: EventEnvelope, *, shorten: bool = True) -> str:
    """One line of facts for people (long values shortened unless asked not to); the JSON form
    carries everything."""
    skip = {"ticket_id", "username", "email_digest"}
    return ", ".join(
        f"{k}={_short(v) if shorten else v}" for k, v in event.body.items() if k not in skip and v is not None
    )


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 48 else text[:45] + "..."
