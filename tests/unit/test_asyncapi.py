"""docs/asyncapi.json describes the bus as the code runs it: every event and every endpoint,
each with its schema, in a well-formed AsyncAPI 3 document that is kept current."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from rekey.asyncapi import DOCUMENT, document, text, wirings
from shared.bus.identities import IDENTITIES
from shared.contracts.envelope import subject_for
from shared.contracts.events import CONTRACTS
from shared.settings import PROCESSES

KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")  # AsyncAPI 3: ids of channels, operations, components


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return document()


def test_the_committed_document_is_what_the_code_generates():
    assert DOCUMENT.read_text() == text(), "run `rekey contracts asyncapi --write`"


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_it_is_an_asyncapi_3_document_whose_references_all_resolve(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for section in ("channels", "operations"):
        assert all(KEY.match(key) for key in doc[section]), section
    for section in ("messages", "schemas"):
        assert all(KEY.match(key) for key in doc["components"][section]), section
    for ref in refs(doc):
        resolve(doc, ref)


def test_each_operation_sends_or_receives_messages_of_its_own_channel(doc):
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel + "/messages/"), name
        if "reply" in operation:
            reply = operation["reply"]["channel"]["$ref"]
            assert all(m["$ref"].startswith(reply + "/messages/")
                       for m in operation["reply"]["messages"]), name


def test_every_payload_and_header_schema_is_a_valid_json_schema(doc):
    for message in doc["components"]["messages"].values():
        for part in ("payload", "headers"):
            if part in message:
                Draft202012Validator.check_schema(message[part])
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_public_event_has_its_subject_its_owner_and_its_body_schema(doc):
    addresses = {c["address"]: c for c in doc["channels"].values()}
    for name, body in CONTRACTS.items():
        source = body.__module__.rsplit(".", 1)[1]
        channel = addresses[subject_for(source, name)]
        assert name in doc["components"]["schemas"]
        assert f"{source}.publishes.{name}" in doc["operations"]
        assert list(channel["messages"]) == [name]


def test_every_consumer_handler_is_a_receive_operation(doc):
    for service, wiring in wirings().items():
        for source, name in wiring.handlers:
            assert doc["operations"][f"{service}.consumes.{source}.{name}"]["action"] == "receive"


def test_every_endpoint_of_every_service_is_a_channel_with_its_command_schema(doc):
    addresses = {c["address"]: c for c in doc["channels"].values()}
    for service, wiring in wirings().items():
        for command, endpoint in [*wiring.endpoints.items(), ("health", None), ("history", None)]:
            channel = addresses[f"rekey.rpc.{service}.{command}"]
            message = resolve(doc, channel["messages"]["request"]["$ref"])
            if endpoint is not None:
                assert message["payload"] == {"$ref": f"#/components/schemas/{endpoint.command.__name__}"}
            assert doc["operations"][f"{service}.serves.{command}"]["reply"]
    assert set(wirings()) == set(PROCESSES)


def test_each_endpoint_names_the_identities_the_bus_lets_ask_it(doc):
    summary = doc["operations"]["ticketing.serves.approve"]["summary"]
    assert "portal" in summary and "operator" in summary and "auditor" not in summary
    history = doc["operations"]["credentials.serves.history"]["summary"]
    assert "auditor" in history and "operator" not in history
    assert set(IDENTITIES) >= {"portal", "operator", "auditor"}


def test_a_real_event_validates_against_its_message_schema(doc):
    from datetime import UTC, datetime
    from uuid import uuid4

    from shared.contracts.envelope import EventEnvelope
    from shared.contracts.ticketing import ResetApproved

    event = EventEnvelope(event_id=uuid4(), name="ResetApproved", schema_version=1,
                          occurred_at=datetime.now(UTC), source="ticketing", notification_id=7,
                          subject="pat", body=ResetApproved(ticket_id="t", username="pat",
                                                            agent="ann").model_dump())
    payload = doc["components"]["messages"]["ticketing.ResetApproved"]["payload"]
    # The payload's references point into the document's components: carry them along.
    validator = Draft202012Validator({**payload, "components": doc["components"]})
    assert not list(validator.iter_errors(json.loads(event.model_dump_json())))
    wrong = json.loads(event.model_dump_json()) | {"body": {"ticket_id": "t"}}
    assert list(validator.iter_errors(wrong))


def test_the_audit_feed_is_a_channel_the_audit_service_sends_on_and_the_auditor_reads(doc):
    from shared.contracts.envelope import AUDIT_FEED_PREFIX

    feed = doc["channels"]["audit.feed"]
    assert feed["address"] == f"{AUDIT_FEED_PREFIX}.{{source}}.{{name}}"
    assert set(re.findall(r"{(\w+)}", feed["address"])) == set(feed["parameters"])
    assert set(feed["parameters"]["name"]["enum"]) == set(CONTRACTS)
    assert doc["operations"]["audit.publishes.feed"]["action"] == "send"
    assert doc["operations"]["auditor.receives.feed"]["action"] == "receive"
    assert "portal.receives.feed" not in doc["operations"]
