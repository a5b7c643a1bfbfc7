"""``rekey authenticator``: the reference authenticator app, the "phone" of the demo and tests.

It keeps its accounts in a local JSON file (mode 0600: it holds TOTP seeds and device private
keys, as a phone's app does), activates from a QR code's ``otpauth://`` URI, shows the current
codes, and, for accounts whose URI carried our activation parameters, registers an Ed25519
device key and answers number-matching push requests over the device API (NATS
request/reply to the verification service), signing every request with that key.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyotp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from services.verification import push, totp
from shared.client import RekeyClient
from shared.clock import SYSTEM_CLOCK, Clock
from shared.errors import InvalidRequest, NotFound


@dataclass
class Account:
    issuer: str
    account_name: str
    secret: str
    digits: int = 6
    period: int = 30
    method_id: str | None = None
    device_id: str | None = None
    private_key: str | None = None  # base64 raw Ed25519 seed, only on this "phone"

    @property
    def label(self) -> str:
        return f"{self.issuer}: {self.account_name}"

    @property
    def push_capable(self) -> bool:
        return bool(self.device_id and self.private_key and self.method_id)

    def code(self, now: float) -> str:
        """The code at ``now`` (seconds since the epoch, on the phone's clock)."""
        return pyotp.TOTP(self.secret, digits=self.digits, interval=self.period).at(now)

    def key(self) -> Ed25519PrivateKey:
        if not self.private_key:
            raise InvalidRequest(f"{self.label} has no device key: it only shows codes.")
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(self.private_key))

    def __repr__(self) -> str:  # never print the seed or the key
        return f"Account({self.label!r}, push={self.push_capable})"


def parse_uri(uri: str) -> tuple[Account, str | None]:
    """An account from an ``otpauth://totp/`` URI, and our activation code if it carries one."""
    try:
        key = totp.parse_uri(uri)
    except ValueError as exc:
        raise InvalidRequest(f"That is not a usable otpauth://totp/ URI from a QR code: {exc}.") from None
    account = Account(
        issuer=key.issuer, account_name=key.account_name, secret=key.secret, digits=key.digits,
        period=key.period, method_id=key.method_id,
    )
    return account, key.activation


class Authenticator:
    def __init__(self, path: Path | str, client: RekeyClient | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        """``clock``: the phone's time, for its codes and the ``signed_at`` of what it signs
        (a test gives the services' clock, so moving time moves the phone's too)."""
        self.path = Path(path)
        self.client = client
        self.clock = clock

    # --- the file ----------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        if not self.path.exists():
            return []
        data = json.loads(self.path.read_text())
        return [Account(**a) for a in data.get("accounts", [])]

    def _save(self, accounts: list[Account]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.part")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"accounts": [asdict(a) for a in accounts]}, file, indent=2)
        os.replace(temporary, self.path)

    def _api(self) -> RekeyClient:
        if self.client is None:
            raise RuntimeError("this authenticator has no connection to Rekey")
        return self.client

    # --- activation --------------------------------------------------------------------------
    async def activate(self, uri: str, device_name: str = "rekey authenticator") -> Account:
        """Add the account; with our activation parameters, also register a device key."""
        account, activation = parse_uri(uri)
        if activation and account.method_id:
            key = Ed25519PrivateKey.generate()
            device_id = f"d-{secrets.token_hex(8)}"
            fields = {
                "username": account.account_name, "method_id": account.method_id,
                "signed_at": int(self.clock.time()), "device_id": device_id,
                "activation_code": activation, "public_key": push.public_key_text(key),
                "device_name": device_name,
            }
            await self._api().call(
                "verification", "device_activate", **fields,
                signature=push.sign(key, "activate", fields),
            )
            account.device_id = device_id
            account.private_key = base64.b64encode(
                key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            ).decode()
        accounts = [a for a in self.accounts() if a.label != account.label]
        self._save([*accounts, account])
        return account

    # --- codes and push ----------------------------------------------------------------------
    def codes(self, now: float | None = None) -> list[tuple[Account, str, int]]:
        moment = self.clock.time() if now is None else now
        return [(a, a.code(moment), int(a.period - moment % a.period)) for a in self.accounts()]

    def _signed(self, account: Account, purpose: str, **fields: Any) -> dict[str, Any]:
        body = {"username": account.account_name, "method_id": account.method_id,
                "device_id": account.device_id, "signed_at": int(self.clock.time()), **fields}
        return {**body, "signature": push.sign(account.key(), purpose, body)}

    async def pending(self) -> list[dict[str, Any]]:
        """Pending sign-in requests of every push-capable account, with their context."""
        found = []
        for account in self.accounts():
            if not account.push_capable:
                continue
            listed = await self._api().call(
                "verification", "device_pending", **self._signed(account, "pending")
            )
            found += [{**item, "label": account.label} for item in listed]
        return found

    def response(self, account: Account, challenge_id: str, decision: str,
                 number: str | None = None) -> dict[str, Any]:
        """A signed answer (exposed so tests can replay one)."""
        return self._signed(account, "respond", challenge_id=challenge_id, decision=decision,
                            number=number, nonce=secrets.token_hex(16))

    async def send(self, response: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._api().call("verification", "device_respond", **response)
        return result

    async def _account_for(self, challenge_id: str) -> Account:
        for item in await self.pending():
            if item["challenge_id"] == challenge_id:
                for account in self.accounts():
                    if account.label == item["label"]:
                        return account
        capable = [a for a in self.accounts() if a.push_capable]
        if len(capable) == 1:  # let the service say why it is not pending any more
            return capable[0]
        raise NotFound("No pending sign-in request with that id on this authenticator.")

    async def approve(self, challenge_id: str, number: str) -> dict[str, Any]:
        account = await self._account_for(challenge_id)
        return await self.send(self.response(account, challenge_id, "approve", number))

    async def deny(self, challenge_id: str) -> dict[str, Any]:
        account = await self._account_for(challenge_id)
        return await self.send(self.response(account, challenge_id, "deny"))


# --- the command line ----------------------------------------------------------------------------
