"""Who is acting: short-lived assertions signed by the service that authenticated the person.

A command that acts for a person carries a principal: a JWT (EdDSA) issued by ``credentials``
after it checked an agent's sign-in, or by the operator's own key at the command line. Every
service verifies it with the issuer's public key and takes the actor from it, never from a
name in the command, so a caller on the bus cannot act in an agent's name, and one caller
cannot be two agents to pass four-eyes. The keys are the issuers' bus NKEYs (Ed25519): the
identity that authenticates the person is the one that vouches for them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import jwt
import nkeys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import context
from shared.bus.signing import PUBLIC_SUFFIX, public_key_bytes
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import AuthenticationFailed, NotAllowed
from shared.settings import Settings

Kind = Literal["agent", "operator"]
AUDIENCE = "rekey"
ALGORITHM = "EdDSA"
# Which issuer may vouch for which kind of principal: the operator's key cannot make an agent.
ISSUERS: Mapping[str, frozenset[str]] = {
    "credentials": frozenset({"agent"}),
    "operator": frozenset({"operator"}),
}
EXPIRED = "Your sign-in has expired. Sign in again."
# How the person proved who they are (RFC 8176 ``amr`` values): an agent's password is one
# factor; a passkey or security key ("hwk") or an authenticator code ("otp") is the second.
PASSWORD_FACTOR = "pwd"  # noqa: S105 - a factor's name, not a password
SECOND_FACTORS = frozenset({"hwk", "otp"})
NO_SECOND_FACTOR = ("This agent sign-in did not pass a second factor (a passkey, a security key or "
                    "an authenticator code). Sign in again.")
CLOCK_SKEW_SECONDS = 60  # between the issuing and the checking service


@dataclass(frozen=True)
class Principal:
    kind: str
    name: str
    issuer: str
    session: str
    channel: str
    expires_at: float
    issued_at: float = 0.0
    amr: tuple[str, ...] = ()


def _private_key(seed: bytes) -> Ed25519PrivateKey:
    _, raw = nkeys.decode_seed(seed)
    return Ed25519PrivateKey.from_private_bytes(bytes(raw))


class PrincipalIssuer:
    """Signs principals as ``issuer`` (credentials for agents, operator at the CLI)."""

    def __init__(self, issuer: str, seed: bytes, clock: Clock = SYSTEM_CLOCK) -> None:
        if issuer not in ISSUERS:
            raise ValueError(f"{issuer!r} issues no principals")
        self.issuer = issuer
        self._key = _private_key(seed)
        self.clock = clock

    def issue(self, kind: Kind, name: str, *, channel: str, ttl_seconds: int,
              amr: tuple[str, ...] = ()) -> str:
        """``amr``: the factors the person passed; an agent's must include a second factor."""
        if kind not in ISSUERS[self.issuer]:
            raise ValueError(f"{self.issuer} does not vouch for {kind} principals")
        now = self.clock.time()
        claims = {  # iat to the millisecond: compared with the time of the agent's last reset
            "iss": self.issuer, "aud": AUDIENCE, "sub": name, "knd": kind, "chn": channel,
            "sid": secrets.token_urlsafe(12), "iat": round(now, 3), "exp": int(now) + ttl_seconds,
            "amr": list(amr),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)


