"""Wiring of the audit service: it consumes every public event and answers auditors' queries."""

from __future__ import annotations

from services.audit import commands as c
from services.audit.application import AuditApplication
from services.audit.feed import LiveFeed
from services.audit.stream_erasure import StreamEraser
from services.audit.witness import HeadsWitness
from shared.bus.rpc import Endpoint
from shared.bus.signing import signer_for
from shared.clock import Clock
from shared.contracts.events import PUBLISHED
from shared.runtime import HistoryQuery, Wiring
from shared.settings import AUDIT, Settings


def build(settings: Settings, *, clock: Clock | None = None) -> Wiring:
    app = AuditApplication(settings, clock=clock, signer=signer_for(settings, AUDIT))
    feed = LiveFeed(app, signer=app.signer)
    eraser = StreamEraser(app)
    witness = HeadsWitness(app)
    app.witness = witness
    app.on_erased.append(eraser.wake_soon)
    queries = (("history", HistoryQuery, app.history_rows), ("as_of", c.AsOf, app.as_of),
               ("count", c.EventFilter, app.count),
               ("events", c.EventPage, app.page), ("manifest", c.BundleManifest, app.manifest))
    return Wiring(
        name=AUDIT,
        app=app,
        endpoints={name: Endpoint(command, answer) for name, command, answer in queries},
        handlers={key: feed.recording for key in PUBLISHED},
        record_together=feed.recording_all,
        connected=[feed.connected, eraser.connected, witness.connected],
        background=[feed.run, eraser.run, witness.run],
        dependencies=[("tree heads", witness.check)],
    )
