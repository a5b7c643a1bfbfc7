"""The ``rekey`` command: run the system, administer it, demo it, audit it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from rekey import terminal
from rekey.cli.bus import bus
from rekey.cli.check import check
from rekey.cli.contracts import contracts
from rekey.cli.deploy import deploy
from rekey.cli.docs import docs
from rekey.remote import over_the_bus
from rekey.stack.environment import settings_for
from rekey.terminal import plain
from shared.errors import NotAllowed
from shared.principals import operator_principal
from shared.settings import Settings

app = typer.Typer(
    help="Rekey: the help-desk MFA reset, event-sourced.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
accounts = typer.Typer(help="Portal and help-desk accounts.", no_args_is_help=True)
agents = typer.Typer(help="Help-desk agents: invitations and second factors (the operator's).",
                     no_args_is_help=True)
tickets = typer.Typer(help="Reset tickets (the help desk's view).", no_args_is_help=True)
audit = typer.Typer(help="Auditor tools: the audit record, as-of, exports, checks.",
                   no_args_is_help=True)
app.add_typer(accounts, name="accounts")
app.add_typer(agents, name="agents")
app.add_typer(tickets, name="tickets")
bench = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)
app.add_typer(audit, name="audit")
app.add_typer(bench, name="bench")
app.add_typer(docs, name="docs")
app.add_typer(bus, name="bus")
app.add_typer(contracts, name="contracts")
app.command("check")(check)
app.add_typer(deploy, name="deploy")
repair = typer.Typer(help="Repairs from the stores (the source of truth).", no_args_is_help=True)
app.add_typer(repair, name="repair")

console = terminal.console()
err = terminal.console(stderr=True)

DataDir = Annotated[Path | None, typer.Option(help="Data folder (default: REKEY_DATA_DIR or .rekey)")]
IdempotencyOption = Annotated[str | None, typer.Option(
    help="Your key for this request (default: a new one); run again with the same key after a "
    "timeout and you get the first answer instead of a second one")]


def new_key() -> str:
    import uuid

    return uuid.uuid4().hex


@contextlib.contextmanager
def retry_hint(key: str) -> Any:
    """After a failure, how to retry without doing the work twice if the first try got through."""
    try:
        yield
    except typer.Exit:  # no answer in time may still mean it was done: a retry with the key is safe
        err.print(f"To retry safely, run the same command with --idempotency-key {key}")
        raise


def call(settings: Settings, service: str, command: str, **payload: Any) -> Any:
    return over_the_bus(
        settings, "rekey-cli", lambda client: client.call(service, command, **payload),
        "Rekey is not running here ({}). Start it with `rekey up`.",
    )


AgentOption = Annotated[str, typer.Option(help="The help-desk agent acting (signs in: password "
                                               "from REKEY_AGENT_PASSWORD or a prompt, then an "
                                               "authenticator code from REKEY_AGENT_TOTP_CODE or a prompt)")]


def _agent_secret(agent: str, variable: str, prompt: str, hidden: bool) -> str:
    """From the environment, else typed at a terminal; without a terminal, say how (exit 2)."""
    value = os.environ.get(variable)
    if value:
        return value
    if not sys.stdin.isatty():
        what = "the password" if hidden else "the code"
        terminal.console(stderr=True).print(
            f"[red]{escape(agent)} must sign in: set {variable}, or run this in a terminal to "
            f"type {what}.[/]")
        raise typer.Exit(2)
    return str(typer.prompt(prompt, hide_input=hidden))


def as_agent(settings: Settings, agent: str, service: str, command: str, **payload: Any) -> Any:
    """Sign the agent in (credentials checks the password, then a code from the agent's
    authenticator app, and signs a principal), then act with that principal: a name typed at
    the command line proves nothing by itself, nor does a password alone."""
    password = _agent_secret(agent, "REKEY_AGENT_PASSWORD", f"Password of {agent}", hidden=True)

    async def work(client: Any) -> Any:
        answer = await client.call("credentials", "sign_in", username=agent, password=password,
                                   channel="cli")
        second = answer.get("second_factor")
        if not second:
            raise NotAllowed(f"{agent!r} is not a help-desk agent.")
        if "totp" not in second["factors"]:
            raise NotAllowed(second.get("message") or
                             f"{agent} has no authenticator app: at the command line an agent signs "
                             "in with an authenticator code (a passkey works in the console).")
        code = await asyncio.to_thread(_agent_secret, agent, "REKEY_AGENT_TOTP_CODE",
                                       f"Authenticator code of {agent}", False)
        signed = await client.call("credentials", "agent_totp_verify", token=second["token"],
                                   code=code.strip(), channel="cli")
        return await client.call(service, command, principal=signed["principal"], **payload)

    return over_the_bus(settings, "rekey-cli", work,
                        "Rekey is not running here ({}). Start it with `rekey up`.")


@app.command()
def up(
    data_dir: DataDir = None,
    nats_port: Annotated[int, typer.Option(help="Port of the embedded nats-server")] = 14222,
    smtp_port: Annotated[int, typer.Option(help="Port of the local mail sink")] = 8025,
    intake_port: Annotated[int, typer.Option(help="Port of the help desk's mail intake")] = 2525,
    dev: Annotated[bool, typer.Option(
        "--dev", help="Developer pages: every caught mail, text and call at /dev, on 127.0.0.1 only"
    )] = False,
) -> None:
    """Start the whole system on its embedded defaults; Ctrl-C stops it."""
    from rekey.stack.environment import up_environment
    from rekey.stack.processes import Stack
    from services.portal.dev import DevPagesRefused

    folder = data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))
    try:
        env = up_environment(folder, dev=dev, nats_port=nats_port, smtp_port=smtp_port,
                             intake_port=intake_port)
    except DevPagesRefused as refused:
        err.print(f"[red]{escape(str(refused))}[/]")
        raise typer.Exit(2) from None
    os.environ.update(env)
    settings = Settings()
    # Supervised: a process that dies is started again, with a log line here (stderr).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    stack = Stack(settings, env=env, portal=True, supervise=True)
    console.print(f"Starting Rekey in {folder.resolve()} ...")
    with stack:
        console.print(f"[green]Rekey is up.[/] NATS {settings.nats_url}, mail sink "
                      f"127.0.0.1:{settings.smtp_port} (read it with `rekey mail`), "
                      f"stores in {folder.resolve()}, logs in {folder.resolve() / 'logs'}")
        console.print(f"[green]Portal:[/] {stack.portal_url}  help-desk console: "
                      f"{stack.portal_url}console")
        if settings.portal_dev_pages:
            console.print(f"[yellow]Developer pages on (--dev), on {settings.portal_host} only:[/] "
                          f"caught mail {stack.portal_url}dev/mail, texts and calls "
                          f"{stack.portal_url}dev/phone; they show every temporary password "
                          "and code without sign-in")
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
    """Stop a `rekey up` running for this data folder, and wait until everything it started
    (restarted processes included) has stopped."""
    from rekey.stack.supervisor import alive, leftovers, read_state, wait_gone

    folder = data_dir or Path(os.environ.get("REKEY_DATA_DIR", ".rekey"))
    pid_file = folder / "rekey.pid"
    state = read_state(folder)  # before it goes: the pids, if `rekey up` cannot clean up itself
    if not pid_file.exists() and state is None:
        err.print("Rekey is not running from this folder.")
        raise typer.Exit(1)
    if pid_file.exists():
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if wait_gone([pid], timeout=60):
            err.print(f"`rekey up` (pid {pid}) is still stopping; run `rekey down` again.")
            raise typer.Exit(1)
        pid_file.unlink(missing_ok=True)
    left = leftovers(state or {})
    for name, pid in left:  # `rekey up` was killed before it could stop them
        err.print(f"{name} (pid {pid}) was left running: stopping it.")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in wait_gone([pid for _, pid in left], timeout=15):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    (folder / "supervisor.json").unlink(missing_ok=True)
    if any(alive(pid) for _, pid in left):
        raise typer.Exit(1)
    console.print("Rekey stopped.")


@app.command()
def status(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON, for scripts")] = False,
) -> None:
    """Every process and dependency (NATS, stores, SMTP, Twilio, each service) asked at once,
    failures named with their cause, in under 3 s; relay positions against the stream (a
    purged or lost stream shows as a gap). Exit 1 when something is wrong."""
    from rekey.cli.status import dependency, gather_status
    from rekey.stack.supervisor import read_state
    from shared.settings import PROCESSES

    settings = settings_for(data_dir)
    report = asyncio.run(gather_status(settings))
    supervised = (read_state(Path(settings.data_dir)) or {}).get("processes", {})
    report["restarts"] = {name: record["restarts"] for name, record in supervised.items()}
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        raise typer.Exit(1 if report["problems"] else 0)

    def restarts(name: str) -> str:  # counted by the supervisor of a `rekey up` here
        record = supervised.get(name)
        if record is None:
            return "-"
        return str(record["restarts"]) + (" (restarting)" if record["state"] != "running" else "")

    def shown(value: Any) -> str:
        return "-" if value is None else str(value)

    table = Table("service", "ready", "store", "smtp", "twilio", "events", "relayed", "relay lag",
                  "stream gap", "to consume", "unacked", "restarts")
    for name in PROCESSES:
        h = report["services"][name]
        if not h.get("answering"):
            table.add_row(name, "not answering", *[""] * 9, escape(restarts(name)))
            continue
        table.add_row(*plain(
            name, "yes" if h["ready"] else "NO", dependency(h, "store"), dependency(h, "smtp"),
            dependency(h, "twilio"), shown(h["max_notification_id"]), shown(h["relay_position"]),
            shown(h["relay_lag"]), shown(h["gap"]), shown(h["consumer_pending"]),
            shown(h["consumer_unacked"]), restarts(name)))
    for name in ("nats", "portal"):
        if name in supervised:
            table.add_row(name, *[""] * 10, escape(restarts(name)))
    console.print(f"NATS: {escape(report['nats']['detail'])}")
    console.print(table)
    for problem in report["problems"]:
        console.print(f"[red]- {escape(problem)}[/]")
    if report["problems"]:
        raise typer.Exit(1)


@repair.command("republish")
def repair_republish(
    service: Annotated[list[str] | None, typer.Option(help="Only this service (repeatable)")] = None,
    start: Annotated[int, typer.Option(help="From this notification id")] = 1,
    data_dir: DataDir = None,
) -> None:
    """Put every service's events on the stream again from its store (the store is the truth;
    consumers' tracking makes a second copy harmless), with a progress bar."""
    import uuid

    from rich.progress import Progress

    from rekey.cli.status import republish_all
    from shared.settings import SERVICES

    settings = settings_for(data_dir)
    chosen = service or list(SERVICES)
    run = uuid.uuid4().hex[:16]

    async def work(client: Any) -> dict[str, int]:
        with Progress(console=console) as progress:
            bars: dict[str, Any] = {}

            def show(name: str, done: int, total: int) -> None:
                if name not in bars:
                    bars[name] = progress.add_task(name, total=total)
                progress.update(bars[name], completed=done)

            return await republish_all(client, chosen, run, start, show)

    done = over_the_bus(settings, "rekey-repair", work)
    for name, count in done.items():
        console.print(f"{name}: {count} event(s) published again.")


