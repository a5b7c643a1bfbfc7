"""TOTP (RFC 6238) with pyotp: 160-bit seeds, 6 digits, 30 s, one step either side, no replay."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlparse

import pyotp

# Every code a person types is this long: the app's codes and those sent (the domain's
# CODE_DIGITS). Defined here, the lighter module, so credentials (agents' apps) need not
# import the enrolment aggregate (about 36 ms of its start).
DIGITS = 6
PERIOD = 30
WINDOW = 1
# Extra parameters of our URIs: other apps ignore them; the reference app activates push with them.
METHOD_PARAMETER = "rekey_method"
ACTIVATION_PARAMETER = "rekey_activation"


def new_seed() -> str:
    """A base32 seed of 160 bits from the OS's secure random source."""
    return pyotp.random_base32(length=32)


def provisioning_uri(seed: str, account_name: str, issuer: str) -> str:
    return pyotp.TOTP(seed, digits=DIGITS, interval=PERIOD).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def readable_key(seed: str) -> str:
    """The key shown under "Can't scan image?", in groups of four."""
    return " ".join(seed[i : i + 4] for i in range(0, len(seed), 4)).lower()


def matching_step(seed: str, code: str, now: float) -> int | None:
    """The time step whose code equals ``code`` within the window around ``now``, or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == DIGITS):
        return None
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=PERIOD)
    step = int(now // PERIOD)
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            return candidate
    return None


@dataclass(frozen=True)
class KeyUri:
    """What a QR code's ``otpauth://totp/`` URI carries: the key-URI fields and our extras."""

    secret: str = field(repr=False)
    issuer: str
    account_name: str
    digits: int = DIGITS
    period: int = PERIOD
    method_id: str | None = None
    activation: str | None = field(default=None, repr=False)


def parse_uri(uri: str) -> KeyUri:
    """The one reading of an ``otpauth://totp/`` URI (pyotp's); ``ValueError`` says why it is not one."""
    uri = uri.strip()
    if urlparse(uri).netloc != "totp":
        raise ValueError("not an otpauth://totp/ URI")
    otp = pyotp.parse_uri(uri)
    secret = otp.secret.upper()
    try:
        base64.b32decode(secret + "=" * (-len(secret) % 8))
    except ValueError as exc:
        raise ValueError("the secret is not base32") from exc
    extras = dict(parse_qsl(urlparse(uri).query))
    return KeyUri(
        secret=secret, issuer=otp.issuer or "unknown", account_name=otp.name, digits=otp.digits,
        period=getattr(otp, "interval", PERIOD), method_id=extras.get(METHOD_PARAMETER),
        activation=extras.get(ACTIVATION_PARAMETER),
    )
