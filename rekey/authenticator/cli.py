"""``rekey authenticator``: the reference authenticator app's commands (accounts in a local file)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rekey import terminal
from rekey.authenticator.app import Authenticator
from rekey.remote import over_the_bus
from rekey.stack.environment import settings_for

cli = typer.Typer(help="A reference authenticator app: codes and push approvals.", no_args_is_help=True)
console = terminal.console()
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
    return over_the_bus(
        settings_for(data_dir), "rekey-authenticator", lambda client: work(Authenticator(path, client)),
        identity="device",
    )


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
