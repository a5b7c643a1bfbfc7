"""``rekey authenticator``: the reference authenticator app, the "phone" of the demo and tests.

It keeps its accounts in a local JSON file (mode 0600: it holds TOTP seeds and device private
keys, as a phone's app does), activates from a QR code's ``otpauth://`` URI, shows the current
codes, and, for accounts whose URI carried our activation parameters, registers an Ed25519
device key and answers number-matching push requests over the device API (NATS
request/reply to the verification service), signing every request with that key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.verification import push
from shared.client import RekeyClient
from shared.errors import InvalidRequest, NotFound, RekeyError


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

    def code(self, now: float | None = None) -> str:
        return pyotp.TOTP(self.secret, digits=self.digits, interval=self.period).at(
            now if now is not None else time.time()
        )

    def key(self) -> Ed25519PrivateKey:
        if not self.private_key:
            raise InvalidRequest(f"{self.label} has no device key: it only shows codes.")
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(self.private_key))

    def __repr__(self) -> str:  # never print the seed or the key
        return f"Account({self.label!r}, push={self.push_capable})"


def parse_uri(uri: str) -> tuple[Account, str | None]:
    """An account from an ``otpauth://totp/`` URI, and our activation code if it carries one."""
    parsed = urlparse(uri.strip())
    if parsed.scheme != "otpauth" or parsed.netloc != "totp":
        raise InvalidRequest("That is not an otpauth://totp/ URI from a QR code.")
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    label = unquote(parsed.path.lstrip("/"))
    issuer, _, name = label.rpartition(":")
    secret = query.get("secret", "").upper()
    try:
        base64.b32decode(secret + "=" * (-len(secret) % 8))
    except ValueError as exc:
        raise InvalidRequest("The URI's secret is not base32.") from exc
    if not secret:
        raise InvalidRequest("The URI carries no secret.")
    account = Account(
        issuer=query.get("issuer", issuer) or "unknown", account_name=name or label, secret=secret,
        digits=int(query.get("digits", 6)), period=int(query.get("period", 30)),
        method_id=query.get("rekey_method"),
    )
    return account, query.get("rekey_activation")


class Authenticator:
    def __init__(self, path: Path | str, client: RekeyClient | None = None) -> None:
        self.path = Path(path)
        self.client = client

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
                "signed_at": int(time.time()), "device_id": device_id,
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
        moment = time.time() if now is None else now
        return [(a, a.code(moment), int(a.period - moment % a.period)) for a in self.accounts()]

    def _signed(self, account: Account, purpose: str, **fields: Any) -> dict[str, Any]:
        body = {"username": account.account_name, "method_id": account.method_id,
                "device_id": account.device_id, "signed_at": int(time.time()), **fields}
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
cli = typer.Typer(help="A reference authenticator app: codes and push approvals.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
FileOption = Annotated[
    Path | None,
    typer.Option("--file", help="Accounts file (default: REKEY_AUTHENTICATOR_FILE or "
                                "<data folder>/authenticator.json)"),
]
DataDir = Annotated[Path | None, typer.Option(help="Data folder of the Rekey to talk to")]


def _file(path: Path | None, data_dir: Path | None) -> Path:
    if path:
        return path
    if os.environ.get("REKEY_AUTHENTICATOR_FILE"):
        return Path(os.environ["REKEY_AUTHENTICATOR_FILE"])
    return (data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))) / "authenticator.json"


def _run(path: Path, data_dir: Path | None, work: Any) -> Any:
    from rekey.cli import settings_for
    from shared.bus.stream import connect

    settings = settings_for(data_dir)

    async def go() -> Any:
        nc = await connect(settings.nats_url, "rekey-authenticator", attempts=4)
        try:
            return await work(Authenticator(path, RekeyClient(nc)))
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except ConnectionError as exc:
        err.print(f"[red]Rekey is not reachable ({escape(str(exc))}).[/]")
        raise typer.Exit(2) from None
    except RekeyError as exc:
        err.print(f"[red]{escape(exc.message)}[/]")
        raise typer.Exit(1) from None


@cli.command("activate")
def activate_cmd(
    uri: Annotated[str, typer.Argument(help="The otpauth:// URI the QR code holds")],
    name: Annotated[str, typer.Option(help="This device's name")] = "rekey authenticator",
    file: FileOption = None,
    data_dir: DataDir = None,
) -> None:
    """Add an account from a QR code's URI (and activate notifications when it offers them)."""
    path = _file(file, data_dir)
    account = _run(path, data_dir, lambda a: a.activate(uri, name))
    extra = " with notifications" if account.push_capable else " (codes only)"
    console.print(f"Added {escape(account.label)}{extra}.")


@cli.command("codes")
def codes_cmd(file: FileOption = None, data_dir: DataDir = None) -> None:
    """The current codes of every account."""
    table = Table("account", "code", "seconds left")
    for account, code, left in Authenticator(_file(file, data_dir)).codes():
        table.add_row(escape(account.label), f"{code[:3]} {code[3:]}", str(left))
    console.print(table)


@cli.command("pending")
def pending_cmd(file: FileOption = None, data_dir: DataDir = None) -> None:
    """Sign-in requests waiting for this device, with where they came from."""
    items = _run(_file(file, data_dir), data_dir, lambda a: a.pending())
    if not items:
        console.print("No sign-in requests are waiting.")
        return
    table = Table("request", "account", "application", "requested at", "from", "expires")
    for i in items:
        table.add_row(*(escape(str(i.get(k) or "")) for k in (
            "challenge_id", "label", "application", "requested_at", "location", "expires_at")))
    console.print(table)


@cli.command("approve")
def approve_cmd(
    challenge_id: str,
    number: Annotated[str | None, typer.Option(help="The number the sign-in screen shows")] = None,
    file: FileOption = None,
    data_dir: DataDir = None,
) -> None:
    """Approve a sign-in request by typing the number shown on the sign-in screen."""
    typed = number or typer.prompt("Enter the number shown to sign in")
    result = _run(_file(file, data_dir), data_dir, lambda a: a.approve(challenge_id, typed))
    console.print(f"[green]{escape(result['message'])}[/]")


@cli.command("deny")
def deny_cmd(challenge_id: str, file: FileOption = None, data_dir: DataDir = None) -> None:
    """"This wasn't me": deny a sign-in request (the security team is told)."""
    result = _run(_file(file, data_dir), data_dir, lambda a: a.deny(challenge_id))
    console.print(escape(result["message"]))


@cli.command("list")
def list_cmd(file: FileOption = None, data_dir: DataDir = None) -> None:
    """The accounts on this authenticator."""
    table = Table("account", "notifications", "device")
    for account in Authenticator(_file(file, data_dir)).accounts():
        table.add_row(escape(account.label), "yes" if account.push_capable else "no",
                      account.device_id or "")
    console.print(table)