@repair.command("snapshots")
def repair_snapshots(
    service: Annotated[list[str] | None, typer.Option(help="Only this service (repeatable)")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only name the tables that would be dropped")] = False,
    data_dir: DataDir = None,
) -> None:
    """Drop each service's snapshot tables of earlier code (snapshots are a cache the running
    code never reads once its code changed): run it once every replica runs the new version."""
    from shared.settings import SERVICES

    settings = settings_for(data_dir)
    chosen = service or list(SERVICES)

    async def work(client: Any) -> dict[str, Any]:
        return {name: await client.call(name, "drop_old_snapshots", dry_run=dry_run)
                for name in chosen}

    for name, answer in over_the_bus(settings, "rekey-repair", work).items():
        tables = answer["tables"]
        verb = "would drop" if dry_run else "dropped"
        listed = ": " + ", ".join(tables) if tables else ""
        console.print(f"{name}: {verb} {len(tables)} old snapshot table(s){listed}", soft_wrap=True)


@app.command()
def serve(service: str, data_dir: DataDir = None) -> None:
    """Run one service in the foreground (what `rekey up` and the containers run)."""
    from rekey.serve import serve as serve_one

    code = serve_one(service, data_dir)
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    embedded: Annotated[bool, typer.Option(help="Start and stop a stack of its own")] = False,
    username: Annotated[str, typer.Option(help="Portal username of the demo user")] = "",
    data_dir: DataDir = None,
    method: Annotated[str, typer.Option(help="Sign-in method to set up: app, push, sms or call")] = "app",
) -> None:
    """Walk the user guide for a demo user and print the history rebuilt from the stores."""
    from rekey.demo.guide import run_demo

    name = username or f"demo.{os.urandom(3).hex()}@masspasrr.org"
    if not embedded:
        settings = settings_for(data_dir)
        raise typer.Exit(asyncio.run(run_demo(settings, name, console, method=method)))

    from rekey.stack.environment import prepare_environment
    from rekey.stack.ports import free_port
    from rekey.stack.processes import Stack

    with tempfile.TemporaryDirectory(prefix="rekey-demo-") as tmp:
        env = prepare_environment(
            Path(tmp),
            REKEY_NATS_URL=f"tls://127.0.0.1:{free_port()}",
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
    from shared.caught import list_mails

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
    phone: Annotated[str | None, typer.Option(help="Phone on file, for help-desk call-backs")] = None,
    phone_country: Annotated[str, typer.Option(help="Region of a national phone number")] = "US",
    manager_email: Annotated[
        str | None, typer.Option(help="The manager on file, who may approve a reset by mail")
    ] = None,
    privileged: Annotated[
        bool, typer.Option(help="Flag the account privileged: resets need more proof")
    ] = False,
    idempotency_key: IdempotencyOption = None,
    data_dir: DataDir = None,
) -> None:
    """Provision a portal account (or a help-desk agent with --role agent)."""
    settings = settings_for(data_dir)
    secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    key = idempotency_key or new_key()
    with retry_hint(key):
        result = call(settings, "credentials", "register_account", username=username, email=email,
                      display_name=name, role=role, password=secret,
                      principal=operator_principal(settings), phone=phone,
                      idempotency_key=key, phone_country=phone_country,
                      manager_email=manager_email, privileged=privileged)
    flag = ", privileged" if result.get("privileged") else ""
    console.print(f"Account {result['username']} ({result['role']}{flag}) registered.")


