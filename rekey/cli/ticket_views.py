"""Plain-text views of tickets for the CLI (`rekey tickets list/show`)."""

from __future__ import annotations

from typing import Any


def ticket_row(t: dict[str, Any]) -> tuple[str, ...]:
    policy = t.get("policy") or {}
    sender = f"{policy.get('points', 0)}/{policy.get('needed', '?')} points"
    joined = f" (+{t['joined_requests']} joined)" if t.get("joined_requests") else ""
    return (
        t["ticket_number"], t["state"], t["username"], sender, t.get("delivery") or "-",
        t["reason"] + joined, t["created_at"][:19],
    )


def ticket_summary(t: dict[str, Any]) -> str:
    lines = [
        f"{t['ticket_number']} {t.get('state_label') or t['state']}: {t['name']} <{t['email']}>, "
        f"{t['username']}, "
        f"{t['reason']!r}",
        f"  by {t.get('channel', 'api')}; {t.get('address_on_file', '')}"
        + (f"; {t['joined_requests']} more request(s) joined" if t.get("joined_requests") else ""),
    ]
    if policy := t.get("policy"):
        proofs = ", ".join(f"{p['kind']} {p['state']}" for p in t.get("proofs", [])) or "none yet"
        lines.append(f"  identity proof: {policy['points']} of {policy['needed']} points "
                     f"({'enough' if policy['met'] else 'not enough'} to approve); proofs: {proofs}")
    if t.get("approvals"):
        waiting = t["state"] == "awaiting_second_approval"
        lines.append(f"  first approval by {', '.join(t['approvals'])}"
                     + ("; a second agent must approve" if waiting else ""))
    if t.get("decided_by"):
        lines.append(f"  decided by {t['decided_by']}")
    if t.get("effective_at"):
        lines.append(f"  takes effect {t['effective_at'][:16]} UTC"
                     + (", unless the person cancels it" if t["state"] == "reset_scheduled" else ""))
    if t.get("delivery"):
        lines.append(f"  temporary password mail: {t['delivery']}")
    if t.get("client"):
        lines.append(f"  requested from {t['client']['address']} ({t['client']['network']})")
    lines += [f"  FLAGGED {f['label']}: {f['summary']}" for f in t.get("flags", [])]
    return "\n".join(lines)
