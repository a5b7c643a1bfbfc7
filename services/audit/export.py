"""Export formats (JSONL, CSV, OCSF) and the export bundle an auditor checks offline.

JSONL is the envelope as the audit service holds it, one object per line: the same JSON as the
live feed. CSV flattens the envelope's fields and keeps the body as one JSON cell. OCSF maps each
event to one of two OCSF 1.5.0 classes of the Identity & Access Management category, by hand
(the table :data:`OCSF_ACTIVITIES`; docs/audit.md explains it): Authentication (3002) for
sign-ins and second-factor checks, Account Change (3001) for everything else that changes the
account, its password, its methods or its reset ticket ("Other", 99, where no OCSF activity
fits). The Rekey envelope travels whole in ``unmapped`` so nothing is lost.

A bundle is a zip file: ``events.jsonl`` (canonical lines, in the order the audit service
recorded them), ``manifest.json`` (the audit service's signed statement of the filters, the
count and the SHA-256 of those lines) and ``README.txt``. :func:`verify_bundle` needs only the
file and the deployment's ``audit.pub``: no bus, no store.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from services.audit.application import BUNDLE_FORMAT, canonical_line, manifest_bytes
from services.audit.bundle_proofs import (
    EvidenceRefused,
    EvidenceReport,
    ServiceEvidence,
    check_evidence,
    write_evidence,
)
from shared.bus.signing import public_key_bytes
from shared.contracts import EventEnvelope

FORMATS = ("jsonl", "csv", "ocsf")
OCSF_VERSION = "1.5.0"
AUTHENTICATION, ACCOUNT_CHANGE = 3002, 3001
CATEGORY_IAM = 3
SUCCESS, FAILURE = 1, 2

# event name -> (OCSF class, activity id, status id)
OCSF_ACTIVITIES: dict[str, tuple[int, int, int]] = {
    "SignInSucceeded": (AUTHENTICATION, 1, SUCCESS),  # Logon
    "SignInFailed": (AUTHENTICATION, 1, FAILURE),
    "ChallengeVerified": (AUTHENTICATION, 1, SUCCESS),  # Logon, is_mfa
    "ChallengeFailed": (AUTHENTICATION, 1, FAILURE),
    "ChallengeDenied": (AUTHENTICATION, 1, FAILURE),
    "AccountRegistered": (ACCOUNT_CHANGE, 1, SUCCESS),  # Create
    "PasswordChanged": (ACCOUNT_CHANGE, 3, SUCCESS),  # Password Change
    "PasswordIssued": (ACCOUNT_CHANGE, 4, SUCCESS),  # Password Reset
    "TemporaryPasswordDeliveryFailed": (ACCOUNT_CHANGE, 4, FAILURE),
    "AccountLocked": (ACCOUNT_CHANGE, 9, SUCCESS),  # Lock
    "AccountUnlocked": (ACCOUNT_CHANGE, 12, SUCCESS),  # Unlock
    "MethodRegistered": (ACCOUNT_CHANGE, 10, SUCCESS),  # MFA Factor Enable
    "MethodsRevoked": (ACCOUNT_CHANGE, 11, SUCCESS),  # MFA Factor Disable
    "MethodRemoved": (ACCOUNT_CHANGE, 11, SUCCESS),
    "MethodLocked": (ACCOUNT_CHANGE, 11, SUCCESS),
}
CLASS_NAMES = {AUTHENTICATION: "Authentication", ACCOUNT_CHANGE: "Account Change"}
ACTIVITY_NAMES = {
    AUTHENTICATION: {1: "Logon", 99: "Other"},
    ACCOUNT_CHANGE: {1: "Create", 3: "Password Change", 4: "Password Reset", 9: "Lock",
                     10: "MFA Factor Enable", 11: "MFA Factor Disable", 12: "Unlock", 99: "Other"},
}
MFA_EVENTS = frozenset({"ChallengeVerified", "ChallengeFailed", "ChallengeDenied"})
CSV_COLUMNS = ("occurred_at", "source", "notification_id", "event_id", "name", "subject",
               "actor", "correlation_id", "causation_id", "context", "body")


def _millis(moment: str) -> int:
    return int(datetime.fromisoformat(moment).timestamp() * 1000)


def to_ocsf(event: dict[str, Any]) -> dict[str, Any]:
    """One envelope as an OCSF 1.5.0 Authentication or Account Change event."""
    class_uid, activity_id, status_id = OCSF_ACTIVITIES.get(event["name"], (ACCOUNT_CHANGE, 99, SUCCESS))
    record: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": CLASS_NAMES[class_uid],
        "category_uid": CATEGORY_IAM,
        "category_name": "Identity & Access Management",
        "activity_id": activity_id,
        "activity_name": ACTIVITY_NAMES[class_uid][activity_id],
        "type_uid": class_uid * 100 + activity_id,
        "severity_id": 1,
        "severity": "Informational",
        "status_id": status_id,
        "status": "Success" if status_id == SUCCESS else "Failure",
        "time": _millis(event["occurred_at"]),
        "message": f"{event['source']}.{event['name']}",
        "metadata": {
            "version": OCSF_VERSION,
            "uid": str(event["event_id"]),
            "correlation_uid": event.get("correlation_id"),
            "product": {"name": "Rekey", "vendor_name": "Rekey", "feature": {"name": event["source"]}},
            "log_name": event["source"],
            "sequence": event["notification_id"],
        },
        "user": {"name": event["subject"]},
        "actor": {"user": {"name": event.get("actor") or "system"}},
        "unmapped": {"rekey": event},
    }
    if class_uid == AUTHENTICATION:
        record["service"] = {"name": "PASRR Portal"}
        record["is_mfa"] = event["name"] in MFA_EVENTS
    if record["metadata"]["correlation_uid"] is None:
        del record["metadata"]["correlation_uid"]
    return record


def csv_row(event: dict[str, Any]) -> list[str]:
    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, dict | list):
            return json.dumps(value, sort_keys=True, ensure_ascii=False)
        return str(value)

    return [cell(event.get(column)) for column in CSV_COLUMNS]


class Writer:
    """Writes events in one format to a text stream."""

    def __init__(self, out: io.TextIOBase | Any, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")
        self.out = out
        self.fmt = fmt
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(CSV_COLUMNS)

    def write(self, event: dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerow(csv_row(event))
        elif self.fmt == "ocsf":
            self.out.write(json.dumps(to_ocsf(event), ensure_ascii=False) + "\n")
        else:
            self.out.write(canonical_line(event).decode())


# --- bundles -------------------------------------------------------------------------------
EVENTS_FILE = "events.jsonl"
MANIFEST_FILE = "manifest.json"
BUNDLE_README = """A Rekey audit export bundle.

