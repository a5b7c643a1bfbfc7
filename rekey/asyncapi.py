"""The bus as an AsyncAPI 3 document, generated from the code so it cannot drift.

Every public event (``shared.contracts``: the envelope and each versioned body) is a channel
``rekey.events.<service>.<EventName>`` that its owner sends on and the services whose wiring
handles it receive from. Every command endpoint a service serves (its ``bootstrap.build``
wiring, plus the ``health`` and ``history`` endpoints the runtime adds) is a channel
``rekey.rpc.<service>.<command>`` that the service receives on and replies to, with the
pydantic command as the request schema and the ``ok``/``error`` reply body. Who may use each
subject is the bus policy (``shared.bus.identities``), listed on each operation.

``rekey contracts asyncapi --write`` writes docs/asyncapi.json; a unit test fails while the
committed file differs from what this generates.
"""

from __future__ import annotations

import importlib
import json
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared.bus.identities import IDENTITIES, RPC_PREFIX
from shared.bus.rpc import VERSION
from shared.bus.signing import SIGNATURE_HEADER, SIGNER_HEADER
from shared.contracts.base import EventBody
from shared.contracts.envelope import AUDIT_FEED_PREFIX, STREAM_NAME, EventEnvelope, subject_for
from shared.contracts.events import CONTRACTS
from shared.runtime import HistoryQuery, NoArguments, Wiring
from shared.settings import AUDIT, PROCESSES, Settings, new_key

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"
REF = "#/components/schemas/{model}"
# What every request carries beside its body: who signed it (shared.bus.callers).
REQUEST_HEADERS = {
    "type": "object",
    "required": [SIGNER_HEADER, SIGNATURE_HEADER],
    "properties": {
        SIGNER_HEADER: {"type": "string", "description":
                        "The caller's NKEY public key, listed in <keys dir>/<identity>.pub for "
                        "the identity its reply inbox names"},
        SIGNATURE_HEADER: {"type": "string", "description":
                           "Its Ed25519 signature (base64) over the subject, the payload's "
                           "SHA-256 and the Rekey-Channel and Rekey-Session headers it states "
                           "(shared.bus.callers.request_material); a request without a valid "
                           "one is answered caller_unverified"},
    },
}


def wirings() -> dict[str, Wiring]:
    """Each service's wiring, built on a throw-away SQLite folder (nothing is served)."""
    found: dict[str, Wiring] = {}
    with tempfile.TemporaryDirectory(prefix="rekey-asyncapi-") as folder:
        settings = Settings(data_dir=Path(folder), store="sqlite", smtp_host="127.0.0.1",
                            smtp_tls="none", vault_key=new_key(), token_key=new_key(),
                            cipher_key="", twilio_auth_token=new_key(), intake_port=0)
        for service in PROCESSES:
            wiring = found[service] = importlib.import_module(
                f"services.{service}.bootstrap").build(settings)
            for close in wiring.on_close:  # only its endpoints and handlers are read
                close()
            wiring.app.close()
    return found


def owner(body: type[EventBody]) -> str:
    return body.__module__.rsplit(".", 1)[1]


def _callers(subject: str) -> list[str]:
    """The identities whose publish permissions cover ``subject`` (and are not denied it)."""
    return [name for name, ident in IDENTITIES.items()
            if any(_matches(p, subject) for p in ident.publish)
            and not any(_matches(p, subject) for p in ident.publish_deny)]


def _matches(pattern: str, subject: str) -> bool:
    want, have = pattern.split("."), subject.split(".")
    for index, part in enumerate(want):
        if part == ">":
            return len(have) > index
        if index >= len(have) or part not in ("*", have[index]):
            return False
    return len(want) == len(have)


