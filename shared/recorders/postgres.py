"""PostgreSQL's process recorder with a batch's extra tracking records (see ``shared.recorders``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresProcessRecorder


class PostgresBatchRecorder(PostgresProcessRecorder):
    data_keys: Any = None  # shared.data_keys.DataKeys, set by the application

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        if self.data_keys is not None:  # new keys and owners, with the events they seal
            self.data_keys.write_staged(curs)
        for tracking in kwargs.get("more_tracking", ()):
            self._insert_tracking(curs, tracking=tracking)
        super()._insert_events(curs, stored_events, **kwargs)
