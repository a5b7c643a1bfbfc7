"""``rekey bench heads``: a service's start-up cost for its Merkle tree, with and without the
compact range its last signed head keeps (shared/evidence/heads.py).

The rows are made cheaply but from a real one: the real credentials application stores one
account (bound, encrypted, under the user's data key, as in production), and that row's stored
bytes are copied under new aggregate ids up to the size asked (every leaf differs: a leaf
covers the aggregate id). Then a service's start is timed as its runtime does it
(``tree_heads_for`` and the first ``next()``: read the heads file, read rows, hash, sign, append):

- **whole store**: a heads file whose last head has no compact range (every head before this
  change): the whole store is read and hashed;
- **compact range**: the same store and one more head, plus ``after`` new rows: only those are
  read.

Figures only, beside each other: no timed assertion.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from eventsourcing.persistence import StoredEvent

from rekey.bench.pipeline import Bench
from rekey.stack.inprocess import scratch_database
from shared.evidence.heads import heads_file
from shared.evidence.publishing import tree_heads_for

BATCH = 5000


@dataclass(frozen=True)
class StartFigure:
    store: str
    rows: int
    mode: str
    rows_read: int
    seconds: float


def _fill(app, template: StoredEvent, count: int) -> None:
    made = 0
    while made < count:
        n = min(BATCH, count - made)
        app.recorder.insert_events([
            StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic=template.topic,
                        state=template.state) for _ in range(n)])
        made += n


def _timed_start(app) -> tuple[float, int, bool]:
    started = time.perf_counter()
    heads = tree_heads_for(app)
    assert heads is not None, "the bench's bus keys give every service an evidence key"
    heads.next()
    seconds = time.perf_counter() - started
    writer = heads.writer
    return seconds, len(writer.tree) - writer.tree.base, writer.resumed


def _strip_compact_range(path: Path) -> None:
    lines = path.read_text().splitlines()
    last = json.loads(lines[-1])
    last.pop("compact_range", None)
    path.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")


def run_heads_bench(stores: list[str], rows: int, after: int) -> list[StartFigure]:
    import contextlib
    import tempfile

    from services.credentials.application import CredentialsApplication
    from services.credentials.domain import Account

    figures: list[StartFigure] = []
    for store in stores:
        with contextlib.ExitStack() as stack:
            postgres_db = stack.enter_context(scratch_database("rekey_bench")) \
                if store == "postgres" else None
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rekey-bench-")))
            bench = Bench(folder, store, postgres_db)  # its settings and keys; no server started
            app = CredentialsApplication(bench.settings)
            try:
                app.save(Account(username="template@masspasrr.org", email="t@example.org",
                                 display_name="T", role="user", actor="bench"))
                template = app.recorder.select_notifications(1, 1)[0]
                _fill(app, template, rows - 1)
                path = heads_file(bench.settings, app.service)
                _timed_start(app)  # the first head ever: writes a compact range
                _strip_compact_range(path)  # as every head was before
                seconds, read, _ = _timed_start(app)
                figures.append(StartFigure(store, rows, "whole store (no compact range)", read,
                                           seconds))
                _fill(app, template, after)
                seconds, read, resumed = _timed_start(app)
                assert resumed
                figures.append(StartFigure(store, rows + after, "compact range of the last head",
                                           read, seconds))
            finally:
                app.close()
    return figures
