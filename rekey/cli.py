"""The ``rekey`` command: run the system, administer it, demo it, audit it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rekey.render import plain
from shared.errors import RekeyError
from shared.settings import Settings

app = typer.Typer(
    help="Rekey: the help-desk MFA reset, event-sourced.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts = typer.Typer(help="Portal and help-desk accounts.", no_args_is_help=True)
tickets = typer.Typer(help="Reset tickets (the help desk's view).", no_args_is_help=True)
audit = typer.Typer(help="Auditor tools: histories rebuilt from the event stores.", no_args_is_help=True)
app.add_typer(accounts, name="accounts")
app.add_typer(tickets, name="tickets")
bench = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(audit, name="audit")
app.add_typer(bench, name="bench")

console = Console()
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option(help="Data folder (default: REKEY_DATA_DIR or .rekey)")]


def settings_for(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, plus the keys and URLs `rekey up` wrote for this folder."""
    from rekey.stack import load_env_file

    folder = data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))
    for key, value in load_env_file(folder).items():
        os.environ.setdefault(key, value)
    os.environ["REKEY_DATA_DIR"] = str(folder)
    return Settings()


def call(settings: Settings, service: str, command: str, **payload: Any) -> Any:
    from shared.bus.stream import connect
    from shared.client import RekeyClient

    async def go() -> Any:
        nc = await connect(settings.nats_url, "rekey-cli", attempts=4)
        try:
            return await RekeyClient(nc).call(service, command, **payload)
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except ConnectionError as exc:
        err.print(f"[red]Rekey is not running here ({escape(str(exc))}). Start it with `rekey up`.[/]")
        raise typer.Exit(2) from None
    except RekeyError as exc:
        err.print(f"[red]{escape(exc.message)}[/]")
        raise typer.Exit(1) from None


@app.command()
def up(
    data_dir: DataDir = None,
    nats_port: Annotated[int, typer.Option(help="Port of the embedded nats-server")] = 14222,
    smtp_port: Annotated[int, typer.Option(help="Port of the local mail sink")] = 8025,
    intake_port: Annotated[int, typer.Option(help="Port of the help desk's mail intake")] = 2525,
) -> None:
    """Start the whole system on its embedded defaults; Ctrl-C stops it."""
    from rekey.stack import Stack, prepare_environment

    folder = data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))
    env = prepare_environment(
        folder,
        REKEY_NATS_URL=os.environ.get("REKEY_NATS_URL", f"nats://127.0.0.1:{nats_port}"),
        REKEY_SMTP_PORT=str(smtp_port),
        REKEY_PORTAL_DEV_PAGES=os.environ.get("REKEY_PORTAL_DEV_PAGES", "true"),
        REKEY_INTAKE_PORT=os.environ.get("REKEY_INTAKE_PORT", str(intake_port)),
    )
    os.environ.update(env)
    settings = Settings()
    stack = Stack(settings, env=env, portal=True)
    console.print(f"Starting Rekey in {folder.resolve()} ...")
    with stack:
        console.print(f"[green]Rekey is up.[/] NATS {settings.nats_url}, mail sink "
                      f"127.0.0.1:{settings.smtp_port} (read it with `rekey mail`), "
                      f"stores in {folder.resolve()}, logs in {folder.resolve() / 'logs'}")
        console.print(f"[green]Portal:[/] {stack.portal_url}  help-desk console: "
                      f"{stack.portal_url}console"
                      + (f"  caught mail: {stack.portal_url}dev/mail  texts and calls: "
                         f"{stack.portal_url}dev/phone" if settings.portal_dev_pages else ""))
        console.print(f"[green]Help-desk mail intake:[/] write to {settings.helpdesk_address} "
                      f"via SMTP 127.0.0.1:{stack.intake_port}")
        console.print("Try `rekey demo` in another terminal. Ctrl-C stops everything.")
        (folder / "rekey.pid").write_text(str(os.getpid()))
        try:
            signals = {signal.SIGINT, signal.SIGTERM}
            signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # after the children started
            signal.sigwait(signals)
        finally:
            (folder / "rekey.pid").unlink(missing_ok=True)
            console.print("Stopping Rekey ...")


@app.command()
def down(data_dir: DataDir = None) -> None:
    """Stop a `rekey up` running for this data folder."""
    folder = data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))
    pid_file = folder / "rekey.pid"
    if not pid_file.exists():
        err.print("Rekey is not running from this folder.")
        raise typer.Exit(1)
    os.kill(int(pid_file.read_text()), signal.SIGTERM)
    console.print("Asked Rekey to stop.")