class Schemas:
    """components.schemas: every model once, references in AsyncAPI's form."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "validation") -> dict[str, str]:
        schema = model.model_json_schema(ref_template=REF, mode=mode)  # type: ignore[arg-type]
        for name, definition in [*schema.pop("$defs", {}).items(), (model.__name__, schema)]:
            if self.schemas.setdefault(name, definition) != definition:
                raise RuntimeError(f"two different models are named {name}: rename one")
        return {"$ref": REF.format(model=model.__name__)}


def _reply_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Every reply: the result, or an error a person can read (never a traceback)",
        "required": ["ok"],
        "properties": {
            "ok": {"type": "boolean"},
            "result": {"description": "The command's result (JSON); present when ok"},
            "error": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    }


def document() -> dict[str, Any]:
    schemas = Schemas()
    schemas.ref(EventEnvelope, mode="serialization")
    schemas.schemas["Reply"] = _reply_schema()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    wired = wirings()
    consumers: dict[tuple[str, str], list[str]] = {}
    for service, wiring in wired.items():
        for key in wiring.handlers:
            consumers.setdefault(key, []).append(service)

    for name, body in sorted(CONTRACTS.items(), key=lambda item: (owner(item[1]), item[0])):
        source = owner(body)
        channel = f"events.{source}.{name}"
        message = f"{source}.{name}"
        messages[message] = {
            "name": name,
            "title": f"{name} (schema version {body.schema_version})",
            "summary": (body.__doc__ or "").strip().splitlines()[0] if body.__doc__ else name,
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {"type": "string", "description":
                                    "<source>:<notification id>, JetStream de-duplication"},
                    SIGNER_HEADER: {"type": "string", "description": "The publishing service's key"},
                    SIGNATURE_HEADER: {"type": "string", "description":
                                       "Its signature over the subject and the payload"},
                },
            },
            "payload": {"allOf": [
                {"$ref": REF.format(model="EventEnvelope")},
                {"type": "object", "properties": {
                    "name": {"const": name}, "source": {"const": source},
                    "schema_version": {"const": body.schema_version}, "body": schemas.ref(body),
                }},
            ]},
        }
        channels[channel] = {
            "address": subject_for(source, name),
            "description": f"JetStream stream {STREAM_NAME}; published by {source} only",
            "messages": {name: {"$ref": f"#/components/messages/{message}"}},
        }
        operations[f"{source}.publishes.{name}"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{channel}"},
            "summary": f"{source} records {name} and its outbox relay publishes it",
            "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
        }
        for consumer in consumers.get((source, name), []):
            operations[f"{consumer}.consumes.{source}.{name}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"{consumer}'s durable consumer handles it (signature checked)",
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
            }

    # The audit service's live feed: every event it records, re-signed with its key.
    channels["audit.feed"] = {
        "address": f"{AUDIT_FEED_PREFIX}.{{source}}.{{name}}",
        "description": "Core NATS (no stream): live, not a replay; `rekey audit export --since` "
                       "catches up",
        "parameters": {
            "source": {"description": "The service that recorded the event",
                       "enum": sorted({owner(body) for body in CONTRACTS.values()})},
            "name": {"description": "The event's name", "enum": sorted(CONTRACTS)},
        },
        "messages": {"FeedEvent": {"$ref": "#/components/messages/audit.FeedEvent"}},
    }
    messages["audit.FeedEvent"] = {
        "name": "FeedEvent", "title": "An event as the audit service recorded it",
        "contentType": "application/json",
        "headers": {"type": "object", "properties": {
            SIGNER_HEADER: {"type": "string", "description": "The audit service's key"},
            SIGNATURE_HEADER: {"type": "string", "description":
                               "Its signature over the subject and the payload"}}},
        "payload": {"$ref": REF.format(model="EventEnvelope")},
    }
    operations["audit.publishes.feed"] = {
        "action": "send", "channel": {"$ref": "#/channels/audit.feed"},
        "summary": "The audit service publishes each event once it has recorded it",
        "messages": [{"$ref": "#/channels/audit.feed/messages/FeedEvent"}],
    }
    readers = [name for name, ident in IDENTITIES.items() if name != AUDIT
               and any(_matches(p, f"{AUDIT_FEED_PREFIX}.ticketing.ResetRequested")
                       for p in ident.subscribe)]
    for reader in readers:
        operations[f"{reader}.receives.feed"] = {
            "action": "receive", "channel": {"$ref": "#/channels/audit.feed"},
            "summary": f"{reader} may subscribe (a SIEM forwarder runs as it)",
            "messages": [{"$ref": "#/channels/audit.feed/messages/FeedEvent"}],
        }

    channels["reply"] = {  # a request's reply subject: its caller's inbox
        "address": None,
        "description": "The caller's own inbox (_INBOX_<identity>.>), answered once",
        "messages": {"Reply": {"$ref": "#/components/messages/Reply"}},
    }
    messages["Reply"] = {"name": "Reply", "contentType": "application/json",
                         "payload": {"$ref": REF.format(model="Reply")}}
    for service, wiring in wired.items():
        endpoints = {name: endpoint.command for name, endpoint in wiring.endpoints.items()}
        endpoints |= {"history": HistoryQuery, "health": NoArguments}
        for command, model in sorted(endpoints.items()):
            subject = f"{RPC_PREFIX}.{service}.{command}"
            channel = f"rpc.{service}.{command}"
            message = f"{service}.{command}"
            messages[message] = {"name": model.__name__, "contentType": "application/json",
                                 "headers": {"$ref": REF.format(model="RequestHeaders")},
                                 "payload": schemas.ref(model)}
            channels[channel] = {
                "address": subject,
                "description": f"Request/reply, answered by one {service} instance (queue group)",
                "messages": {"request": {"$ref": f"#/components/messages/{message}"}},
            }
            operations[f"{service}.serves.{command}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{channel}"},
                "summary": f"May be asked by: {', '.join(_callers(subject)) or 'nobody'}",
                "messages": [{"$ref": f"#/channels/{channel}/messages/request"}],
                "reply": {"channel": {"$ref": "#/channels/reply"},
                          "messages": [{"$ref": "#/channels/reply/messages/Reply"}]},
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Rekey bus",
            "version": VERSION,
            "description": "Events on JetStream and commands as request/reply between the Rekey "
                           "services, the portal and the command line. Generated by "
                           "`rekey contracts asyncapi`; edit shared/contracts and the wirings.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {"host": "nats:4222", "protocol": "nats", "description":
                     "TLS; each client authenticates with its identity's NKEY"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(
            {**schemas.schemas, "RequestHeaders": REQUEST_HEADERS}.items()))},
    }


def text() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"