# --- agents --------------------------------------------------------------------------------
@agents.command("invite")
def agents_invite(
    username: str,
    email: Annotated[str | None, typer.Option(help="Address on file (needed for a new agent)")] = None,
    name: Annotated[str | None, typer.Option(help="Display name (needed for a new agent)")] = None,
    idempotency_key: IdempotencyOption = None,
    data_dir: DataDir = None,
) -> None:
    """Invite a help-desk agent (registered if new): a single-use link is mailed to the agent's
    address on file, to choose a password and enrol a passkey or an authenticator app. Inviting
    an existing agent again replaces the earlier link (e.g. after a lost security key)."""
    settings = settings_for(data_dir)
    key = idempotency_key or new_key()
    with retry_hint(key):
        result = call(settings, "credentials", "invite_agent", username=username, email=email,
                      display_name=name, principal=operator_principal(settings),
                      idempotency_key=key)
    console.print(f"Invitation for {result['username']} mailed to {result['email']}; it works once, "
                  f"until {result['expires_at'][:16].replace('T', ' ')} UTC.", markup=False)


@agents.command("list")
def agents_list(data_dir: DataDir = None) -> None:
    """Help-desk agents, their second factors and open invitations."""
    settings = settings_for(data_dir)
    table = Table("agent", "name", "email", "second factors", "invitation", "sign-in delayed")
    for a in call(settings, "credentials", "list_agents", principal=operator_principal(settings)):
        factors = ", ".join(f"{f['factor_type']} ({f['factor_id']})" for f in a["factors"]) or "none"
        table.add_row(*plain(a["username"], a["display_name"], a["email"], factors,
                             a["invitation"] or "", "yes" if a["delayed"] else ""))
    console.print(table)