class PrincipalCheck:
    """Verifies principals against the issuers' public keys (several during a rotation)."""

    def __init__(self, trusted: Mapping[str, frozenset[str]], clock: Clock = SYSTEM_CLOCK,
                 lifetimes: Mapping[str, float] | None = None) -> None:
        self.trusted = {
            issuer: [Ed25519PublicKey.from_public_bytes(public_key_bytes(k)) for k in keys]
            for issuer, keys in trusted.items()
        }
        self.clock = clock
        # The longest life an issuer gives each kind (seconds): a principal signed to live
        # longer is refused, so "short lifetimes" holds at every checking service too.
        self.lifetimes = dict(lifetimes or {})

    @classmethod
    def from_folder(cls, folder: Path, clock: Clock = SYSTEM_CLOCK,
                    lifetimes: Mapping[str, float] | None = None) -> PrincipalCheck:
        trusted: dict[str, frozenset[str]] = {}
        for issuer in ISSUERS:
            path = folder / f"{issuer}{PUBLIC_SUFFIX}"
            if path.exists():
                trusted[issuer] = frozenset(
                    line.strip() for line in path.read_text().splitlines() if line.strip()
                )
        return cls(trusted, clock, lifetimes)

    def verify(self, token: str | None, *kinds: Kind) -> Principal:
        """The principal, if genuine, unexpired and of one of ``kinds``; else a clear refusal."""
        if not token:
            raise AuthenticationFailed("Sign in first: this needs a signed-in agent.")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            issuer = str(unverified.get("iss", ""))
        except jwt.PyJWTError:
            raise AuthenticationFailed(EXPIRED) from None
        claims = None
        for key in self.trusted.get(issuer, []):
            try:
                claims = jwt.decode(
                    token, key, algorithms=[ALGORITHM], audience=AUDIENCE, issuer=issuer,
                    # times are checked below, on the service's clock, not the library's
                    options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_exp": False,
                             "verify_iat": False, "verify_nbf": False},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                raise AuthenticationFailed(EXPIRED) from None
        if claims is None:
            raise AuthenticationFailed(EXPIRED)
        now = self.clock.time()
        if not float(claims["iat"]) - CLOCK_SKEW_SECONDS <= now < float(claims["exp"]):
            raise AuthenticationFailed(EXPIRED)
        kind = str(claims.get("knd", ""))
        if kind not in ISSUERS[issuer] or kind not in kinds:
            raise NotAllowed(f"This needs a signed-in {' or '.join(kinds)}.")
        longest = self.lifetimes.get(kind)
        if longest is not None and float(claims["exp"]) - float(claims["iat"]) > longest + 1:
            raise AuthenticationFailed(EXPIRED)  # signed to outlive any sign-in we give
        passed = claims.get("amr")
        amr = tuple(str(a) for a in passed) if isinstance(passed, list) else ()
        if kind == "agent" and not SECOND_FACTORS & set(amr):  # no agent acts on a password alone
            raise AuthenticationFailed(NO_SECOND_FACTOR)
        principal = Principal(kind=kind, name=str(claims["sub"]), issuer=issuer,
                              session=str(claims.get("sid", "")), channel=str(claims.get("chn", "")),
                              expires_at=float(claims["exp"]), issued_at=float(claims["iat"]), amr=amr)
        context.authenticated(principal.name, principal.kind, session=principal.session,
                              channel=principal.channel)
        return principal


def issuer_for(settings: Settings, issuer: str, clock: Clock = SYSTEM_CLOCK) -> PrincipalIssuer:
    if not settings.nats_keys_dir:
        raise RuntimeError("REKEY_NATS_KEYS_DIR is not set: principals cannot be signed")
    seed = (Path(settings.nats_keys_dir) / f"{issuer}.nk").read_bytes().strip()
    return PrincipalIssuer(issuer, seed, clock)


OPERATOR_SECONDS = 300


def operator_principal(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> str:
    """What the operator's command line acts with: signed with the operator's own key, which
    vouches for nobody but the operator (an agent signs in through credentials)."""
    return issuer_for(settings, "operator", clock).issue(
        "operator", "operator", channel="cli", ttl_seconds=OPERATOR_SECONDS
    )


def check_for(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> PrincipalCheck:
    """Every service's check; without keys (a development bus) nothing verifies, so nothing
    that needs a principal can be done."""
    folder = Path(settings.nats_keys_dir) if settings.nats_keys_dir else None
    lifetimes = {"agent": settings.principal_minutes * 60, "operator": float(OPERATOR_SECONDS)}
    return (PrincipalCheck.from_folder(folder, clock, lifetimes) if folder
            else PrincipalCheck({}, clock, lifetimes))
