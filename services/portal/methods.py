"""What the verification service can do, found by asking it, so new methods appear by themselves.

An endpoint exists when it answers (even "invalid request" to an empty probe, which changes
nothing); NATS says "no responders" at once when nobody serves it. Screens for methods the
service does not offer yet are shown as "not yet available", never imitated.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from shared.client import RekeyClient
from shared.errors import RekeyError, Unavailable

PROBE_SECONDS = 30.0

# Verification endpoints each screen needs; a screen is offered only when all of them answer.
NEEDS: dict[str, tuple[str, ...]] = {
    "app_code": ("start_app_registration", "verify_code"),
    "push": ("start_push", "challenge_status"),
    "phone": ("start_phone_registration", "start_challenge"),
}


@dataclass(frozen=True)
class MethodChoice:
    key: str
    label: str
    description: str
    available: bool


class Capabilities:
    def __init__(self) -> None:
        self._known: dict[str, bool] = {}
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def refresh(self, client: RekeyClient) -> dict[str, bool]:
        async with self._lock:
            if time.monotonic() - self._checked < PROBE_SECONDS and self._known:
                return self._known
            endpoints = {name for names in NEEDS.values() for name in names}
            answers = await asyncio.gather(*(self._answers(client, e) for e in sorted(endpoints)))
            present = dict(zip(sorted(endpoints), answers, strict=True))
            self._known = {key: all(present[e] for e in names) for key, names in NEEDS.items()}
            self._checked = time.monotonic()
            return self._known

    @staticmethod
    async def _answers(client: RekeyClient, endpoint: str) -> bool:
        try:
            await client.call("verification", endpoint)
        except Unavailable:
            return False
        except RekeyError:
            return True  # it answered: refused the empty probe, as it should
        return True

    def choices(self) -> list[MethodChoice]:
        return [
            MethodChoice("app", "Microsoft Authenticator",
                         "Approve sign-in requests or use one-time codes", True),
            MethodChoice("other-app", "Authenticator app",
                         "Any app that shows 6-digit codes (TOTP)", True),
            MethodChoice("phone", "Phone", "Get a call or text to sign in with a code",
                         self._known.get("phone", False)),
        ]
