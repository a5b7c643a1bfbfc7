"""Number matching for push: the device proves possession of its Ed25519 key by signing.

A device signs the canonical JSON of what it says (``signed_message``); the service checks the
signature with the public key the device registered at activation. The signed statement names
the challenge, the device, the answer and a fresh nonce, so it cannot be replayed elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import InvalidRequest
from shared.secrets import matching_number


def signed_message(purpose: str, fields: dict[str, Any]) -> bytes:
    return json.dumps({"purpose": purpose, **fields}, sort_keys=True, separators=(",", ":")).encode()


def sign(private_key: Ed25519PrivateKey, purpose: str, fields: dict[str, Any]) -> str:
    return base64.b64encode(private_key.sign(signed_message(purpose, fields))).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise InvalidRequest("public_key: not a base64 Ed25519 public key") from exc


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def fingerprint(public_key: str) -> str:
    return "SHA256:" + hashlib.sha256(base64.b64decode(public_key)).hexdigest()[:16]


def signature_ok(public_key: str, signature: str, purpose: str, fields: dict[str, Any]) -> bool:
    try:
        key = load_public_key(public_key)
        key.verify(base64.b64decode(signature, validate=True), signed_message(purpose, fields))
    except (InvalidSignature, ValueError, InvalidRequest):
        return False
    return True


def new_number(digits: int) -> str:
    """The number the web shows and the person types on the device."""
    return matching_number(digits)


def new_code(digits: int = 6) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(digits))
