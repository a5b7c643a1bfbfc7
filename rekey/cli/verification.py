"""The verification commands of ``rekey``: the authenticator, the Twilio sim, the challenge bench."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rekey.authenticator.cli import cli as authenticator_cli


def twilio_sim(
    port: Annotated[int | None, typer.Option(help="Port (default: REKEY_TWILIO_SIM_PORT)")] = None,
    host: Annotated[str, typer.Option(help="0.0.0.0 inside a container")] = "127.0.0.1",
    folder: Annotated[Path | None, typer.Option(help="Where texts and calls are kept")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Data folder (keys and settings)")] = None,
) -> None:
    """Run the local Twilio-compatible server (Messages and Calls) in the foreground."""
    import logging

    from rekey.stack.environment import settings_for
    from rekey.stack.twilio_sim import main

    settings = settings_for(data_dir)
    token = settings.twilio_auth_token.get_secret_value()
    if not token:
        typer.echo("Set REKEY_TWILIO_AUTH_TOKEN (the token the services use): `rekey up` makes one.")
        raise typer.Exit(2)
    logging.basicConfig(level=settings.log_level)
    where = folder or Path(settings.data_dir) / "twilio"
    typer.echo(f"Twilio sim on http://{host}:{port or settings.twilio_sim_port}, texts and calls in {where}")
    main(where, host, port or settings.twilio_sim_port, settings.twilio_account_sid, token)


def texts(
    data_dir: Annotated[Path | None, typer.Option(help="Data folder")] = None,
    last: Annotated[int, typer.Option(help="How many of the newest")] = 10,
) -> None:
    """The texts and calls the local Twilio sim received (what phones would get)."""
    from rekey.stack.environment import settings_for
    from shared.caught import list_calls, list_texts

    folder = Path(settings_for(data_dir).data_dir) / "twilio"
    for text in list_texts(folder)[-last:]:
        typer.echo(f"{text.created_at}  text to {text.to}: {text.body}")
    for call in list_calls(folder)[-last:]:
        typer.echo(f"{call.created_at}  call to {call.to} ({call.status}, pressed {call.pressed}): "
                   + " / ".join(call.spoken))


def bench_challenges(
    count: Annotated[int, typer.Option(help="Verifications per method")] = 200,
    store: Annotated[list[str] | None, typer.Option(help="sqlite and/or postgres")] = None,
) -> None:
    """Challenge verification latency (p50, p99) for TOTP codes and push approvals."""
    import asyncio
    import logging

    from rich.table import Table

    from rekey import terminal
    from rekey.bench.challenges import run_challenge_bench

    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(run_challenge_bench(store or ["sqlite"], count))
    table = Table("store", "method", "count", "p50 ms", "p99 ms", "max ms")
    for f in figures:
        table.add_row(f.store, f.method, str(f.count), f"{f.p50:.2f}", f"{f.p99:.2f}", f"{f.max:.2f}")
    terminal.console().print(table)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.add_typer(authenticator_cli, name="authenticator")
    app.command("twilio-sim")(twilio_sim)
    app.command("texts")(texts)
    bench.command("challenges")(bench_challenges)