@app.command()
def status(data_dir: DataDir = None) -> None:
    """Each service's health: its log's end, how far the relay and its consumer are behind."""
    from shared.settings import SERVICES

    settings = settings_for(data_dir)
    table = Table("service", "store", "events", "relayed", "relay lag", "to consume", "unacked")
    for name in SERVICES:
        try:
            h = call(settings, name, "health")
        except typer.Exit:
            table.add_row(name, "not answering", "", "", "", "", "")
            continue
        table.add_row(*plain(name, h["store"], str(h["max_notification_id"]), str(h["relay_position"]),
                             str(h["relay_lag"]), str(h["consumer_pending"] if h["consumer_pending"]
                                                       is not None else "-"),
                             str(h["consumer_unacked"] if h["consumer_unacked"] is not None else "-")))
    console.print(table)


@app.command()
def serve(service: str, data_dir: DataDir = None) -> None:
    """Run one service in the foreground (what `rekey up` and the containers run)."""
    import importlib

    from shared.runtime import serve_forever
    from shared.settings import SERVICES

    if service not in (*SERVICES, "portal"):
        err.print(f"Unknown service {service!r}: choose one of {', '.join(SERVICES)} or portal.")
        raise typer.Exit(2)
    settings = settings_for(data_dir)
    logging.basicConfig(
        level=settings.log_level, format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"
    )
    if service == "portal":  # the web edge: no store, no endpoints of its own on the bus
        from services.portal.app import serve as serve_portal

        serve_portal(settings)
        return
    bootstrap = importlib.import_module(f"services.{service}.bootstrap")
    asyncio.run(serve_forever(bootstrap.build(settings), settings))


@app.command()
def demo(
    embedded: Annotated[bool, typer.Option(help="Start and stop a stack of its own")] = False,
    username: Annotated[str, typer.Option(help="Portal username of the demo user")] = "",
    data_dir: DataDir = None,
    method: Annotated[str, typer.Option(help="Sign-in method to set up: app, push, sms or call")] = "app",
) -> None:
    """Walk the user guide for a demo user and print the history rebuilt from the stores."""
    from rekey.demo import run_demo

    name = username or f"demo.{os.urandom(3).hex()}@masspasrr.org"
    if not embedded:
        settings = settings_for(data_dir)
        raise typer.Exit(asyncio.run(run_demo(settings, name, console, method=method)))

    from rekey.ports import free_port
    from rekey.stack import Stack, prepare_environment

    with tempfile.TemporaryDirectory(prefix="rekey-demo-") as tmp:
        env = prepare_environment(
            Path(tmp),
            REKEY_NATS_URL=f"nats://127.0.0.1:{free_port()}",
            REKEY_SMTP_PORT=str(free_port()),
        )
        os.environ.update(env)
        settings = Settings()
        console.print(f"Starting an embedded Rekey in {tmp} ...")
        with Stack(settings, env=env):
            code = asyncio.run(run_demo(settings, name, console, method=method))
    raise typer.Exit(code)


@app.command()
def mail(
    data_dir: DataDir = None,
    show: Annotated[int, typer.Option(help="Print the Nth newest mail in full (1 = newest)")] = 0,
) -> None:
    """List the mail the local mail sink caught (what users would receive)."""
    from rekey.mailsink import list_mails

    settings = settings_for(data_dir)
    mails = list_mails(Path(settings.data_dir) / "mail")
    if show:
        if show > len(mails):
            err.print(f"There are only {len(mails)} mails.")
            raise typer.Exit(1)
        m = mails[-show]
        console.print(f"From: {m.sender}\nTo: {', '.join(m.to)}\nSubject: {m.subject}\n\n{m.body}",
                      markup=False, highlight=False)
        return
    table = Table("#", "received", "to", "subject")
    for i, m in enumerate(reversed(mails), 1):
        table.add_row(*plain(str(i), f"{m.received_at:%Y-%m-%d %H:%M:%S}", ", ".join(m.to), m.subject))
    console.print(table)


# --- accounts ------------------------------------------------------------------------------
@accounts.command("add")
def accounts_add(
    username: str,
    email: Annotated[str, typer.Option(help="Address on file")],
    name: Annotated[str, typer.Option(help="Display name")],
    role: Annotated[str, typer.Option(help="user or agent")] = "user",
    password: Annotated[bool, typer.Option(help="Prompt for an initial password")] = False,
    data_dir: DataDir = None,
) -> None:
    """Provision a portal account (or a help-desk agent with --role agent)."""
    settings = settings_for(data_dir)
    secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    result = call(settings, "credentials", "register_account", username=username, email=email,
                  display_name=name, role=role, password=secret)
    console.print(f"Account {result['username']} ({result['role']}) registered.")


