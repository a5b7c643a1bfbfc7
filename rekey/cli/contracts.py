"""``rekey contracts``: the bus's contracts as documents generated from the code."""

from __future__ import annotations

from typing import Annotated

import typer

contracts = typer.Typer(help="The bus's public contracts, generated from the code.",
                        no_args_is_help=True)


@contracts.command("asyncapi")
def asyncapi_command(
    write: Annotated[bool, typer.Option(help="Write docs/asyncapi.json instead of printing")] = False,
) -> None:
    """An AsyncAPI 3 document: every event subject and command endpoint with its schema."""
    from rekey.asyncapi import DOCUMENT, text

    generated = text()
    if not write:
        typer.echo(generated, nl=False)
        return
    current = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    DOCUMENT.write_text(generated)
    typer.echo("docs/asyncapi.json is current." if current == generated else
               "docs/asyncapi.json updated.")
