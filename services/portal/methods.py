"""What the verification service can do, found by asking it, so new methods appear by themselves.

The service lists its endpoints in its NATS micro ``$SRV.INFO`` answer; no command is sent to
find out. Screens for methods the service does not offer (or while it is not running) are shown
as "not yet available", never imitated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.client import RekeyClient
from shared.clock import SYSTEM_CLOCK, Clock

KNOWN_SECONDS = 30.0  # how long a full answer is trusted; an empty one is asked again at once

# Verification endpoints each screen needs; a screen is offered only when all of them are served.
NEEDS: dict[str, tuple[str, ...]] = {
    "app_code": ("start_app_registration", "verify_code"),
    "push": ("start_push", "challenge_status"),
    "phone": ("start_phone_registration", "start_challenge"),
    "passkey": ("start_passkey_registration", "finish_passkey_registration", "verify_passkey"),
}


@dataclass(frozen=True)
class MethodChoice:
    key: str
    label: str
    description: str
    available: bool


class Capabilities:
    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self.clock = clock
        self._known: dict[str, bool] = {}
        self._checked: float | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, client: RekeyClient) -> dict[str, bool]:
        async with self._lock:
            now = self.clock.monotonic()
            if self._checked is not None and now - self._checked < KNOWN_SECONDS:
                return self._known
            served = await client.endpoints("verification")
            self._known = {key: set(names) <= served for key, names in NEEDS.items()}
            self._checked = now if served else None
            return self._known

    def choices(self) -> list[MethodChoice]:
        return [
            MethodChoice("app", "Microsoft Authenticator",
                         "Approve sign-in requests or use one-time codes", True),
            MethodChoice("other-app", "Authenticator app",
                         "Any app that shows 6-digit codes (TOTP)", True),
            MethodChoice("phone", "Phone", "Get a call or text to sign in with a code",
                         self._known.get("phone", False)),
            MethodChoice("passkey", "Passkey or security key",
                         "Sign in with your device's screen lock or a security key; it cannot be "
                         "phished", self._known.get("passkey", False)),
        ]
