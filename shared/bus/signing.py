"""Events that cannot be forged: a service's relay signs what it publishes, consumers check.

Subject permissions already keep every other identity from publishing ``rekey.events.<svc>``;
the signature is the second lock, so that an event that slipped in anyway (a server
misconfigured, an over-broad operator key, a message copied in by hand) is refused and logged,
never acted on. The signature is Ed25519 over the exact bytes published plus their subject,
carried in headers, so no canonical JSON is needed. The signing key is the service's bus NKEY
(itself an Ed25519 key): the identity that may publish a service's events is the one that
signs them. Consumers trust the public keys in ``<keys dir>/<service>.pub``, one per line, so
a rotation lists the old and the new key until the stream holds no event signed by the old.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nkeys
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from shared.settings import SERVICES, Settings

log = logging.getLogger(__name__)

SIGNER_HEADER = "Rekey-Signer"
SIGNATURE_HEADER = "Rekey-Signature"
PUBLIC_SUFFIX = ".pub"


class ForgedEvent(Exception):
    """A message on an event subject that its owning service did not sign."""


def signed_bytes(subject: str, data: bytes) -> bytes:
    """What a signature covers: the subject too, so a signed body cannot move subjects."""
    return subject.encode() + b"\n" + data


def public_key_bytes(public_key: str) -> bytes:
    """The raw Ed25519 key inside an NKEY user public key (``U...``), its checksum checked."""
    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("not an NKEY public key") from None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        raise ValueError("not an NKEY user public key")
    if nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        raise ValueError("NKEY public key checksum mismatch")
    return raw[1:33]


@functools.lru_cache(maxsize=256)
def _verify_key(public_key: str) -> VerifyKey:
    """A signer's key parsed once (its checksum checked), in libsodium's form: half OpenSSL's
    time to verify here, and every consumer checks every event, every service every request."""
    return VerifyKey(public_key_bytes(public_key))


def signature_holds(signer: str, signature: str, subject: str, data: bytes) -> bool:
    """Whether ``signature`` (base64) is ``signer``'s over ``subject`` and ``data``; a key or
    signature that does not even parse does not hold."""
    try:
        _verify_key(signer).verify(signed_bytes(subject, data),
                                   base64.b64decode(signature, validate=True))
    except (ValueError, binascii.Error, BadSignatureError):
        return False
    return True


def listed_keys(path: Path) -> frozenset[str]:
    """The NKEY public keys a ``.pub`` file lists, one per line (none if it is absent)."""
    if not path.exists():
        return frozenset()
    return frozenset(line.strip() for line in path.read_text().splitlines() if line.strip())


@dataclass(frozen=True)
class NkeySigner:
    """Signs with one identity's NKEY: a service's published events, a caller's requests
    (:mod:`shared.bus.callers`)."""

    keypair: nkeys.KeyPair

    @classmethod
    def from_seed(cls, seed: bytes) -> NkeySigner:
        return cls(nkeys.from_seed(seed))

    @property
    def public_key(self) -> str:
        return self.keypair.public_key.decode()

    def headers(self, subject: str, data: bytes) -> dict[str, str]:
        signature = self.keypair.sign(signed_bytes(subject, data))
        return {
            SIGNER_HEADER: self.public_key,
            SIGNATURE_HEADER: base64.b64encode(signature).decode(),
        }


class SignatureCheck:
    """The public keys each service signs with; refuses whatever they did not sign."""

    def __init__(self, trusted: Mapping[str, frozenset[str]]) -> None:
        self.trusted = {source: frozenset(keys) for source, keys in trusted.items()}

    @classmethod
    def from_folder(cls, folder: Path) -> SignatureCheck:
        return cls({service: listed_keys(folder / f"{service}{PUBLIC_SUFFIX}")
                    for service in SERVICES})  # a missing file lists no key

    def check(self, source: str, subject: str, data: bytes,
              headers: Mapping[str, str] | None) -> None:
        headers = headers or {}
        signer = headers.get(SIGNER_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signer or not signature:
            raise ForgedEvent("unsigned")
        if signer not in self.trusted.get(source, frozenset()):
            raise ForgedEvent(f"signed by {signer[:12]}..., not a key of {source}")
        if not signature_holds(signer, signature, subject, data):
            raise ForgedEvent("bad signature")


def signer_for(settings: Settings, service: str) -> NkeySigner | None:
    """The service's signer, or None on a bus without keys (a development server)."""
    if not settings.nats_keys_dir:
        return None
    seed = (Path(settings.nats_keys_dir) / f"{service}.nk").read_bytes().strip()
    return NkeySigner.from_seed(seed)


def check_for(settings: Settings) -> SignatureCheck | None:
    """The signature check consumers apply, or None on a bus without keys."""
    if not settings.nats_keys_dir:
        log.warning("REKEY_NATS_KEYS_DIR is not set: events are neither signed nor checked")
        return None
    return SignatureCheck.from_folder(Path(settings.nats_keys_dir))
