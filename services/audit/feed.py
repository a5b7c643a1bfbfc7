"""The live feed for a SIEM: every event the audit service records, as it records it.

Each recorded row is published on ``rekey.audit.feed.<service>.<EventName>`` (core NATS, no
stream) as the same JSON object a line of ``rekey audit export --format jsonl`` holds, signed
like events are (headers ``Rekey-Signer`` and ``Rekey-Signature``, the audit service's key).
The feed starts at the projection's end when the service starts: it is live, not a replay. A
subscriber that was away catches up with ``rekey audit export --since``; the projection, not
the feed, is the record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from services.audit.application import AuditApplication
from services.audit.projection import Filters
from shared.bus.consumer import Delivered, stream_sequence
from shared.bus.signing import NkeySigner
from shared.concurrency import in_thread, woken_or_stopped
from shared.contracts import EventEnvelope
from shared.contracts.envelope import AUDIT_FEED_PREFIX

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
BATCH = 500


def feed_subject(source: str, name: str) -> str:
    return f"{AUDIT_FEED_PREFIX}.{source}.{name}"


class LiveFeed:
    def __init__(self, app: AuditApplication, signer: NkeySigner | None) -> None:
        self.app = app
        self.signer = signer
        self.nc: Any = None
        self.wake = asyncio.Event()
        self.published = 0

    def connected(self, nc: Any) -> None:
        self.nc = nc

    async def recording(self, envelope: EventEnvelope) -> None:
        """The consumer's handler for every public event: record it, then wake the feed."""
        if await in_thread(self.app.record, envelope, stream_sequence()):
            self.wake.set()

    async def recording_all(self, delivered: list[Delivered]) -> None:
        """A fetched run of public events, recorded in one transaction (one thread hop and one
        commit for the run); then the feed wakes."""
        if await in_thread(self.app.record_all, delivered):
            self.wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        position = await in_thread(self.app.projection.last_seq)
        while not stopping.is_set():
            await woken_or_stopped(self.wake, stopping, POLL_SECONDS)
            self.wake.clear()
            try:
                position = await self._publish_after(position)
            except Exception:
                if stopping.is_set():
                    return
                log.exception("publishing the audit feed failed; trying again")

    async def _publish_after(self, position: int) -> int:
        while self.nc is not None:
            rows = await in_thread(self.app.projection.page, Filters(), position, 2**62, BATCH)
            for row in rows:
                data = row.envelope.encode()
                envelope = EventEnvelope.model_validate_json(data)
                subject = feed_subject(envelope.source, envelope.name)
                headers = self.signer.headers(subject, data) if self.signer else None
                await self.nc.publish(subject, data, headers=headers)
                self.published += 1
                position = row.seq
            if len(rows) < BATCH:
                break
        return position
