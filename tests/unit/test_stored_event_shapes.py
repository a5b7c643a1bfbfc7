"""Stored events stay readable: an event class's fields change only with a new class version.

``stored_event_shapes.json`` records, per stored event topic, its class version and its fields.
A class that gains a field must declare the version and the older events' defaults with
``shared.upcasting.gained``; then record the new shape with
``REKEY_RECORD_EVENT_SHAPES=1 pytest tests/unit/test_stored_event_shapes.py``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
from pathlib import Path

from eventsourcing.domain import Aggregate, DomainEvent
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex
from eventsourcing.utils import get_topic

import services
from services.ticketing.domain import Ticket

RECORD = Path(__file__).with_name("stored_event_shapes.json")
BASE_FIELDS = {"self", "originator_id", "originator_version", "timestamp", "originator_topic"}


def event_classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for module in pkgutil.walk_packages(services.__path__, "services."):
        for obj in vars(importlib.import_module(module.name)).values():
            if inspect.isclass(obj) and issubclass(obj, Aggregate) and obj.__module__ == module.name:
                for event in vars(obj).values():
                    if inspect.isclass(event) and issubclass(event, DomainEvent):
                        found[get_topic(event)] = event
    return found


def shapes() -> dict[str, dict[str, object]]:
    return {
        topic: {
            "version": getattr(cls, "class_version", 1),
            "fields": sorted(set(inspect.signature(cls.__init__).parameters) - BASE_FIELDS),
        }
        for topic, cls in sorted(event_classes().items())
    }


def test_no_stored_event_class_changes_its_fields_without_a_new_version() -> None:
    now = shapes()
    if os.environ.get("REKEY_RECORD_EVENT_SHAPES") == "1":
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(RECORD.read_text())
    changed = [
        topic for topic, shape in recorded.items()
        if topic in now and now[topic]["fields"] != shape["fields"]
        and now[topic]["version"] == shape["version"]
    ]
    assert not changed, (
        f"{changed} changed fields without a new class version: events already stored would no "
        "longer replay. Declare it with shared.upcasting.gained, then record the shapes."
    )
    gone = sorted(set(recorded) - set(now))
    assert not gone, f"{gone}: stored events name these topics; keep them (register_topic)"
    assert now == {**recorded, **{t: s for t, s in now.items() if t not in recorded}}, (
        "a new version is declared but not recorded: record the shapes"
    )


def test_an_event_stored_before_its_class_gained_a_field_still_replays() -> None:
    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper = Mapper(transcoder=transcoder)
    ticket = Ticket(name="Pat", email="pat@example.org", username="pat@masspasrr.org",
                    reason="lost phone", requested_by="pat@masspasrr.org", channel="web",
                    client={"address": "192.0.2.7"})
    stored = mapper.to_stored_event(ticket.collect_events()[0])
    state = json.loads(stored.state)
    del state["client"], state["class_version"]  # as the version before stored it
    old = stored.__class__(stored.originator_id, stored.originator_version, stored.topic,
                           json.dumps(state).encode())
    replayed = mapper.to_domain_event(old).mutate(None)
    assert replayed.username == "pat@masspasrr.org" and replayed.id == ticket.id
