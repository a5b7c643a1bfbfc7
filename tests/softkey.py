"""A software security key for tests on the bus: makes the WebAuthn answers a browser would pass
on (attestation "none", ES256), for the origin the test says, so tests can also forge them."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

FLAGS_UP_UV = 0x01 | 0x04
FLAG_AT = 0x40


def _b64(data: bytes) -> str:
    return bytes_to_base64url(data)


@dataclass
class SoftKey:
    origin: str
    rp_id: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    sign_count: int = 0

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})

    def _client_data(self, kind: str, options: dict[str, Any], origin: str | None) -> bytes:
        return json.dumps({"type": kind, "challenge": options["challenge"],
                           "origin": origin or self.origin, "crossOrigin": False}).encode()

    def create(self, options_json: str, origin: str | None = None) -> str:
        """The answer to ``navigator.credentials.create(options)``, as the page posts it."""
        options = json.loads(options_json)
        client_data = self._client_data("webauthn.create", options, origin)
        attested = (b"\0" * 16 + struct.pack(">H", len(self.credential_id)) + self.credential_id
                    + self._cose_key())
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([FLAGS_UP_UV | FLAG_AT])
                     + struct.pack(">I", self.sign_count) + attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return json.dumps({
            "id": _b64(self.credential_id), "rawId": _b64(self.credential_id), "type": "public-key",
            "response": {"clientDataJSON": _b64(client_data), "attestationObject": _b64(attestation)},
        })

    def get(self, options_json: str, origin: str | None = None, *, key: Any = None,
            count: int | None = None) -> str:
        """The answer to ``navigator.credentials.get(options)``; ``key`` signs instead (a forger)."""
        options = json.loads(options_json)
        self.sign_count = self.sign_count + 1 if count is None else count
        client_data = self._client_data("webauthn.get", options, origin)
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([FLAGS_UP_UV])
                     + struct.pack(">I", self.sign_count))
        signature = (key or self.key).sign(auth_data + hashlib.sha256(client_data).digest(),
                                           ec.ECDSA(hashes.SHA256()))
        return json.dumps({
            "id": _b64(self.credential_id), "rawId": _b64(self.credential_id), "type": "public-key",
            "response": {"clientDataJSON": _b64(client_data), "authenticatorData": _b64(auth_data),
                         "signature": _b64(signature), "userHandle": None},
        })


__all__ = ["SoftKey", "base64url_to_bytes"]