# --- tickets -------------------------------------------------------------------------------
@tickets.command("request")
def tickets_request(
    username: str,
    name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()] = "new phone",
    data_dir: DataDir = None,
) -> None:
    """File an MFA reset request, as the help-desk API would receive it."""
    settings = settings_for(data_dir)
    result = call(settings, "ticketing", "request_reset", name=name, email=email,
                  username=username, reason=reason)
    console.print(f"Ticket {result['ticket_number']} opened.")


@tickets.command("list")
def tickets_list(
    state: Annotated[
        str | None, typer.Option(help="open, awaiting_second_approval, approved, rejected, closed, expired")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Tickets, with whether the requester's address is the one on file and the mail delivery."""
    from rekey.ticket_views import ticket_row

    settings = settings_for(data_dir)
    table = Table("ticket", "state", "username", "sender", "delivery", "reason", "opened")
    for t in call(settings, "ticketing", "list", state=state):
        table.add_row(*plain(*ticket_row(t)))
    console.print(table)


@tickets.command("show")
def tickets_show(ticket: str, data_dir: DataDir = None) -> None:
    """A ticket and its timeline, from its events."""
    settings = settings_for(data_dir)
    from rekey.ticket_views import ticket_summary

    t = call(settings, "ticketing", "show", ticket=ticket)
    console.print(ticket_summary(t), markup=False, highlight=False)
    for item in t["timeline"]:
        facts = {k: v for k, v in item.items() if k not in ("at", "event")}
        console.print(f"  {item['at'][:19]}  {item['event']:<18} {facts}", markup=False)


@tickets.command("verify")
def tickets_verify(
    ticket: str,
    agent: Annotated[str, typer.Option()],
    method: Annotated[str, typer.Option(help="call_back, manager_confirmation or id_check")],
    note: Annotated[str, typer.Option()] = "",
    data_dir: DataDir = None,
) -> None:
    """Record how the agent checked the person's identity."""
    settings = settings_for(data_dir)
    t = call(settings, "ticketing", "verify_identity", ticket=ticket, agent=agent, method=method, note=note)
    console.print(f"Ticket {t['ticket_number']}: identity checked ({method}).")


@tickets.command("approve")
def tickets_approve(ticket: str, agent: Annotated[str, typer.Option()], data_dir: DataDir = None) -> None:
    settings = settings_for(data_dir)
    t = call(settings, "ticketing", "approve", ticket=ticket, agent=agent)
    console.print(f"Ticket {t['ticket_number']} approved: MFA revoked, temporary password on its way.")


@tickets.command("reject")
def tickets_reject(
    ticket: str,
    agent: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()],
    data_dir: DataDir = None,
) -> None:
    settings = settings_for(data_dir)
    t = call(settings, "ticketing", "reject", ticket=ticket, agent=agent, reason=reason)
    console.print(f"Ticket {t['ticket_number']} rejected.")


# --- audit ---------------------------------------------------------------------------------
FromStores = Annotated[
    bool, typer.Option(help="Replay the stores directly (the system may be down)")
]


def user_history(settings: Settings, username: str, from_stores: bool) -> list[Any]:
    """A user's events from all four stores: over the bus, or by opening the stores."""
    from services.audit.history import history_from_stores, history_over_bus
    from shared.bus.stream import connect
    from shared.client import RekeyClient

    if from_stores:
        return history_from_stores(settings, username)

    async def go() -> Any:
        nc = await connect(settings.nats_url, "rekey-audit", attempts=4)
        try:
            return await history_over_bus(RekeyClient(nc), username)
        finally:
            await nc.close()

    try:
        return list(asyncio.run(go()))
    except (ConnectionError, RekeyError) as exc:
        err.print(f"[red]{escape(str(exc))}[/] Use --from-stores to replay the stores directly.")
        raise typer.Exit(2) from None


@audit.command("history")
def audit_history(
    username: str,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    from_stores: FromStores = False,
    data_dir: DataDir = None,
) -> None:
    """A user's whole history across services, in order, rebuilt from the event stores."""
    from rekey.render import history_table

    events = user_history(settings_for(data_dir), username, from_stores)
    if as_json:
        for e in events:
            sys.stdout.write(e.model_dump_json() + "\n")
        return
    if not events:
        console.print(f"No events about {username}.")
        return
    console.print(history_table(events))


@audit.command("checkpoint")
def audit_checkpoint(
    username: str,
    out: Annotated[Path | None, typer.Option(help="Write here instead of printing")] = None,
    from_stores: FromStores = False,
    data_dir: DataDir = None,
) -> None:
    """Hash chains of a user's history, per service, to keep outside the system."""
    from datetime import UTC, datetime

    from services.audit.chain import checkpoint

    events = user_history(settings_for(data_dir), username, from_stores)
    if not events:
        err.print(f"No events about {username}: nothing to checkpoint.")
        raise typer.Exit(1)
    text = json.dumps(checkpoint(username, events, datetime.now(UTC).isoformat()), indent=2)
    if out:
        out.write_text(text + "\n")
        console.print(f"Checkpoint of {len(events)} events written to {out}.")
    else:
        sys.stdout.write(text + "\n")


@audit.command("verify")
def audit_verify(
    username: str,
    kept: Annotated[Path, typer.Argument(help="A checkpoint file from `rekey audit checkpoint`")],
    from_stores: FromStores = False,
    data_dir: DataDir = None,
) -> None:
    """Check that the history still begins exactly as it did when the checkpoint was taken."""
    from services.audit.chain import verify

    try:
        saved = json.loads(kept.read_text())
        if saved["username"].lower() != username.lower():
            raise ValueError(f"the checkpoint is for {saved['username']}")
    except (OSError, ValueError, KeyError) as exc:
        err.print(f"[red]Unusable checkpoint: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    findings = verify(saved, user_history(settings_for(data_dir), username, from_stores))
    for f in findings:
        mark = "[green]intact[/]" if f.ok else "[bold red]TAMPERED[/]"
        console.print(f"{f.source:<13} {mark}  {escape(f.detail)}")
    if not all(f.ok for f in findings):
        raise typer.Exit(1)
    console.print(f"History of {username} verified against the checkpoint of {saved['taken_at']}.")


@bench.command("pipeline")
def bench_pipeline(
    events: Annotated[int, typer.Option(help="Events for the pipeline and baselines")] = 2000,
    resets: Annotated[int, typer.Option(help="Whole guided resets")] = 40,
    store: Annotated[list[str] | None, typer.Option(help="sqlite and/or postgres")] = None,
) -> None:
    """Events/s through relay -> JetStream -> consumer, and guided resets/s, per store."""
    import logging

    from rekey.bench import run_pipeline_bench

    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(run_pipeline_bench(store or ["sqlite", "postgres"], events, resets))
    table = Table("store", "measure", "count", "seconds", "rate")
    for f in figures:
        table.add_row(f.store, f.name, str(f.count), f"{f.seconds:.2f}", f"{f.rate:,.1f} {f.unit}")
    console.print(table)


# --- verification: authenticator, twilio-sim, texts, bench challenges (rekey/verification_cli.py)
from rekey.verification_cli import register as register_verification  # noqa: E402

register_verification(app, bench)


# --- ticketing and credentials (issue 4) ---------------------------------------------------
@tickets.command("quarantine")
def tickets_quarantine(data_dir: DataDir = None) -> None:
    """Intake mail that could not become a ticket, with the reason and where it is kept."""
    settings = settings_for(data_dir)
    table = Table("received", "reason", "sender", "bytes", "kept in")
    for q in call(settings, "ticketing", "quarantine"):
        table.add_row(*plain(q["at"][:19], q["reason"], q["sender"], str(q["size"]), q["path"]))
    console.print(table)


@accounts.command("unlock")
def accounts_unlock(
    username: str,
    agent: Annotated[str, typer.Option(help="The help-desk agent unlocking the account")],
    reason: Annotated[str, typer.Option()] = "unlocked by the help desk",
    data_dir: DataDir = None,
) -> None:
    """Unlock an account locked after failed sign-ins (recorded as AccountUnlocked)."""
    settings = settings_for(data_dir)
    result = call(settings, "credentials", "unlock", username=username, agent=agent, reason=reason)
    console.print(f"Account {result['username']} unlocked.", markup=False)


@bench.command("passwords")
def bench_passwords(rounds: Annotated[int, typer.Option(help="Hashes and verifies to time")] = 20) -> None:
    """argon2id hash and verify times and sign-ins per second per core (figures only)."""
    from services.credentials.bench import run_password_bench

    table = Table("measure", "value")
    for f in run_password_bench(rounds):
        table.add_row(f.name, f"{f.value:,.1f} {f.unit}")
    console.print(table)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("REKEY_DEBUG"):
            raise
        detail = escape(f"{type(exc).__name__}: {exc}")
        err.print(f"[red]rekey: {detail}[/] (REKEY_DEBUG=1 shows the details)")
        sys.exit(1)
