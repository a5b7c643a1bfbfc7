"""Short-lived sign-in tokens that carry a user's progress between services.

Credentials issues a ``password`` token after a good password; verification issues an ``mfa``
token after a verified challenge; consent and the portal gate on them. Each is an HMAC-signed,
expiring statement, so services need no shared state to trust one another's checks.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from hashlib import sha256

from shared.errors import AuthenticationFailed

STAGES = ("password_change", "password", "mfa")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(
    key: bytes, username: str, stage: str, ttl_seconds: int = 900, *, bound_to: str | None = None
) -> str:
    """``bound_to`` ties the token to a fact (e.g. which temporary password was used): when the
    fact changes, the token stops working even before it expires."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    now = time.time()
    claims: dict[str, object] = {
        "sub": username, "stage": stage, "iat": round(now, 3), "exp": int(now) + ttl_seconds
    }
    if bound_to is not None:
        claims["bnd"] = bound_to
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64(hmac.new(key, payload.encode(), sha256).digest())
    return f"{payload}.{signature}"


def verify_token(
    key: bytes,
    token: str,
    stage: str,
    username: str | None = None,
    *,
    issued_after: float | None = None,
    bound_to: str | None = None,
) -> str:
    """The token's username, if it is genuine, unexpired, of ``stage`` and for ``username``.

    ``issued_after`` (a POSIX time) refuses tokens from before an event such as a reset: a
    sign-in that predates the reset must not enrol the user's new methods.
    """
    refused = AuthenticationFailed("Your sign-in has expired or is not valid. Sign in again.")
    try:
        payload, signature = token.split(".", 1)
        expected = _b64(hmac.new(key, payload.encode(), sha256).digest())
        if not hmac.compare_digest(signature, expected):
            raise refused
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError) as exc:
        raise refused from exc
    if claims.get("stage") != stage or int(claims.get("exp", 0)) < time.time():
        raise refused
    if username is not None and claims.get("sub", "").lower() != username.lower():
        raise refused
    if bound_to is not None and not hmac.compare_digest(str(claims.get("bnd", "")), bound_to):
        raise refused
    if issued_after is not None and float(claims.get("iat", 0)) < issued_after:
        raise AuthenticationFailed("Your account was reset after you signed in. Sign in again.")
    return str(claims["sub"])
