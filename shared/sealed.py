"""Facts on file sealed for the services that act on them (a phone number, an address).

Credentials keeps an account's phone number and manager's address; ticketing calls that number
(through verification) and mails that manager. The facts travel in ``AccountRegistered`` sealed
with AES-GCM under a key derived from ``REKEY_VAULT_KEY`` (which the services share and the bus
does not have), bound to the account and the kind of fact: a sealed value copied to another
account or another field does not open. Masked forms travel beside them for people to read.

The seal is deterministic (a synthetic nonce: an HMAC of the context and the value, as in SIV),
because the sealed copy is made each time the event is published or read back: the same event
must give the same bytes, or an auditor comparing the bus's copy with the stores' sees a
difference that is not there. A nonce repeats only with the same context and value, that is
for the very same ciphertext, so it reveals only that a fact is unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from shared.application import normalise_username
from shared.secrets import SecretBox
from shared.settings import Settings

_PURPOSE = b"rekey facts on file v1"
_NONCE_PURPOSE = b"rekey facts on file nonce v1"


def _box(settings: Settings) -> SecretBox:
    return SecretBox(hmac.new(settings.vault_key_bytes, _PURPOSE, hashlib.sha256).digest())


def _context(username: str, kind: str) -> str:
    return f"{kind}:{normalise_username(username)}"


def seal_fact(settings: Settings, username: str, kind: str, value: str) -> str:
    context = _context(username, kind)
    nonce_key = hmac.new(settings.vault_key_bytes, _NONCE_PURPOSE, hashlib.sha256).digest()
    nonce = hmac.new(nonce_key, f"{context}\0{value}".encode(), hashlib.sha256).digest()[:12]
    sealed = _box(settings).seal(value.encode(), context, nonce=nonce)
    return base64.urlsafe_b64encode(sealed).decode()


def open_fact(settings: Settings, username: str, kind: str, sealed: str) -> str:
    """The fact in clear; raises (``cryptography.exceptions.InvalidTag``) when it was sealed
    for another account or kind, or altered."""
    raw = base64.urlsafe_b64decode(sealed.encode())
    return _box(settings).open(raw, _context(username, kind)).decode()
