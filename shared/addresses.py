"""A keyed digest of an email address, so services can compare addresses without sharing them.

Credentials publishes the digest of the address on file with ``AccountRegistered``; ticketing
computes the digest of a requester's address and compares. The key is derived from the token
key every service already shares, so the digest is useless to anyone without it.
"""

from __future__ import annotations

import hashlib
import hmac

from shared.secrets import keyed_hash
from shared.settings import Settings

_PURPOSE = b"rekey address digest v1"


def normalise_address(address: str) -> str:
    return address.strip().lower()


def address_digest(settings: Settings, address: str) -> str:
    key = hmac.new(settings.token_key_bytes, _PURPOSE, hashlib.sha256).digest()
    return keyed_hash(key, normalise_address(address))


def same_digest(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
