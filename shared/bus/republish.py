"""Gaps between a service's store and the stream, and re-publishing from the store.

The store is the truth and the stream a copy. A purged or lost stream (or a stream restored
from an older backup) holds fewer of a service's events than the relay says it published:

- :func:`relayed_public_events` counts the service's public events (those with a contract)
  up to the relay's position, with one grouped query on the store, less those of erased users
  (the audit service deletes them from the stream: :mod:`services.audit.stream_erasure`), so
  an erasure is never taken for a loss;
- the stream's count for the service's subjects comes from ``STREAM.INFO`` with a subject
  filter (:func:`stream_event_count`); fewer on the stream than relayed is a gap.

:func:`republish` puts a range of the store's events on the stream again, signed like the
relay's, with a message id of the repair run (``<service>:<id>:republish:<run>``) so the
stream's duplicate window never drops them as copies of what was purged and one run retried
does not publish twice. Consumers record each upstream event with a tracking row in the same
transaction as its effect, so an event they already handled changes nothing.
"""

from __future__ import annotations

from typing import Any

from shared.binding import BOUND_MARK, TAG_SIZE
from shared.contracts import contract_for
from shared.contracts.envelope import STREAM_NAME, SUBJECT_PREFIX
from shared.data_keys import DATA_MARK


def _event_name(topic: str) -> str:
    return topic.rsplit(".", 1)[-1].rsplit(":", 1)[-1]


# Where a row's data-key id is in its stored state (1-based, as SQL counts):
# "RKB1" | binding tag (32) | "RKD1" | key id (16) | ... (shared.binding, shared.data_keys)
KEY_ID_AT = len(BOUND_MARK) + TAG_SIZE + len(DATA_MARK) + 1


def relayed_public_events(app: Any, upto: int) -> int:
    """How many of the service's stored events up to notification ``upto`` have a contract and
    belong to no erased user: the events the stream should hold (one scan of the table)."""
    return sum(kept for topic, kept in _grouped(app, upto, _erased_key_ids(app))
               if contract_for(_event_name(topic)) is not None)


def _erased_key_ids(app: Any) -> list[bytes]:
    data_keys = getattr(app, "data_keys", None)
    return [key.bytes for key in data_keys.erased_key_ids()] if data_keys is not None else []


def _grouped(app: Any, upto: int, erased: list[bytes]) -> list[tuple[str, int]]:
    """(topic, rows up to ``upto`` not sealed with one of the ``erased`` key ids)."""
    recorder = app.recorder
    table = recorder.events_table_name
    with recorder.datastore.transaction(commit=False) as c:
        if app.settings.store == "sqlite":
            counted = "COUNT(*)"
            if erased:
                counted = (f"SUM(CASE WHEN substr(state, {KEY_ID_AT}, 16) IN "
                           f"({', '.join('?' for _ in erased)}) THEN 0 ELSE 1 END)")
            c.execute(f"SELECT topic, {counted} FROM {table} WHERE rowid <= ? "  # noqa: S608
                      "GROUP BY topic", (*erased, upto))
        else:
            counted = "COUNT(*)"
            if erased:
                counted = (f"SUM(CASE WHEN substring(state from {KEY_ID_AT} for 16) = ANY(%s) "
                           "THEN 0 ELSE 1 END)")
            c.execute(f"SELECT topic, {counted} FROM {app.service}.{table} "  # noqa: S608
                      "WHERE notification_id <= %s GROUP BY topic",
                      (erased, upto) if erased else (upto,))
        return [(str(_row(r)[0]), int(_row(r)[1] or 0)) for r in c.fetchall()]


def _row(row: Any) -> tuple[Any, Any]:
    if isinstance(row, dict):
        values = list(row.values())
        return values[0], values[1]
    return row[0], row[1]


async def stream_event_count(js: Any, service: str) -> int:
    """How many messages the stream holds on the service's event subjects."""
    info = await js.stream_info(STREAM_NAME, subjects_filter=f"{SUBJECT_PREFIX}.{service}.>")
    return sum((info.state.subjects or {}).values())


async def republish(relay: Any, app: Any, start: int, limit: int, run: str) -> dict[str, int]:
    """Publish the public events among notifications ``start``.. (at most ``limit`` of them read)
    up to the relay's position; returns how many were read and published, and where to go on."""
    from shared.concurrency import in_thread

    upto = await in_thread(app.relay_position)
    notifications = [n for n in await in_thread(app.recorder.select_notifications, start, limit)
                     if n.id <= upto]
    envelopes = await in_thread(lambda: [app.envelope_to_publish(n) for n in notifications])
    public = [e for e in envelopes if e is not None]
    await relay.publish_all(public, republish_run=run)
    published = len(public)
    following = notifications[-1].id + 1 if notifications else upto + 1
    return {"read": len(notifications), "published": published, "next": following, "last": upto}
