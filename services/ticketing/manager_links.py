"""The signed, single-use link mailed to the manager on file to approve or decline a reset.

A JWT (EdDSA) signed with ticketing's own key (its bus NKEY, like shared/tokens.py) naming the
ticket, the proof and the account, with an expiry. Single use is the proof's: once the manager
approved or declined, the proof is no longer running and the same link is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import jwt

from shared.clock import Clock
from shared.errors import AuthenticationFailed
from shared.settings import Settings
from shared.signing_keys import own_key, public_keys

AUDIENCE = "rekey-manager-approval"
ISSUER = "ticketing"
REFUSED = "This link is not valid: it was altered, has expired or was already used."


@dataclass(frozen=True)
class ManagerLink:
    username: str
    ticket_id: str
    proof_id: str


class ManagerLinks:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock

    @cached_property
    def _folder(self) -> Path:
        if not self.settings.nats_keys_dir:
            raise AuthenticationFailed("Manager links need the bus keys (REKEY_NATS_KEYS_DIR).")
        return Path(self.settings.nats_keys_dir)

    def issue(self, link: ManagerLink, ttl_seconds: int) -> str:
        now = self.clock.time()
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": link.username, "tid": link.ticket_id,
                  "pid": link.proof_id, "iat": round(now, 3), "exp": int(now) + ttl_seconds}
        return jwt.encode(claims, own_key(self._folder, ISSUER), algorithm="EdDSA")

    def verify(self, token: str) -> ManagerLink:
        for key in public_keys(self._folder, ISSUER):
            try:
                claims = jwt.decode(
                    token, key, algorithms=["EdDSA"], audience=AUDIENCE, issuer=ISSUER,
                    options={"require": ["exp", "sub", "tid", "pid"], "verify_exp": False,
                             "verify_iat": False, "verify_nbf": False},  # on our own clock
                )
            except jwt.InvalidSignatureError:
                continue
            except (jwt.PyJWTError, ValueError, TypeError):
                break
            if int(claims["exp"]) < self.clock.time():
                break
            return ManagerLink(str(claims["sub"]), str(claims["tid"]), str(claims["pid"]))
        raise AuthenticationFailed(REFUSED)
