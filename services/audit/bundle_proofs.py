"""Signed tree heads and inclusion proofs in an export bundle, checked offline.

For each service whose events a bundle exports, the exporter adds the latest signed tree head
from that service's heads file (``heads/<service>.json``) and, for each exported event the head
covers, an RFC 9162 inclusion proof of its stored row (``proofs/<service>.jsonl``: notification
id, event id, aggregate, version, leaf index, leaf hash, audit path). The checker needs only the
bundle and the services' ``<service>.heads.pub``: each head's signature, each proof against its
head's root, and that the proven row is the event's (its event id is
``uuid5(REKEY_NAMESPACE, "<aggregate>:<version>")``). The leaf hash covers the stored row's
bytes, which a bundle does not carry (they hold private facts, encrypted or not): so a proof shows
the event's row, by aggregate, version and position, is in the tree the service signed; that its
content is unchanged is what `rekey audit verify` shows on the stores, against the same heads.
Events recorded after the last head are exported without a proof, and counted as such.
"""

from __future__ import annotations

import json
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from pydantic import ValidationError

from shared.application import REKEY_NAMESPACE
from shared.evidence.heads import HeadRecord, TreeHead, key_id, read_records
from shared.evidence.merkle import MerkleTree, verify_inclusion
from shared.evidence_keys import heads_public_keys

HEADS_PREFIX, PROOFS_PREFIX = "heads/", "proofs/"


class EvidenceRefused(Exception):
    """``kind``: ``tampered``, ``other_deployment`` or ``missing_key``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass
class ServiceEvidence:
    head: TreeHead
    proofs: list[dict[str, Any]] = field(default_factory=list)


def _signed_rows(records: Iterable[Any]) -> tuple[TreeHead | None, list[tuple[int, str, int, str]]]:
    """The last head of a heads file and the rows it covers, in leaf order."""
    head, rows = None, []
    for record in records:
        if isinstance(record, HeadRecord):
            rows.extend(tuple(r) for r in record.rows)  # type: ignore[misc]
            head = record.head
    return head, rows[: head.tree_size] if head else []


def evidence_for(events: Iterable[dict[str, Any]], heads_folder: Path) -> dict[str, ServiceEvidence]:
    """The latest head of each exported service and a proof for each event it covers."""
    wanted: dict[str, set[int]] = defaultdict(set)
    for event in events:
        wanted[event["source"]].add(int(event["notification_id"]))
    found: dict[str, ServiceEvidence] = {}
    for service, numbers in sorted(wanted.items()):
        head, rows = _signed_rows(read_records(heads_folder / f"{service}.jsonl"))
        if head is None:
            continue
        tree = MerkleTree(bytes.fromhex(row[3]) for row in rows)
        evidence = found[service] = ServiceEvidence(head)
        for index, (number, aggregate, version, leaf) in enumerate(rows):
            if number in numbers:
                evidence.proofs.append({
                    "notification_id": number, "aggregate": aggregate, "version": version,
                    "index": index, "leaf": leaf,
                    "path": [h.hex() for h in tree.inclusion_proof(index, head.tree_size)],
                })
    return found


def write_evidence(bundle: zipfile.ZipFile, found: dict[str, ServiceEvidence]) -> None:
    for service, evidence in found.items():
        bundle.writestr(f"{HEADS_PREFIX}{service}.json", evidence.head.model_dump_json() + "\n")
        bundle.writestr(f"{PROOFS_PREFIX}{service}.jsonl",
                        "".join(json.dumps(p, sort_keys=True) + "\n" for p in evidence.proofs))


@dataclass(frozen=True)
class EvidenceReport:
    heads: dict[str, int]  # service -> signed tree size
    proven: int


def check_evidence(bundle: zipfile.ZipFile, event_ids: dict[tuple[str, int], str],
                   keys_folder: Path | None) -> EvidenceReport:
    """Every head signed by its service's evidence key; every proof valid and about an event of
    the bundle. ``event_ids`` maps (service, notification id) to the event id."""
    heads: dict[str, int] = {}
    proven = 0
    for name in sorted(n for n in bundle.namelist() if n.startswith(HEADS_PREFIX)):
        service = name[len(HEADS_PREFIX):].removesuffix(".json")
        head = _trusted_head(bundle.read(name), service, keys_folder)
        heads[service] = head.tree_size
        try:
            lines = bundle.read(f"{PROOFS_PREFIX}{service}.jsonl").decode().splitlines()
        except KeyError:
            raise EvidenceRefused("tampered", f"The bundle has a head of {service} but no proofs.") from None
        for line in lines:
            _check_proof(json.loads(line), service, head, event_ids)
            proven += 1
    return EvidenceReport(heads, proven)


def _trusted_head(data: bytes, service: str, keys_folder: Path | None) -> TreeHead:
    trusted = heads_public_keys(keys_folder, service) if keys_folder else []
    if not trusted:
        raise EvidenceRefused("missing_key", f"No tree-head public key of {service} to check the "
                              f"bundle's head against: pass --keys with the folder holding "
                              f"{service}.heads.pub.")
    try:
        head = TreeHead.model_validate_json(data)
    except ValidationError:
        raise EvidenceRefused("tampered", f"The bundle's head of {service} is unreadable.") from None
    if head.service != service or head.key not in {key_id(k) for k in trusted}:
        raise EvidenceRefused("other_deployment", f"The bundle's head of {service} was signed by "
                              "another key than this deployment's: it comes from elsewhere.")
    if not head.verify(trusted):
        raise EvidenceRefused("tampered", f"The bundle's head of {service} does not match its "
                              "signature: it was changed.")
    return head


def _check_proof(proof: dict[str, Any], service: str, head: TreeHead,
                 event_ids: dict[tuple[str, int], str]) -> None:
    number = int(proof["notification_id"])
    where = f"{service} notification {number}"
    event_id = event_ids.get((service, number))
    if event_id is None:
        raise EvidenceRefused("tampered", f"A proof names {where}, which is not an event of the bundle.")
    try:
        aggregate = UUID(str(proof["aggregate"]))  # SQLite keeps it as 32 hex digits
    except ValueError:
        aggregate = None
    if str(uuid5(REKEY_NAMESPACE, f"{aggregate}:{proof['version']}")) != event_id:
        raise EvidenceRefused("tampered", f"The proof of {where} is about another stored row than "
                              "the bundle's event.")
    if not verify_inclusion(bytes.fromhex(proof["leaf"]), int(proof["index"]), head.tree_size,
                            [bytes.fromhex(h) for h in proof["path"]], bytes.fromhex(head.root_hash)):
        raise EvidenceRefused("tampered", f"The proof of {where} does not lead to the root "
                              f"{service} signed: the event's row is not in its signed tree.")
