"""A service runtime's tree heads: catch up with the store, sign, append, publish.

:func:`tree_heads_for` gives a runtime its :class:`TreeHeads` (None on a system without bus
keys, where there is no evidence key to sign with). The runtime calls :meth:`TreeHeads.next`
in a worker thread at ``REKEY_TREE_HEAD_SECONDS`` and on the ``tree_head`` endpoint, then
publishes the record on ``rekey.heads.<service>``.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from shared.errors import Conflict
from shared.evidence.heads import HeadRecord, HeadRefused, HeadWriter, heads_file
from shared.evidence.rows import stored_rows
from shared.evidence_keys import heads_private_key, heads_seed_file, keys_folder

log = logging.getLogger(__name__)


class TreeHeadRefused(Conflict):
    """The store does not match its last signed head: nothing is signed over it."""


class TreeHeads:
    def __init__(self, app: Any, writer: HeadWriter) -> None:
        self.app = app
        self.writer = writer
        self._lock = threading.Lock()

    def next(self) -> HeadRecord:
        """Add the rows stored since the last call, sign a head over them all, append it."""
        with self._lock:
            self.writer.add(stored_rows(self.app, after=self.writer.last_id))
            try:
                return self.writer.sign(self.app.clock.now())
            except HeadRefused as exc:
                log.error("%s", exc)
                raise TreeHeadRefused(str(exc)) from None


def tree_heads_for(app: Any) -> TreeHeads | None:
    folder = keys_folder(app.settings)
    if folder is None or not heads_seed_file(folder, app.service).exists():
        return None
    writer = HeadWriter(app.service, heads_private_key(folder, app.service),
                        heads_file(app.settings, app.service))
    return TreeHeads(app, writer)
