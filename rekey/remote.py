"""How a ``rekey`` command talks to a running Rekey: one bus connection for the command, and a
failure as one red line on stderr and an exit code (2: not reachable, 1: refused)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from rich.markup import escape

from rekey import terminal
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.errors import RekeyError
from shared.settings import Settings

T = TypeVar("T")


def over_the_bus(
    settings: Settings,
    client_name: str,
    work: Callable[[RekeyClient], Awaitable[T]],
    not_reachable: str = "Rekey is not reachable ({}).",
    identity: str = "operator",
) -> T:
    """``work`` with a client on the bus as ``identity``; ``not_reachable`` is the message,
    ``{}`` the reason."""

    async def go() -> T:
        nc = await connect(settings, identity, name=client_name, attempts=4)
        try:
            return await work(RekeyClient(nc))
        finally:
            await nc.close()

    err = terminal.console(stderr=True)
    try:
        return asyncio.run(go())
    except ConnectionError as exc:
        err.print(f"[red]{not_reachable.format(escape(str(exc)))}[/]")
        raise typer.Exit(2) from None
    except RekeyError as exc:
        err.print(f"[red]{escape(exc.message)}[/]")
        raise typer.Exit(1) from None
