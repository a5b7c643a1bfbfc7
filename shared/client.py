"""A typed client for the services' request/reply endpoints, used by the CLI, demo and portal."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from shared import deadlines
from shared.bus.callers import signed_headers
from shared.bus.rpc import rpc_subject
from shared.context import outgoing_headers
from shared.errors import Unavailable, error_from_dict

NO_RESPONDER_RETRIES = 5


class RekeyClient:
    def __init__(self, nc: Client, timeout: float = 10.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        """One command; a service that is (re)starting gets a moment to subscribe."""
        data = json.dumps(payload, default=str).encode()
        reply = await self._request(service, rpc_subject(service, command), data)
        answer = json.loads(reply.data)
        if not answer.get("ok"):
            raise error_from_dict(answer.get("error", {}))
        return answer.get("result")

    async def endpoints(self, service: str) -> set[str]:
        """The endpoints a running instance of ``service`` serves, or none when none runs.

        Asked of the NATS micro framework (``$SRV.INFO``), so no command reaches the service.
        """
        try:
            reply = await self._request(service, f"$SRV.INFO.{service}", b"")
        except Unavailable:
            return set()
        return {str(e["name"]) for e in json.loads(reply.data).get("endpoints") or []}

    async def _request(self, service: str, subject: str, data: bytes) -> Msg:
        stated = outgoing_headers() or {}  # the portal's channel and session reference, if any
        headers = {**stated, **signed_headers(self.nc, subject, data, stated)}  # who calls
        for attempt in range(NO_RESPONDER_RETRIES + 1):
            self._check_bus()
            try:
                return await self.nc.request(
                    subject, data, timeout=self.timeout,
                    headers={**headers, **deadlines.header(self.timeout)})
            except NoRespondersError as exc:
                if attempt == NO_RESPONDER_RETRIES:
                    raise Unavailable(
                        f"The {service} service is not answering. Try again shortly."
                    ) from exc
                await asyncio.sleep(0.1 * (attempt + 1))
            except (NatsTimeoutError, TimeoutError) as exc:
                self._check_bus()
                raise Unavailable(
                    f"The {service} service is not answering. Try again shortly."
                ) from exc
        raise AssertionError("unreachable")

    def _check_bus(self) -> None:
        """Name the real cause: with NATS away, no service is to blame."""
        if not self.nc.is_connected:
            raise Unavailable("The message bus (NATS) is not reachable, so no service can "
                              "answer. Try again shortly.")
