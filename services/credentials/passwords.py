"""Password hashing (argon2id, OWASP parameters), temporary passwords and the new-password rules."""

from __future__ import annotations

import secrets
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import InvalidRequest

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# No look-alikes (0/O, 1/l/I, 5/S, 2/Z, 8/B): the person types it from an email.
TEMPORARY_ALPHABET = "abcdefghjkmnpqrstuvwxyzACDEFGHJKMNPQRTUVWXY34679"
TEMPORARY_LENGTH = 16
MIN_LENGTH = 15
MAX_LENGTH = 64

# Equal work for unknown usernames, so timing does not tell which accounts exist.
DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


def normalise(password: str) -> str:
    return unicodedata.normalize("NFC", password)


def hash_password(password: str) -> str:
    return HASHER.hash(normalise(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return HASHER.verify(password_hash or DUMMY_HASH, normalise(password)) and bool(
            password_hash
        )
    except (VerificationError, InvalidHashError):
        return False


def new_temporary_password() -> str:
    return "".join(secrets.choice(TEMPORARY_ALPHABET) for _ in range(TEMPORARY_LENGTH))


def check_new_password(password: str, *, username: str, context: tuple[str, ...] = ()) -> None:
    """NIST SP 800-63B-4: length only, no composition rules, no context words."""
    password = normalise(password)
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(f"Choose a password of at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"Choose a password of at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    local = username.split("@")[0].lower()
    for word in (local, *(w.lower() for w in context)):
        if len(word) >= 4 and word in lowered:
            raise InvalidRequest("Your password must not contain your username or our name.")
    if len(set(password)) < 4:
        raise InvalidRequest("Choose a password that is not one character repeated.")
