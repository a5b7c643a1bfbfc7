"""TOTP (RFC 6238) with pyotp: 160-bit seeds, 6 digits, 30 s, one step either side, no replay."""

from __future__ import annotations

import time

import pyotp

DIGITS = 6
PERIOD = 30
WINDOW = 1


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


def matching_step(seed: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code equals ``code`` within the window, or None."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == DIGITS):
        return None
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=PERIOD)
    now = time.time() if now is None else now
    step = int(now // PERIOD)
    for candidate in range(step - WINDOW, step + WINDOW + 1):
        if pyotp.utils.strings_equal(totp.generate_otp(candidate), code):
            return candidate
    return None
