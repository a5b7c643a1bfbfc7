"""Plain-text views of tickets for the CLI (`rekey tickets list/show`)."""

from __future__ import annotations

from typing import Any


def ticket_row(t: dict[str, Any]) -> tuple[str, ...]:
    sender = "on file" if t.get("sender_verified", True) else "NOT on file"
    joined = f" (+{t['joined_requests']} joined)" if t.get("joined_requests") else ""
    return (
        t["ticket_number"], t["state"], t["username"], sender, t.get("delivery") or "-",
        t["reason"] + joined, t["created_at"][:19],
    )


def ticket_summary(t: dict[str, Any]) -> str:
    lines = [
        f"{t['ticket_number']} {t['state']}: {t['name']} <{t['email']}>, {t['username']}, "
        f"{t['reason']!r}",
        f"  by {t.get('channel', 'api')}; sender address "
        + ("is the one on file" if t.get("sender_verified", True) else "is NOT the one on file")
        + (f"; {t['joined_requests']} more request(s) joined" if t.get("joined_requests") else ""),
    ]
    if t.get("approvals"):
        lines.append(f"  first approval by {', '.join(t['approvals'])}; a second agent must approve")
    if t.get("delivery"):
        lines.append(f"  temporary password mail: {t['delivery']}")
    return "\n".join(lines)