@agents.command("revoke-factor")
def agents_revoke_factor(
    username: str,
    factor_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded)")] = "revoked by the operator",
    data_dir: DataDir = None,
) -> None:
    """Remove one of an agent's second factors (a lost or stolen key); invite the agent again
    to enrol a new one."""
    settings = settings_for(data_dir)
    result = call(settings, "credentials", "revoke_agent_factor", username=username,
                  factor_id=factor_id, reason=reason, principal=operator_principal(settings))
    left = ", ".join(result["factors"]) or "none"
    console.print(f"Factor {factor_id} of {result['username']} revoked; second factors left: {left}.",
                  markup=False)


@agents.command("end-sessions")
def agents_end_sessions(
    username: str,
    reason: Annotated[str, typer.Option(help="Why (recorded)")] = "ended by the operator",
    data_dir: DataDir = None,
) -> None:
    """End every sign-in the agent has now (a session thought stolen): the console and CLI
    sign-ins made before it are refused everywhere; the agent signs in again."""
    settings = settings_for(data_dir)
    result = call(settings, "credentials", "end_agent_sessions", username=username, reason=reason,
                  principal=operator_principal(settings))
    console.print(f"Every sign-in of {result['username']} made before now has ended.", markup=False)


# --- tickets -------------------------------------------------------------------------------
@tickets.command("request")
def tickets_request(
    username: str,
    name: Annotated[str, typer.Option()],
    email: Annotated[str, typer.Option()],
    reason: Annotated[str, typer.Option()] = "new phone",
    idempotency_key: IdempotencyOption = None,
    data_dir: DataDir = None,
) -> None:
    """File an MFA reset request, as the help-desk API would receive it."""
    settings = settings_for(data_dir)
    key = idempotency_key or new_key()
    with retry_hint(key):
        result = call(settings, "ticketing", "request_reset", name=name, email=email,
                      username=username, reason=reason, idempotency_key=key)
    console.print(f"Ticket {result['ticket_number']} opened.")


