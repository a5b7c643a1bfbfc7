"""What the services keep, read as they read it: for the secret-free checks of the e2e tests."""

from __future__ import annotations

import json

from shared.settings import Settings


def decrypted_events(settings: Settings) -> bytes:
    """Every stored event of every service as its application reads it: the plain payloads."""
    from services.audit.history import application_classes

    chunks: list[bytes] = []
    for cls in application_classes():
        app = cls(settings)
        try:
            for notification in app.recorder.select_notifications(start=1, limit=100_000):
                event = app.mapper.to_domain_event(notification)
                chunks.append(json.dumps(vars(event), default=str).encode())
        finally:
            app.close()
    return b"\n".join(chunks)
