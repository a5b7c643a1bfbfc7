"""The portal's one bus connection: requests arriving together before the first connection
share the one they wait for (a real nats-server with the production bus policy)."""

from __future__ import annotations

import asyncio

from services.portal.web import Portal

AT_ONCE = 8


async def test_requests_arriving_together_before_the_first_connection_share_one(
    nats_server, settings_factory
):
    portal = Portal(settings_factory(nats_server))
    try:
        clients = await asyncio.gather(*(portal.client() for _ in range(AT_ONCE)))

        assert all(client is clients[0] for client in clients)
        assert portal.connection.is_connected
    finally:
        await portal.connection.close()