@tickets.command("list")
def tickets_list(
    state: Annotated[
        str | None,
        typer.Option(help="open, awaiting_second_approval, reset_scheduled, under_review, "
                          "approved, rejected, closed, expired"),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Tickets, with whether the requester's address is the one on file and the mail delivery."""
    from rekey.cli.ticket_views import ticket_row

    settings = settings_for(data_dir)
    table = Table("ticket", "state", "username", "proof", "delivery", "reason", "opened")
    for t in call(settings, "ticketing", "list", state=state):
        table.add_row(*plain(*ticket_row(t)))
    console.print(table)


@tickets.command("show")
def tickets_show(ticket: str, data_dir: DataDir = None) -> None:
    """A ticket and its timeline, from its events."""
    settings = settings_for(data_dir)
    from rekey.cli.ticket_views import ticket_summary

    t = call(settings, "ticketing", "show", ticket=ticket)
    console.print(ticket_summary(t), markup=False, highlight=False)
    for item in t["timeline"]:
        facts = {k: v for k, v in item.items() if k not in ("at", "event")}
        console.print(f"  {item['at'][:19]}  {item['event']:<18} {facts}", markup=False)


def _proof_step(data_dir: Path | None, agent: str, command: str, done: str,
                **payload: str) -> None:
    """One identity-proof command as the signed-in agent, then the points so far."""
    t = as_agent(settings_for(data_dir), agent, "ticketing", command, **payload)
    points = f"{t['policy']['points']} of {t['policy']['needed']} points"
    console.print(f"Ticket {t['ticket_number']}: {done.format(**t)}; {points}.")


@tickets.command("prove")
def tickets_prove(
    ticket: str,
    agent: AgentOption,
    kind: Annotated[str, typer.Option(help="email_code, call_back or manager_approval")],
    data_dir: DataDir = None,
) -> None:
    """Start an identity proof the system runs, to the facts on file."""
    _proof_step(data_dir, agent, "start_proof", f"proof {{proof_id}} ({kind}) started",
                ticket=ticket, kind=kind)


@tickets.command("code")
def tickets_code(
    ticket: str, proof_id: str, code: str, agent: AgentOption, data_dir: DataDir = None
) -> None:
    """Type in the code the person read back for a mailed-code proof."""
    _proof_step(data_dir, agent, "answer_proof_code", "code accepted", ticket=ticket,
                proof_id=proof_id, code=code)


@tickets.command("id-check")
def tickets_id_check(ticket: str, note: str, agent: AgentOption, data_dir: DataDir = None) -> None:
    """Attest an in-person photo ID check, NOTE saying which ID and where (the weakest proof:
    never counts alone)."""
    _proof_step(data_dir, agent, "attest_id_check", "ID check recorded", ticket=ticket,
                note=note)


@tickets.command("approve")
def tickets_approve(ticket: str, agent: AgentOption, data_dir: DataDir = None) -> None:
    """Approve as the signed-in agent (a second agent finishes it when four-eyes applies)."""
    settings = settings_for(data_dir)
    t = as_agent(settings, agent, "ticketing", "approve", ticket=ticket)
    if t["state"] == "approved":
        console.print(f"Ticket {t['ticket_number']} approved: MFA revoked, temporary password on its way.")
    elif t["state"] == "reset_scheduled":
        console.print(f"Ticket {t['ticket_number']} approved: the reset takes effect at "
                      f"{t['effective_at'][:16]} UTC unless the person cancels it.")
    else:
        console.print(f"Ticket {t['ticket_number']}: your approval is recorded; "
                      f"{t['state_label'].lower()}.")


@tickets.command("reject")
def tickets_reject(
    ticket: str,
    agent: AgentOption,
    reason: Annotated[str, typer.Option()],
    data_dir: DataDir = None,
) -> None:
    settings = settings_for(data_dir)
    t = as_agent(settings, agent, "ticketing", "reject", ticket=ticket, reason=reason)
    console.print(f"Ticket {t['ticket_number']} rejected.")


@tickets.command("close-review")
def tickets_close_review(
    ticket: str,
    agent: AgentOption,
    note: Annotated[str, typer.Option(help="What the review found")],
    data_dir: DataDir = None,
) -> None:
    """Close the review of a reset the person cancelled from the mailed link, as the signed-in
    agent (the reset stays cancelled; the note is on the record)."""
    settings = settings_for(data_dir)
    t = as_agent(settings, agent, "ticketing", "close_review", ticket=ticket, note=note)
    console.print(f"Ticket {t['ticket_number']}: review closed ({t['state_label'].lower()}).")


# --- audit ---------------------------------------------------------------------------------
FromStores = Annotated[
    bool, typer.Option(help="Replay the stores directly (the system may be down)")
]


from rekey.cli.audit import register as register_audit  # noqa: E402
from rekey.cli.audit import user_history  # noqa: E402

register_audit(audit)  # history, as-of, export (rekey/cli/audit.py)


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
    username: Annotated[str | None, typer.Argument(
        help="With a checkpoint: check one user's history against it")] = None,
    kept: Annotated[Path | None, typer.Argument(
        help="A checkpoint file from `rekey audit checkpoint`")] = None,
    heads: Annotated[Path | None, typer.Option(
        help="Witness mode: the folder of heads files kept outside the system "
        "(default: the data folder's heads)")] = None,
    audit_copy: Annotated[bool, typer.Option(
        "--audit-copy", help="Witness mode: against the tree heads the audit service received "
        "and kept in its own store (a second witness), instead of the heads files")] = False,
    keys: Annotated[Path | None, typer.Option(
        help="Folder with <service>.heads.pub (and the .heads.nk seeds to check bindings); "
        "default: the bus keys folder")] = None,
    from_stores: FromStores = False,
    bundle: Annotated[Path | None, typer.Option(
        help="Check an export bundle offline instead (no bus, no store)")] = None,
    key: Annotated[Path | None, typer.Option(
        help="The deployment's audit.pub for --bundle (default: the bus keys folder's)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Check every stored row of every service against its place binding and the signed tree
    heads, and name each bad row (service, notification id, user); or, given USERNAME and a
    CHECKPOINT, that user's history against the checkpoint; or an export bundle against the
    audit service's signature (--bundle FILE)."""
    settings = settings_for(data_dir)
    if bundle is not None:
        from rekey.cli.audit import verify_bundle_command

        verify_bundle_command(bundle, key, settings, keys)  # keys: the .heads.pub folder
        return
    if username is None:
        from rekey.cli.evidence import verify_every_store

        raise typer.Exit(verify_every_store(settings, heads, keys, console, err,
                                            audit_copy=audit_copy))
    if kept is None:
        err.print("[red]A user's history is verified against a checkpoint: give its file too "
                  "(`rekey audit verify USER FILE`), --bundle FILE, or nothing to verify every "
                  "store.[/]")
        raise typer.Exit(2)
    verify_checkpoint(settings, username, kept, from_stores)


@audit.command("heads")
def audit_heads(data_dir: DataDir = None) -> None:
    """Have every service sign and publish a Merkle tree head now (to its heads file and the
    bus), and show them: ship the heads files elsewhere to keep them as a witness."""
    from rekey.cli.evidence import heads_now

    for head in heads_now(settings_for(data_dir)):
        console.print(f"{head['service']:<13} size {head['tree_size']:>7}  root "
                      f"{head['root_hash'][:16]}...  signed {head['timestamp']}")


@audit.command("retention")
def audit_retention(data_dir: DataDir = None) -> None:
    """What is past REKEY_RETENTION_YEARS: stored events older than it, per service, and the
    users with no event since (to erase). Reads the stores; deletes nothing."""
    from datetime import UTC, datetime

    from services.audit.retention import retention_report
    from shared.errors import RekeyError

    settings = settings_for(data_dir)
    try:
        report = retention_report(settings, datetime.now(UTC))
    except RekeyError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    console.print(f"Retention {settings.retention_years:g} years: records before "
                  f"{report.horizon:%Y-%m-%d} are due.")
    for service, total in report.rows.items():
        console.print(f"{service:<13} {report.rows_past[service]} of {total} stored events past it")
    for username, at in report.users_due.items():
        console.print(f"due: {escape(username)} (last event {at:%Y-%m-%d})")
    if not report.users_due:
        console.print("No user is due.")


@audit.command("erase")
def audit_erase(
    username: str,
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking")] = False,
    data_dir: DataDir = None,
) -> None:
    """Erase a user: destroy their data key in every service, so every stored event of theirs
    becomes unreadable for good (backups too); the proofs still verify. Cannot be undone."""
    from rekey.cli.evidence import erase_everywhere

    if not yes and not typer.confirm(f"Erase every stored event of {username} for good?"):
        raise typer.Exit(1)
    for erased in erase_everywhere(settings_for(data_dir), username):
        console.print(f"{erased['service']:<13} erased at {erased['erased_at']}")


def verify_checkpoint(settings: Settings, username: str, kept: Path, from_stores: bool) -> None:
    from services.audit.chain import verify

    try:
        saved = json.loads(kept.read_text())
        if saved["username"].lower() != username.lower():
            raise ValueError(f"the checkpoint is for {saved['username']}")
    except (OSError, ValueError, KeyError) as exc:
        err.print(f"[red]Unusable checkpoint: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None
    findings = verify(saved, user_history(settings, username, from_stores))
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

    from rekey.bench.pipeline import run_pipeline_bench

    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(run_pipeline_bench(store or ["sqlite", "postgres"], events, resets))
    table = Table("store", "measure", "count", "seconds", "rate")
    for f in figures:
        table.add_row(f.store, f.name, str(f.count), f"{f.seconds:.2f}", f"{f.rate:,.1f} {f.unit}")
    console.print(table)


@bench.command("audit")
def bench_audit(
    size: Annotated[list[int] | None, typer.Option(
        help="Events in the audit index to measure at; repeatable (default 10000, 100000, 1000000)")] = None,
    store: Annotated[list[str] | None, typer.Option(help="sqlite and/or postgres")] = None,
    queries: Annotated[int, typer.Option(help="Histories asked at each size")] = 300,
) -> None:
    """p50/p99 of a user's history from the audit service's index, beside the 20 ms limit."""
    from rekey.bench.audit import LIMIT_MS, run_audit_bench

    logging.basicConfig(level=logging.WARNING)
    figures = asyncio.run(run_audit_bench(store or ["sqlite"], size or [10_000, 100_000, 1_000_000],
                                          queries))
    table = Table("store", "events", "measure", "queries", "p50 ms", "p99 ms", f"limit {LIMIT_MS:g} ms",
                  "fill s")
    for f in figures:
        table.add_row(f.store, f"{f.events:,}", f.measure, str(f.queries), f"{f.p50_ms:.2f}",
                      f"{f.p99_ms:.2f}", "within" if f.within_limit else "OVER", f"{f.fill_seconds:.1f}")
    console.print(table)


@bench.command("heads")
def bench_heads(
    rows: Annotated[int, typer.Option(help="Rows in the service's store")] = 100_000,
    after: Annotated[int, typer.Option(help="Rows stored after the last head")] = 1000,
    store: Annotated[list[str] | None, typer.Option(help="sqlite and/or postgres")] = None,
) -> None:
    """A service's start-up for its Merkle tree: the whole store read, or only the rows after
    the compact range its last signed head keeps (figures, no limit)."""
    from rekey.bench.heads import run_heads_bench

    logging.basicConfig(level=logging.WARNING)
    table = Table("store", "rows", "start-up from", "rows read", "seconds")
    for f in run_heads_bench(store or ["sqlite"], rows, after):
        table.add_row(f.store, f"{f.rows:,}", f.mode, f"{f.rows_read:,}", f"{f.seconds:.2f}")
    console.print(table)


# --- bench all / report: every figure beside its limit (rekey/cli/bench.py)
from rekey.cli.bench import register as register_bench  # noqa: E402

register_bench(bench)

# --- verification: authenticator, twilio-sim, texts, bench challenges (rekey/cli/verification.py)
from rekey.cli.verification import register as register_verification  # noqa: E402

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
    agent: AgentOption,
    reason: Annotated[str, typer.Option()] = "sign-in delay reset by the help desk",
    data_dir: DataDir = None,
) -> None:
    """Reset an account's failed sign-ins and sign-in delay (recorded as AccountUnlocked)."""
    settings = settings_for(data_dir)
    result = as_agent(settings, agent, "credentials", "unlock", username=username, reason=reason)
    console.print(f"Account {result['username']}: failed sign-ins and delay reset.", markup=False)


@bench.command("passwords")
def bench_passwords(rounds: Annotated[int, typer.Option(help="Hashes and verifies to time")] = 20) -> None:
    """argon2id hash and verify times and sign-ins per second per core (figures only)."""
    from services.credentials.bench import run_password_bench

    table = Table("measure", "value")
    for f in run_password_bench(rounds):
        table.add_row(f.name, f"{f.value:,.1f} {f.unit}")
    console.print(table)


def main() -> None:
    from shared.files import keep_files_private

    keep_files_private()  # whatever it writes under the data folder is its owner's alone
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
