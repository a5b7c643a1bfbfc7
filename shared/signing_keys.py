"""Ed25519 keys from the bus key folder: a service's own NKEY seed, the others' public keys.

Signed events, principals and sign-in tokens all use the issuing service's bus NKEY (an
Ed25519 key). Verifiers read ``<keys dir>/<issuer>.pub``, one key per line, so a rotation
lists the old and the new key until nothing signed by the old is still in use.
"""

from __future__ import annotations

from pathlib import Path

import nkeys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.bus.signing import PUBLIC_SUFFIX, public_key_bytes


def private_key(seed: bytes) -> Ed25519PrivateKey:
    """The Ed25519 key inside an NKEY seed (``SU...``)."""
    _, raw = nkeys.decode_seed(seed)
    return Ed25519PrivateKey.from_private_bytes(bytes(raw))


def own_key(folder: Path, identity: str) -> Ed25519PrivateKey:
    return private_key((folder / f"{identity}.nk").read_bytes().strip())


def public_keys(folder: Path, identity: str) -> list[Ed25519PublicKey]:
    """The keys ``identity`` signs with, as its public-key file lists them (none if absent)."""
    path = folder / f"{identity}{PUBLIC_SUFFIX}"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [Ed25519PublicKey.from_public_bytes(public_key_bytes(k)) for k in lines if k]
