"""Each service's evidence key: an Ed25519 seed kept with the bus keys, never in a store.

``<keys dir>/<service>.heads.nk`` (0600) is an NKEY seed like the bus seeds. It signs the
service's Merkle tree heads (:mod:`shared.evidence.heads`) and, through HKDF, keys the MAC that
binds every stored row to its place (:mod:`shared.binding`). ``<service>.heads.pub`` lists the
public keys an auditor checks heads with. It is a key of its own, not the bus NKEY: bus keys
rotate, and a row written years ago must still prove its place.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from shared.settings import Settings
from shared.signing_keys import private_key, public_keys

HEADS_SEED_SUFFIX = ".heads.nk"
HEADS_IDENTITY_SUFFIX = ".heads"  # <service>.heads.pub via shared.signing_keys.public_keys


def heads_seed_file(folder: Path, service: str) -> Path:
    return folder / f"{service}{HEADS_SEED_SUFFIX}"


class MissingEvidenceKey(RuntimeError):
    """The service's evidence seed is not where the settings say the keys are."""


def keys_folder(settings: Settings) -> Path | None:
    return Path(settings.nats_keys_dir) if settings.nats_keys_dir else None


def heads_private_key(folder: Path, service: str) -> Ed25519PrivateKey:
    path = heads_seed_file(folder, service)
    if not path.exists():
        raise MissingEvidenceKey(f"no evidence key for {service}: {path} is missing "
                                 "(`rekey up` or `rekey bus init` makes it)")
    return private_key(path.read_bytes().strip())


def heads_public_keys(folder: Path, service: str) -> list[Ed25519PublicKey]:
    return public_keys(folder, f"{service}{HEADS_IDENTITY_SUFFIX}")


def row_key(private: Ed25519PrivateKey) -> bytes:
    """The MAC key binding rows to their place, derived from the seed (never stored)."""
    from cryptography.hazmat.primitives import serialization

    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"rekey stored row binding v1").derive(raw)


def service_row_key(settings: Settings, service: str) -> bytes | None:
    """The row key of ``service``, or None on a system without bus keys (no binding then)."""
    folder = keys_folder(settings)
    if folder is None or not heads_seed_file(folder, service).exists():
        return None
    return row_key(heads_private_key(folder, service))
