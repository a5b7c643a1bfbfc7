"""A typed client for the services' request/reply endpoints, used by the CLI, demo and portal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from shared.bus.rpc import rpc_subject
from shared.errors import Unavailable, error_from_dict

NO_RESPONDER_RETRIES = 5


class RekeyClient:
    def __init__(self, nc: Client, timeout: float = 10.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        """One command; a service that is (re)starting gets a moment to subscribe."""
        data = json.dumps(payload, default=str).encode()
        for attempt in range(NO_RESPONDER_RETRIES + 1):
            try:
                reply = await self.nc.request(
                    rpc_subject(service, command), data, timeout=self.timeout
                )
                break
            except NoRespondersError as exc:
                if attempt == NO_RESPONDER_RETRIES:
                    raise Unavailable(
                        f"The {service} service is not answering. Try again shortly."
                    ) from exc
                await asyncio.sleep(0.1 * (attempt + 1))
            except (NatsTimeoutError, TimeoutError) as exc:
                raise Unavailable(
                    f"The {service} service is not answering. Try again shortly."
                ) from exc
        answer = json.loads(reply.data)
        if not answer.get("ok"):
            raise error_from_dict(answer.get("error", {}))
        return answer.get("result")
