"""Short-lived sign-in tokens that carry a user's progress between services.

Credentials issues a ``password_change`` or ``password`` token after a good password;
verification issues an ``mfa`` token after a verified challenge; verification, consent and the
portal gate on them. Each is a JWT (EdDSA) signed with the issuing service's own key and checked
against its public key, so no service can mint a step it does not run: a compromised consent or
portal signs nothing, and verification cannot vouch for a password.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import context
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AuthenticationFailed
from shared.settings import Settings
from shared.signing_keys import own_key, public_keys

STAGES = ("password_change", "password", "mfa", "reset_cancel", "agent_mfa")
# Which service vouches for which step. ``reset_cancel``: the link in the mail that tells a user
# a reset of their sign-in methods was approved (credentials mails it to the address on file).
# ``agent_mfa``: an agent's password was right, a second factor is still due (credentials runs
# both steps; the token alone lets no agent act).
STAGE_ISSUERS: Mapping[str, str] = {
    "password_change": "credentials", "password": "credentials", "mfa": "verification",
    "reset_cancel": "credentials", "agent_mfa": "credentials",
}
RESET_REFUSAL = "Your account was reset after you signed in. Sign in again."


class SignedInBeforeReset(AuthenticationFailed):
    """A token or principal issued before the user's last reset: final, whatever else it is."""
AUDIENCE = "rekey-sign-in"
ALGORITHM = "EdDSA"
CLOCK_SKEW_SECONDS = 60  # between the issuing and the checking service (as for principals)


@dataclass
class TokenKeys:
    """What one service signs with (``own``) and whom it trusts (``trusted``), per issuer."""

    own: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    trusted: dict[str, list[Ed25519PublicKey]] = field(default_factory=dict)
    clock: Clock = SYSTEM_CLOCK

    @classmethod
    def from_folder(cls, folder: Path, issuers: tuple[str, ...] = (),
                    clock: Clock = SYSTEM_CLOCK) -> TokenKeys:
        """The keys in a bus key folder: ``issuers`` to sign as, every issuer's public keys."""
        return cls(
            own={issuer: own_key(folder, issuer) for issuer in issuers},
            trusted={issuer: public_keys(folder, issuer) for issuer in set(STAGE_ISSUERS.values())},
            clock=clock,
        )

    @classmethod
    def fresh(cls, clock: Clock = SYSTEM_CLOCK) -> TokenKeys:
        """New keys for every issuer, trusted by this object alone (tests, tools)."""
        own = {issuer: Ed25519PrivateKey.generate() for issuer in set(STAGE_ISSUERS.values())}
        return cls(own=own, trusted={i: [k.public_key()] for i, k in own.items()}, clock=clock)


def token_keys(settings: Settings, service: str, clock: Clock = SYSTEM_CLOCK) -> TokenKeys:
    """A service's keys: it signs the steps it runs, and trusts every issuer's public keys."""
    if not settings.nats_keys_dir:
        return TokenKeys(clock=clock)  # a bus without keys: nothing is signed, nothing passes
    issuers = tuple(i for i in set(STAGE_ISSUERS.values()) if i == service)
    return TokenKeys.from_folder(Path(settings.nats_keys_dir), issuers, clock)


def all_issuers(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> TokenKeys:
    """Every issuer's keys from the folder: for tests and benchmarks that hold them all, never
    for a service."""
    return TokenKeys.from_folder(Path(settings.nats_keys_dir), tuple(set(STAGE_ISSUERS.values())),
                                 clock)


def issue_token(
    keys: TokenKeys, username: str, stage: str, ttl_seconds: int = 900, *, bound_to: str | None = None
) -> str:
    """``bound_to`` ties the token to a fact (e.g. which temporary password was used): when the
    fact changes, the token stops working even before it expires."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    issuer = STAGE_ISSUERS[stage]
    if issuer not in keys.own:
        raise ValueError(f"only {issuer} issues {stage} tokens")
    now = keys.clock.time()
    claims: dict[str, object] = {
        "iss": issuer, "aud": AUDIENCE, "sub": username, "stage": stage,
        "iat": round(now, 3), "exp": int(now) + ttl_seconds,
    }
    if bound_to is not None:
        claims["bnd"] = bound_to
    return jwt.encode(claims, keys.own[issuer], algorithm=ALGORITHM)


def verify_token(
    keys: TokenKeys,
    token: str,
    stage: str,
    username: str | None = None,
    *,
    issued_after: datetime | None = None,
    bound_to: str | None = None,
    max_age: float | None = None,
) -> str:
    """The token's username, if it is genuine, unexpired, of ``stage`` and for ``username``.

    ``issued_after`` (the user's last reset, :func:`check_not_before_reset`) refuses tokens from
    before it. ``max_age`` (seconds): accept an expired token up to that age since it was issued
    (the portal asks whether a sign-in it keeps is still current, long after its first step).
    """
    refused = AuthenticationFailed("Your sign-in has expired or is not valid. Sign in again.")
    issuer = STAGE_ISSUERS.get(stage, "")
    claims = None
    for key in keys.trusted.get(issuer, []):
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=issuer,
                options={"require": ["exp", "iat", "sub", "stage"], "verify_exp": False,
                         "verify_iat": False, "verify_nbf": False},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except (jwt.PyJWTError, ValueError, TypeError):
            raise refused from None
    if claims is None:
        raise refused
    now = keys.clock.time()
    if float(claims.get("iat", 0)) > now + CLOCK_SKEW_SECONDS:
        # Dated ahead of this clock: freshness (``max_age``) and the reset rule both count
        # from ``iat``, so such a token would stay fresh and outlive every reset.
        raise refused
    if max_age is not None:
        if claims.get("stage") != stage or float(claims.get("iat", 0)) + max_age < now:
            raise refused
    elif claims.get("stage") != stage or int(claims.get("exp", 0)) < now:
        raise refused
    if username is not None and str(claims.get("sub", "")).lower() != username.lower():
        raise refused
    if bound_to is not None and not hmac.compare_digest(str(claims.get("bnd", "")), bound_to):
        raise refused
    check_not_before_reset(float(claims.get("iat", 0)), issued_after)
    context.authenticated(str(claims["sub"]), "user")
    return str(claims["sub"])


def unverified_binding(token: str) -> str:
    """The ``bnd`` claim, read before the signature is checked: only to find what the token
    claims to be about (a ticket), so that it can then be verified against it."""
    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("bnd", ""))
    except jwt.PyJWTError:
        return ""


def check_not_before_reset(issued_at: float, reset_at: datetime | None) -> None:
    """The one rule every service applies to a user's tokens and an agent's principal: nothing
    issued (POSIX ``issued_at``) before the user's last reset took effect counts any more.

    Each service knows ``reset_at`` from the events it records or consumes (``ResetApproved``,
    ``PasswordIssued``: :meth:`shared.application.ServiceApplication.last_reset`).
    """
    if reset_at is not None and issued_at < reset_at.timestamp():
        raise SignedInBeforeReset(RESET_REFUSAL)
