"""Request/reply endpoints (NATS micro services): a request becomes a typed command at the edge.

Handlers take a pydantic command and return a JSON-able result; they never see a ``Msg``.
Every reply is ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": {code, message}}``;
an unexpected failure is logged here and answered with a generic message, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from eventsourcing.persistence import MapperDeserialisationError
from nats.aio.client import Client
from nats.micro import add_service
from nats.micro.request import Request
from nats.micro.service import Service
from pydantic import BaseModel, ValidationError

from shared import context, deadlines, metrics
from shared.bus.callers import CallerCheck, claimed_caller
from shared.data_keys import Erased
from shared.errors import CallerUnverified, DataErased, IntegrityFailed, RekeyError

log = logging.getLogger(__name__)

RPC_PREFIX = "rekey.rpc"

try:
    VERSION = version("rekey")  # what $SRV.INFO reports
except PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0"


def rpc_subject(service: str, command: str) -> str:
    return f"{RPC_PREFIX}.{service}.{command}"


@dataclass(frozen=True)
class Endpoint:
    """A command model and what answers it.

    ``handler`` is a synchronous application method (the runtime calls it through
    ``shared.runtime.in_thread``) or an async edge function. It gets the command, or with
    ``spread=True`` the command's fields in their declared order (``app.show(ticket)``).
    """

    command: type[BaseModel]
    handler: Callable[..., Any]
    spread: bool = False

    def arguments(self, command: BaseModel) -> tuple[Any, ...]:
        if self.spread:
            return tuple(getattr(command, name) for name in type(command).model_fields)
        return (command,)


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "request"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


async def dispatch(endpoint: Endpoint, data: bytes,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
    """``headers``: the request's, for its deadline (:mod:`shared.deadlines`)."""
    try:
        command = endpoint.command.model_validate_json(data or b"{}")
    except ValidationError as exc:
        return {"ok": False, "error": {"code": "invalid_request", "message": _describe(exc)}}
    try:
        with deadlines.within(deadlines.from_headers(headers)):
            result = await endpoint.handler(*endpoint.arguments(command))
    except RekeyError as exc:
        return {"ok": False, "error": exc.to_dict()}
    except Erased:  # the user's data key was destroyed (shared.data_keys)
        return {"ok": False, "error": DataErased(
            "This account's data was erased: nothing can be done for it.").to_dict()}
    except MapperDeserialisationError as exc:  # a tampered or damaged stored row (shared.binding)
        log.error("%s refused: %s", endpoint.command.__name__, exc)
        return {"ok": False, "error": IntegrityFailed(
            "A stored record this request needs failed its integrity check, so nothing was "
            "done. The operator can see which with `rekey audit verify`.").to_dict()}
    except Exception:
        log.exception("%s failed", endpoint.command.__name__)
        return {"ok": False, "error": {"code": "internal", "message": "internal error"}}
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    return {"ok": True, "result": result}


MAX_IN_FLIGHT = 64  # requests one service process answers at once (the rest wait in NATS)


class InFlight:
    """Requests being answered side by side, at most ``most`` at once.

    A nats-py subscription runs its callback for one message at a time, so an endpoint that
    awaited its handler answered one request at a time: sixteen sign-ins queued behind one
    argon2 verification each, on one core of two. Each request is now a task; the callback
    waits only for a free slot (backpressure: the rest stay queued in the subscription).
    Concurrency on one aggregate is what every application method already handles
    (optimistic concurrency, run again by ``in_thread``). Once ``stopping``, a request is
    answered inside the callback again, so a connection's drain waits for it.
    """

    def __init__(self, most: int = MAX_IN_FLIGHT) -> None:
        self.slots = asyncio.Semaphore(most)
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if self.stopping:
            await work()
            return
        await self.slots.acquire()
        task = asyncio.create_task(work())
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.slots.release()
        if not task.cancelled() and task.exception() is not None:
            log.error("answering a request failed", exc_info=task.exception())

    async def settle(self, timeout: float) -> bool:
        """Stop taking requests as tasks and wait for those under way; False if some were
        still running after ``timeout`` seconds."""
        self.stopping = True
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)
        return not self.tasks


def _caller(callers: CallerCheck | None, request: Request) -> str | None:
    reply = request._msg.reply
    if callers is None:
        return claimed_caller(reply)
    return callers.caller(request.subject, request.data, reply, request.headers)


async def serve_endpoints(nc: Client, service: str, endpoints: dict[str, Endpoint],
                          in_flight: InFlight | None = None,
                          callers: CallerCheck | None = None) -> Service:
    """The service's endpoints as a NATS micro service, one queue group per service.

    Each endpoint keeps its subject ``rekey.rpc.<service>.<command>``; ``$SRV.PING``,
    ``$SRV.INFO`` and ``$SRV.STATS`` list the service, its endpoints (with the command model
    in the metadata) and per-endpoint request counts for standard NATS tooling (their
    processing times measure the hand-off to :class:`InFlight`; ``rekey_request_seconds``
    measures the work). Replies keep the ``ok``/``error`` body, so every request is answered
    and counted as such; each endpoint's stats ``data`` counts its answers by outcome: ``ok``
    or the error code (``{"ok": 12, "not_found": 1}``). ``callers``: whose signed requests
    are acted on (:mod:`shared.bus.callers`; None only on a bus without keys).
    """
    in_flight = in_flight or InFlight()
    outcomes: dict[str, Counter[str]] = {name: Counter() for name in endpoints}
    micro = await add_service(
        nc, name=service, version=VERSION, queue_group=service,
        description=f"Rekey {service} service",
        stats_handler=lambda stats: dict(outcomes.get(stats.name, {})),
    )
    group = micro.add_group(name=f"{RPC_PREFIX}.{service}")
    for name, endpoint in endpoints.items():

        async def answer(
            request: Request, endpoint: Endpoint = endpoint, counts: Counter[str] = outcomes[name],
            name: str = name,
        ) -> None:
            try:
                caller = _caller(callers, request)
            except CallerUnverified as exc:
                log.warning("%s.%s refused: %s", service, name, exc)
                reply: dict[str, Any] = {"ok": False, "error": exc.to_dict()}
            else:
                with context.acting(context.from_request(caller, request.headers)), \
                        metrics.timed(metrics.REQUEST_SECONDS, service=service, endpoint=name):
                    reply = await dispatch(endpoint, request.data, request.headers)
            outcome = "ok" if reply["ok"] else reply["error"]["code"]
            counts[outcome] += 1
            if not reply["ok"]:
                metrics.REQUEST_ERRORS.labels(service=service, endpoint=name, code=outcome).inc()
            with contextlib.suppress(ValueError):  # published without a reply subject
                await request.respond(json.dumps(reply, default=str).encode())

        async def on_request(request: Request, answer: Any = answer) -> None:
            await in_flight.run(lambda: answer(request))

        await group.add_endpoint(
            name=name, handler=on_request, metadata={"command": endpoint.command.__name__}
        )
    return micro
