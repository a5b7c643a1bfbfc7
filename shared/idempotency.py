"""Idempotent commands: a caller's retry gets the first answer, not a second ticket.

A command that creates something takes an ``idempotency_key`` (the portal puts one in each
form, the CLI makes one per invocation or takes ``--idempotency-key``). The first answer is
recorded as an index aggregate, :class:`CommandAnswered`, whose id is
``uuid5(service, command, key)``, saved in the same transaction as what the command created.
A retry with the same key finds it and gets the recorded answer; nothing is done again.

Two copies racing both try to create the same ``CommandAnswered``: one save wins, the other
conflicts (optimistic concurrency), is run again by ``in_thread`` and replays the winner's
answer. A key reused for a different request is refused (``Conflict``), never answered with
another request's result. The answers recorded are the commands' plain results (ticket
number, account name), never a secret; the request's fingerprint leaves secrets out.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, Field

from shared import metrics
from shared.errors import Conflict

NAMESPACE = uuid5(NAMESPACE_URL, "https://rekey.dev/idempotency")
IdempotencyKey = Annotated[
    str | None,
    Field(None, min_length=8, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$",
          description="The caller's key for this request: a retry with the same key gets the "
          "first answer instead of doing the work again"),
]
# Not part of what makes two requests "the same": who signed it and from where (a retry may
# carry a fresh principal), the key itself, and secrets (never hashed into a stored record).
NOT_FINGERPRINTED = frozenset({"idempotency_key", "principal", "client", "password", "token"})


class KeyReused(Conflict):
    """The key was used before for a different request."""


def fingerprint(command: BaseModel) -> str:
    fields = command.model_dump(mode="json", exclude=set(NOT_FINGERPRINTED))
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class CommandAnswered(Aggregate):
    """The first answer to one (service, command, idempotency key): private bookkeeping."""

    @staticmethod
    def create_id(service: str, command: str, key: str) -> UUID:
        return uuid5(NAMESPACE, f"{service}:{command}:{key}")

    @event("CommandAnswered")
    def __init__(self, service: str, command: str, key: str, request: str,
                 answer: dict[str, Any]) -> None:
        self.service = service
        self.command = command
        self.key = key
        self.request = request
        self.answer = answer

    def check_same_request(self, request: str) -> None:
        if request != self.request:
            raise KeyReused("This idempotency key was already used for a different request; "
                            "use a new key for a new request.")

    @property
    def subject(self) -> str:
        return ""


class Idempotency:
    """One service's idempotent commands: ``replay`` before the work, ``record`` with its save."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def _id(self, command: str, key: str) -> UUID:
        return CommandAnswered.create_id(self.app.service, command, key)

    def replay(self, command: str, cmd: BaseModel) -> dict[str, Any] | None:
        """The first answer to this request, or None when it is new (or carries no key)."""
        key = getattr(cmd, "idempotency_key", None)
        if not key:
            return None
        answered = self.app.find(self._id(command, key))
        if answered is None:
            return None
        answered.check_same_request(fingerprint(cmd))
        metrics.IDEMPOTENT_REPLAYS.labels(service=self.app.service, command=command).inc()
        return dict(answered.answer)

    def record(self, command: str, cmd: BaseModel, answer: dict[str, Any]) -> list[CommandAnswered]:
        """What to save with the command's aggregates (nothing without a key)."""
        key = getattr(cmd, "idempotency_key", None)
        if not key:
            return []
        return [CommandAnswered(service=self.app.service, command=command, key=key,
                                request=fingerprint(cmd), answer=answer)]
