"""Making sure the streams exist (idempotent, at every start): the events, and the signed tree
heads (``REKEY_HEADS`` over ``rekey.heads.>``, so the audit service reads every head, none
missed while it was down: :mod:`services.audit.witness`)."""

from __future__ import annotations

import logging

from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.bus.identities import HEADS_SUBJECTS
from shared.contracts.envelope import HEADS_STREAM, STREAM_NAME, SUBJECT_PREFIX

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_SECONDS = 600.0


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    """Create the events and heads streams, or leave them as they are if they exist."""
    for name, subjects in ((STREAM_NAME, f"{SUBJECT_PREFIX}.>"), (HEADS_STREAM, HEADS_SUBJECTS)):
        config = StreamConfig(
            name=name,
            subjects=[subjects],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            num_replicas=replicas,
        )
        try:
            await js.stream_info(name)
        except NotFoundError:
            try:
                await js.add_stream(config)
                log.info("created stream %s", name)
            except Exception:  # another service won the race
                await js.stream_info(name)
