"""The audit service: every service's public events in one indexed projection of its own.

It consumes each public event once (signature checked by the consumer, body parsed with its
contract), records it as a row with its tracking in one transaction, and answers auditors'
queries from the indexes: a user's history, their state at an instant, and pages of events by
user, agent, ticket, type and time for exports. An export bundle's manifest is signed with the
audit service's own key, so a bundle can be checked offline against this deployment's
``audit.pub``. It records no events of its own and holds no secret: rows are public contracts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from datetime import UTC
from typing import Any

from pydantic import ValidationError

from services.audit import commands as c
from services.audit.projection import Filters, Projection, canonical_json
from services.audit.state import UserState, state_at
from shared.application import ServiceApplication
from shared.bus.signing import NkeySigner
from shared.contracts import EventEnvelope, contract_for
from shared.errors import DataErased, InvalidRequest, NotFound, Unavailable
from shared.runtime import HistoryQuery

log = logging.getLogger(__name__)

BUNDLE_FORMAT = "rekey-audit-bundle/1"
PAGE_LIMIT = 1000


def canonical_line(event: dict[str, Any]) -> bytes:
    """One event as a bundle holds it: the row's canonical JSON and a newline; the manifest's
    digest is over these lines, so the service and the exporter agree byte for byte."""
    return canonical_json(event).encode() + b"\n"


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def unknown_user(username: str) -> NotFound:
    return NotFound(f"No user or agent named {username!r} appears in the audit record: "
                    "check the spelling (portal usernames are full, e.g. name@masspasrr.org).")


class AuditApplication(ServiceApplication):
    service = "audit"

    def __init__(self, *args: Any, signer: NkeySigner | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        recorder = self.recorder
        self.signer = signer
        self.projection = Projection(
            recorder.datastore, self.settings.store, self.service,  # type: ignore[attr-defined]
            getattr(recorder, "tracking_table_name", "tracking"),
        )
        self.projection.create()
        self.on_erased: list[Any] = []  # told after an erasure (the stream eraser wakes)

    # --- consuming -------------------------------------------------------------------------
    def record(self, envelope: EventEnvelope, stream_seq: int | None = None) -> bool:
        """One public event as a row, exactly once; its body must parse with its contract.
        ``stream_seq``: where the message is on the stream (to delete it if the user is erased)."""
        return self.record_all([(envelope, stream_seq)]) == 1

    def record_all(self, delivered: list[tuple[EventEnvelope, int | None]]) -> int:
        """:meth:`record` for a fetched run of messages, in one transaction; the number of rows
        written. A body that does not parse with its contract is logged and left out
        (redelivering would not mend it)."""
        kept = []
        for envelope, stream_seq in delivered:
            try:
                check_body(envelope)
            except InvalidRequest as refused:
                log.error("not recorded: %s", refused.message)
                continue
            kept.append((envelope, stream_seq))
        return self.projection.record_all(kept) if kept else 0

    def record_many(self, envelopes: list[EventEnvelope]) -> int:
        return self.projection.bulk(Projection.values(e) for e in envelopes)

    # --- erasure: the projection's copy goes with the user's data keys ----------------------
    def erase_user(self, username: str, actor: str) -> dict[str, Any]:
        """`rekey audit erase`: the audit service keeps no data key, so it removes its copy of
        the user's events (the public contracts it consumed) and remembers the user only by a
        digest, so that a late or replayed event about them is tracked and not kept. Their
        messages on the event stream are marked, and deleted from it right after
        (:mod:`services.audit.stream_erasure`)."""
        now = self.clock.now()
        removed = self.projection.erase(username, now)
        log.info("erased %s rows of a user from the audit record (%s)", removed, actor)
        for listener in self.on_erased:
            listener()
        return {"service": self.service, "erased_at": str(now), "rows_removed": removed}

    def check_not_erased(self, username: str) -> None:
        if self.projection.erased(username):
            raise DataErased("This account's data was erased: the audit record keeps nothing "
                             "about it.")

    # --- queries ---------------------------------------------------------------------------
    def history(self, username: str) -> list[EventEnvelope]:
        return [EventEnvelope.model_validate(e) for e in self._history(username)]

    def history_rows(self, query: HistoryQuery) -> list[dict[str, Any]]:
        """The `history` endpoint's answer: the envelopes as stored (validated when recorded),
        in time order; the events about the user and those the user did as an agent."""
        return self._history(query.username)

    def _history(self, username: str) -> list[dict[str, Any]]:
        self.check_not_erased(username)
        rows = self.projection.history(username)
        if not rows:
            raise unknown_user(username)
        return [json.loads(row) for row in rows]

    def as_of(self, query: c.AsOf) -> UserState:
        self.check_not_erased(query.username)
        if not self.projection.known(query.username):
            raise unknown_user(query.username)
        events = [EventEnvelope.model_validate_json(r)
                  for r in self.projection.about(query.username, query.at)]
        return state_at(query.username, query.at, events)

    def _filters(self, query: c.EventFilter) -> Filters:
        for name in (query.user, query.agent):
            if name:
                self.check_not_erased(name)
            if name and not self.projection.known(name):
                raise unknown_user(name)
        return query.filters()

    def count(self, query: c.EventFilter) -> dict[str, int]:
        """How many rows the filters match up to a snapshot; the snapshot an export pages to."""
        filters = self._filters(query)
        upto = query.upto if query.upto is not None else self.projection.last_seq()
        return {"count": self.projection.count(filters, upto), "upto": upto}

    def page(self, query: c.EventPage) -> dict[str, Any]:
        rows = self.projection.page(self._filters(query), query.after, query.upto, query.limit)
        return {"events": [json.loads(r.envelope) for r in rows],
                "last": rows[-1].seq if rows else query.after}

    def manifest(self, query: c.BundleManifest) -> dict[str, Any]:
        """The signed statement a bundle carries: these filters, up to this snapshot, match this
        many events whose canonical lines hash to this digest."""
        if self.signer is None:
            raise Unavailable("The audit service has no signing key (REKEY_NATS_KEYS_DIR is not "
                              "set), so it cannot sign a bundle.")
        filters = self._filters(query)
        digest = hashlib.sha256()
        count = 0
        for row in self.projection.rows(filters, query.upto):
            digest.update(row.envelope.encode() + b"\n")  # rows keep canonical JSON
            count += 1
        manifest = {
            "format": BUNDLE_FORMAT,
            "created_at": self.clock.now().astimezone(UTC).isoformat(),
            "filters": query.model_dump(mode="json", include=set(c.EventFilter.model_fields)),
            "upto": query.upto,
            "count": count,
            "events_sha256": digest.hexdigest(),
            "signer": self.signer.public_key,
        }
        signature = self.signer.keypair.sign(manifest_bytes(manifest))
        return {"manifest": manifest, "signature": base64.b64encode(signature).decode()}


def check_body(envelope: EventEnvelope) -> None:
    """The body is what its contract says (the consumer already checked who signed it)."""
    contract = contract_for(envelope.name)
    if contract is None:
        raise InvalidRequest(f"{envelope.name} is not a public event")
    try:
        contract.model_validate(envelope.body)
    except ValidationError as exc:
        raise InvalidRequest(f"{envelope.msg_id} {envelope.name}: body does not match its "
                             f"contract ({exc.error_count()} errors)") from None

