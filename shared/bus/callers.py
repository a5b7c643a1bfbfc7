"""Who is calling: every request is signed with its caller's bus key, and a service checks it.

A request's reply inbox names its caller (``_INBOX_<identity>``, :mod:`shared.bus.connection`),
and a service records that identity as the caller of what it does. But nats-server checks
the subjects a client subscribes to, not the reply subject it names on a request (nats-server
discussion #8924): a compromised portal could name the operator's inbox and be recorded as
the operator's command line. So each request carries a signature made with the caller's NKEY
seed (the key it connected with) over the subject, the body and the context headers a
service records (``Rekey-Channel``, ``Rekey-Session``: :func:`request_material`), in the same
headers signed events use (:mod:`shared.bus.signing`), and a service acts on a request only
when the key is one that ``<keys dir>/<identity>.pub`` lists for the identity the inbox names.
Anything else is answered ``caller_unverified`` and nothing is done.

No timestamp or nonce: only the caller and the service answering ever see a signed request
(subject permissions, TLS), the signature binds the subject (a body cannot move to another
command or service), and its answer goes only to the signer's own inbox. Checked with
libsodium (PyNaCl, which nkeys signs with): twice as fast as OpenSSL's Ed25519 here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import weakref
from collections.abc import Mapping
from pathlib import Path

from nats.aio.client import Client

from shared.bus.identities import inbox_prefix
from shared.bus.signing import (
    PUBLIC_SUFFIX,
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    NkeySigner,
    listed_keys,
    signature_holds,
)
from shared.context import CHANNEL_HEADER, SESSION_HEADER
from shared.errors import CallerUnverified
from shared.settings import Settings

log = logging.getLogger(__name__)

# The context headers a request's signature covers (what a service records of its caller).
SIGNED_CONTEXT = (CHANNEL_HEADER, SESSION_HEADER)

INBOX_START = inbox_prefix("")  # "_INBOX_": what follows, up to the first dot, is the identity

# The key each connection made by shared.bus.connection.connect signs its requests with.
_signers: weakref.WeakKeyDictionary[Client, NkeySigner] = weakref.WeakKeyDictionary()


def sign_requests(nc: Client, signer: NkeySigner) -> None:
    _signers[nc] = signer


def request_material(data: bytes, headers: Mapping[str, str] | None) -> bytes:
    """What a request's signature covers beside its subject: the body and the context headers
    it states (its channel and session reference, which the service records and the channel
    rules read), so none can be changed, added or dropped after signing. The body's digest
    comes first: of fixed length, no byte can move between the body and the headers."""
    stated = {name: headers[name] for name in SIGNED_CONTEXT if headers and name in headers}
    return (hashlib.sha256(data).digest()
            + json.dumps(stated, sort_keys=True, separators=(",", ":")).encode())


def signed_headers(nc: Client, subject: str, data: bytes,
                   stated: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers that sign a request ``nc`` sends with the context headers ``stated``
    (none on a bus without keys)."""
    signer = _signers.get(nc)
    return signer.headers(subject, request_material(data, stated)) if signer is not None else {}


def claimed_caller(reply: str | None) -> str | None:
    """The identity a reply inbox names (``_INBOX_<identity>.<token>``), if any."""
    if not reply or not reply.startswith(INBOX_START):
        return None
    return reply[len(INBOX_START):].split(".", 1)[0] or None


class CallerCheck:
    """The callers' public keys, read from the key folder; a file is read again when it
    changes, so a rotated key (``rekey bus init --rotate``) is trusted without a restart."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._keys: dict[str, tuple[int, frozenset[str]]] = {}  # identity: (mtime, keys)

    def caller(self, subject: str, data: bytes, reply: str | None,
               headers: Mapping[str, str] | None) -> str:
        """The verified identity of the caller, or :class:`CallerUnverified`."""
        identity = claimed_caller(reply)
        if identity is None:
            raise CallerUnverified("A request must name its caller's own reply inbox.")
        headers = headers or {}
        signer = headers.get(SIGNER_HEADER, "")
        signature = headers.get(SIGNATURE_HEADER, "")
        if not signer or not signature:
            raise CallerUnverified(f"This request is not signed by {identity}'s bus key, so "
                                   "nothing was done.")
        keys = self.keys(identity)
        if not keys:
            raise CallerUnverified(f"This service has no public key for {identity} "
                                   f"({identity}{PUBLIC_SUFFIX} in its bus keys folder), so it "
                                   "acts on none of its requests.")
        if signer not in keys:
            raise CallerUnverified(f"This request is signed with a key that is not "
                                   f"{identity}'s, so nothing was done.")
        if not signature_holds(signer, signature, subject, request_material(data, headers)):
            raise CallerUnverified("This request's signature does not match it, so nothing "
                                   "was done.")
        return identity

    def keys(self, identity: str) -> frozenset[str]:
        """The keys ``identity`` signs with, as ``<identity>.pub`` lists them now."""
        if "." in identity or "/" in identity or not identity.isprintable():
            return frozenset()  # not an identity's name (e.g. "ticketing.heads")
        path = self.folder / f"{identity}{PUBLIC_SUFFIX}"
        try:
            changed = os.stat(path).st_mtime_ns
            cached = self._keys.get(identity)
            if cached is None or cached[0] != changed:
                cached = self._keys[identity] = (changed, listed_keys(path))
        except OSError:
            return frozenset()
        return cached[1]


def caller_check_for(settings: Settings) -> CallerCheck | None:
    """The check a service applies to requests, or None on a bus without keys (a development
    server without authentication, where the inbox's name is all there is)."""
    if not settings.nats_keys_dir:
        log.warning("REKEY_NATS_KEYS_DIR is not set: callers are taken at their inbox's word")
        return None
    return CallerCheck(Path(settings.nats_keys_dir))
