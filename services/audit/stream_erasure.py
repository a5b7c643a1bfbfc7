"""An erased user's public events leave the JetStream stream too.

The stream is a copy of every service's public events, kept up to its retention; each copy of
an event about a user carries their public fields (username, masked e-mail, display name) in
clear. The audit service consumes every message of the stream, so it notes each message's
stream sequence with the user it is about (:meth:`Projection.record`). When the user is erased
(``rekey audit erase``), their sequences are marked; this loop then deletes each marked message
from the stream with ``$JS.API.STREAM.MSG.DELETE`` and ``no_erase: false`` (the server
overwrites the message's bytes in its files, not only its index), and notes when. A message
about the user that arrives after the erasure (a late relay, a republished copy) is marked as
it is consumed and deleted the same way.

An audit store from before sequences were noted does not know where the older messages are:
the eraser first reads the stream back, from just below the first sequence noted down to the
stream's first message, a batch at a time (``$JS.API.STREAM.MSG.GET``; its progress is kept,
so a restart goes on where it stopped), and notes each message's user the same way (a user
already erased is marked at once).

"Record the intent, send, record sent": the marks are in the audit store, so a crash or an
outage between them deletes again (a message already gone answers "no message found", which
counts as done). Only the audit service's bus identity may send that request (its permissions
in :mod:`shared.bus.identities`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from nats.js.errors import NotFoundError
from pydantic import ValidationError

from shared import metrics
from shared.concurrency import in_thread, woken_or_stopped
from shared.contracts import EventEnvelope
from shared.contracts.envelope import STREAM_NAME
from shared.logs import Outage

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
DELETE_SUBJECT = f"$JS.API.STREAM.MSG.DELETE.{STREAM_NAME}"
BACKFILL_BATCH = 500
NO_MESSAGE = 10057  # JetStream's "no message found": deleted already (or aged out)


class StreamDeleteFailed(RuntimeError):
    pass


class StreamEraser:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.nc: Any = None
        self.wake = asyncio.Event()
        self.deleted = 0
        self.backfilled = 0
        self._backfill_done = False
        self.outage = Outage(log, "audit stream erasure")

    def connected(self, nc: Any) -> None:
        self.nc = nc
        self._loop = asyncio.get_running_loop()

    def wake_soon(self) -> None:
        """From any thread (an erasure is recorded in a worker thread)."""
        loop = getattr(self, "_loop", None)
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(self.wake.set)

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.wake.clear()
            try:
                done = await self.backfill() + await self.erase_pending()
            except Exception as exc:  # the bus or the store away: logged once, tried again
                self.outage.failed(exc)
                done = 0
            else:
                self.outage.succeeded()
            if not done:
                await woken_or_stopped(self.wake, stopping, POLL_SECONDS)

    async def erase_pending(self) -> int:
        """Delete the marked messages from the stream; how many were handled."""
        if self.nc is None:
            return 0
        sequences = await in_thread(self.app.projection.stream_to_delete)
        for seq in sequences:
            await self.delete(seq)
        if sequences:
            await in_thread(self.app.projection.stream_deleted, sequences, self.app.clock.now())
            self.deleted += len(sequences)
            metrics.STREAM_MESSAGES_ERASED.inc(len(sequences))
            log.info("deleted %d messages of erased users from the stream", len(sequences))
        return len(sequences)

    async def backfill(self) -> int:
        """Read back one batch of the stream below what is noted; how many were read."""
        if self.nc is None or self._backfill_done:
            return 0
        js = self.nc.jetstream()
        below = await in_thread(self.app.projection.backfill_below)
        if below is None:  # nothing noted yet: below what its consumer has already handled
            try:
                info = await js.consumer_info(STREAM_NAME, self.app.service)
            except NotFoundError:  # not made yet: the next pass
                return 0
            below = int(info.ack_floor.stream_seq) + 1
        first = (await js.stream_info(STREAM_NAME)).state.first_seq
        low = max(first, 1, below - BACKFILL_BATCH)
        if below <= low:
            self._backfill_done = True
            return 0
        noted = []
        for seq in range(low, below):
            try:
                message = await js.get_msg(STREAM_NAME, seq)
            except NotFoundError:  # deleted or aged out
                continue
            with contextlib.suppress(ValidationError):  # not an event: nothing to note
                noted.append((seq, EventEnvelope.model_validate_json(message.data or b"")))
        await in_thread(self.app.projection.backfilled, noted, low)
        self.backfilled += below - low
        if low == first:
            log.info("the stream is read back to its first message: %d messages noted",
                     self.backfilled)
        return below - low

    async def delete(self, seq: int) -> None:
        request = json.dumps({"seq": seq, "no_erase": False}).encode()
        reply = json.loads((await self.nc.request(DELETE_SUBJECT, request, timeout=5)).data)
        error = reply.get("error")
        if error and error.get("err_code") != NO_MESSAGE:
            raise StreamDeleteFailed(f"stream message {seq}: {error.get('description')}")
