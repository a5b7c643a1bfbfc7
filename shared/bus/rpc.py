"""Request/reply endpoints: a NATS request becomes a typed command at the edge.

Handlers take a pydantic command and return a JSON-able result; they never see a ``Msg``.
Every reply is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {code, message}}``;
an unexpected failure is logged here and answered with a generic message, never a traceback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client
from pydantic import BaseModel, ValidationError

from shared.errors import RekeyError

log = logging.getLogger(__name__)

RPC_PREFIX = "rekey.rpc"


def rpc_subject(service: str, command: str) -> str:
    return f"{RPC_PREFIX}.{service}.{command}"


@dataclass(frozen=True)
class Endpoint:
    command: type[BaseModel]
    handler: Callable[[Any], Awaitable[Any]]


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def dispatch(endpoint: Endpoint, data: bytes) -> dict[str, Any]:
    try:
        command = endpoint.command.model_validate_json(data or b"{}")
    except ValidationError as exc:
        return {"ok": False, "error": {"code": "invalid_request", "message": _describe(exc)}}
    try:
        result = await endpoint.handler(command)
    except RekeyError as exc:
        return {"ok": False, "error": exc.to_dict()}
    except Exception:
        log.exception("%s failed", endpoint.command.__name__)
        return {"ok": False, "error": {"code": "internal", "message": "internal error"}}
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return {"ok": True, "result": result}


async def serve_endpoints(nc: Client, service: str, endpoints: dict[str, Endpoint]) -> list[Any]:
    subscriptions = []
    for name, endpoint in endpoints.items():

        async def on_request(msg, endpoint: Endpoint = endpoint) -> None:
            reply = await dispatch(endpoint, msg.data)
            if msg.reply:
                await msg.respond(json.dumps(reply, default=str).encode())

        subscriptions.append(
            await nc.subscribe(rpc_subject(service, name), queue=service, cb=on_request)
        )
    return subscriptions
