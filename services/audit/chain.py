"""Tamper evidence for histories: per-service hash chains and checkpoints an auditor keeps.

Each service's log is append-only and ordered by notification id, so a user's events from one
service form a chain: ``head_n = sha256(head_{n-1} + canonical JSON of event n)``. A
checkpoint records, per service, how many events were seen and the chain's head. Later, the
same history rebuilt from the stores must reproduce those heads over its first events; a
changed, removed or reordered event breaks them, while new events only extend the chain.
The checkpoint proves nothing unless it is kept outside the system (the auditor's own files).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.contracts import EventEnvelope

GENESIS = hashlib.sha256(b"rekey-audit-chain-v1").hexdigest()


def canonical(event: EventEnvelope) -> bytes:
    """The event as a chain link. Sealed facts (``*_sealed``: AES-GCM with a fresh nonce each
    time an envelope is built) are left out: every replay seals them anew, so they would break
    the chain without any change in the store."""
    data = event.model_dump(mode="json")
    data["body"] = {k: v for k, v in data["body"].items() if not k.endswith("_sealed")}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def heads(events: Iterable[EventEnvelope]) -> dict[str, list[str]]:
    """Per service, the chain's head after each of the user's events, in log order."""
    ordered = sorted(events, key=lambda e: (e.source, e.notification_id))
    chains: dict[str, list[str]] = {}
    for event in ordered:
        chain = chains.setdefault(event.source, [])
        previous = chain[-1] if chain else GENESIS
        chain.append(hashlib.sha256(previous.encode() + canonical(event)).hexdigest())
    return chains


def checkpoint(username: str, events: Iterable[EventEnvelope], at: str) -> dict[str, Any]:
    return {
        "username": username,
        "taken_at": at,
        "chains": {source: {"count": len(c), "head": c[-1]} for source, c in heads(events).items()},
    }


@dataclass(frozen=True)
class Finding:
    source: str
    ok: bool
    detail: str


def verify(saved: dict[str, Any], events: Iterable[EventEnvelope]) -> list[Finding]:
    """Compare a kept checkpoint with the history as the stores give it now."""
    now = heads(events)
    findings = []
    for source, kept in sorted(saved["chains"].items()):
        chain = now.get(source, [])
        count, head = int(kept["count"]), kept["head"]
        if len(chain) < count:
            findings.append(Finding(source, False, f"{count - len(chain)} of {count} events are gone"))
        elif chain[count - 1] != head:
            findings.append(Finding(source, False, f"the first {count} events no longer match"))
        else:
            added = len(chain) - count
            findings.append(Finding(source, True, f"{count} events intact, {added} added since"))
    return findings