events.jsonl   the exported events, one canonical JSON envelope per line
manifest.json  the audit service's statement: filters, snapshot, count, SHA-256 of events.jsonl,
               its public key (signer) and an Ed25519 signature over the manifest
heads/         each service's latest signed Merkle tree head (when the exporter had them)
proofs/        per service, an RFC 9162 inclusion proof of each event's stored row in that tree

Check it anywhere with the deployment's audit public key (audit.pub, from its bus keys folder):
    rekey audit verify --bundle THIS.zip --key audit.pub --keys FOLDER_WITH_HEADS_PUB
"""


def write_bundle(path: Path, lines: Iterable[bytes], signed: dict[str, Any],
                 evidence: dict[str, ServiceEvidence] | None = None) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        with bundle.open(EVENTS_FILE, "w") as events:
            for line in lines:
                events.write(line)
        bundle.writestr(MANIFEST_FILE, json.dumps(signed, indent=2, sort_keys=True) + "\n")
        bundle.writestr("README.txt", BUNDLE_README)
        write_evidence(bundle, evidence or {})


class BundleRefused(Exception):
    """The bundle cannot be trusted; ``kind`` says why in one word the CLI maps to an exit code:
    ``unusable`` (not a bundle), ``other_deployment``, ``tampered``, ``missing_key``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class BundleReport:
    count: int
    signer: str
    created_at: str
    filters: dict[str, Any]
    evidence: EvidenceReport


def read_trusted_keys(path: Path) -> frozenset[str]:
    keys = frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())
    for key in keys:
        public_key_bytes(key)  # raises ValueError for anything that is not an NKEY public key
    return keys


def verify_bundle(path: Path, trusted: frozenset[str], heads_keys: Path | None = None) -> BundleReport:
    """Checks the manifest's signature against ``trusted`` keys, then the events against it,
    then the services' tree heads (against ``heads_keys``) and the inclusion proofs."""
    try:
        bundle = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleRefused("unusable", f"{path} is not an audit bundle ({exc})") from None
    with bundle:
        try:
            signed = json.loads(bundle.read(MANIFEST_FILE))
            manifest, signature = signed["manifest"], base64.b64decode(signed["signature"])
            signer = manifest["signer"]
            if manifest.get("format") != BUNDLE_FORMAT:
                raise ValueError(f"format {manifest.get('format')!r}, not {BUNDLE_FORMAT}")
        except (KeyError, ValueError, TypeError, binascii.Error) as exc:
            raise BundleRefused("unusable", f"{path} has no usable manifest ({exc})") from None
        if signer not in trusted:
            raise BundleRefused(
                "other_deployment",
                f"The bundle was signed by the audit key {signer[:16]}..., which is not this "
                "deployment's (audit.pub): it comes from another deployment, or the key given "
                "is not the one that deployment uses.")
        try:
            key = Ed25519PublicKey.from_public_bytes(public_key_bytes(signer))
            key.verify(signature, manifest_bytes(manifest))
        except (ValueError, InvalidSignature):
            raise BundleRefused("tampered", "The manifest was changed after the audit service "
                                "signed it (its signature does not match).") from None
        event_ids = _check_events(bundle, manifest)
        try:
            evidence = check_evidence(bundle, event_ids, heads_keys)
        except EvidenceRefused as refused:
            raise BundleRefused(refused.kind, refused.message) from None
    return BundleReport(manifest["count"], signer, manifest["created_at"], manifest["filters"],
                        evidence)


def _check_events(bundle: zipfile.ZipFile, manifest: dict[str, Any]) -> dict[tuple[str, int], str]:
    """The events as signed; their ids by (service, notification id), for the proofs."""
    digest = hashlib.sha256()
    count = 0
    event_ids: dict[tuple[str, int], str] = {}
    try:
        with bundle.open(EVENTS_FILE) as events:
            for number, line in enumerate(events, 1):
                digest.update(line)
                count += 1
                try:
                    event = EventEnvelope.model_validate_json(line)
                    event_ids[(event.source, event.notification_id)] = str(event.event_id)
                except ValidationError:
                    raise BundleRefused(
                        "tampered", f"Line {number} of {EVENTS_FILE} is not an event.") from None
    except KeyError:
        raise BundleRefused("tampered", f"The bundle has no {EVENTS_FILE}.") from None
    if count != manifest["count"]:
        raise BundleRefused("tampered", f"{EVENTS_FILE} holds {count} events; the audit service "
                            f"signed for {manifest['count']}: events were added or removed.")
    if digest.hexdigest() != manifest["events_sha256"]:
        raise BundleRefused("tampered", f"{EVENTS_FILE} is not what the audit service signed: "
                            "an event was changed, or events were reordered.")
    return event_ids
