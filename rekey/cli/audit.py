"""`rekey audit`: history, as-of, export and bundle verification, answered by the audit service.

Every refusal is one red line on stderr and an exit code of its own (:class:`Code`), so a script
can tell an unknown user from a malformed time, a bundle from another deployment or a missing
key.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rekey import terminal
from rekey.stack.environment import settings_for
from shared.contracts import EventEnvelope
from shared.errors import NotFound, RekeyError
from shared.settings import AUDIT, Settings

T = TypeVar("T")

console = terminal.console()
err = terminal.console(stderr=True)

DataDir = Annotated[Path | None, typer.Option(help="Data folder (default: REKEY_DATA_DIR or .rekey)")]
FromStores = Annotated[
    bool, typer.Option(help="Replay the stores directly: slow, trusts no service (the system may "
                            "be down)")
]
PROGRESS_FROM = 5000  # events: a progress bar on stderr for exports at least this long


class Code(IntEnum):
    """Exit codes of the audit commands."""

    OK = 0
    TAMPERED = 1  # verification found a difference
    UNUSABLE = 2  # not running, unreadable input, refused request
    UNKNOWN_USER = 3
    BAD_TIME = 4
    OTHER_DEPLOYMENT = 5
    MISSING_KEY = 6


def refuse(message: str, code: Code) -> NoReturn:
    err.print(f"[red]{escape(message)}[/]")
    raise typer.Exit(int(code))


def parse_time(text: str) -> datetime:
    """ISO 8601 (`2026-11-28T05:08:19Z`, `2026-11-28 05:08`, `2026-11-28`); UTC without an
    offset. Anything else exits with :attr:`Code.BAD_TIME`."""
    value = text.strip()
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        refuse(f"Not a time: {text!r}. Write it as ISO 8601, e.g. 2026-11-28T05:08:19Z or "
               "2026-11-28 (UTC when no offset is given).", Code.BAD_TIME)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def ask_audit(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(client)`` on the bus as the auditor; refusals become exit codes."""
    from shared.bus.connection import connect
    from shared.client import RekeyClient

    async def go() -> T:
        nc = await connect(settings, "auditor", name="rekey-audit", attempts=4)
        try:
            return await work(RekeyClient(nc, timeout=30))
        finally:
            await nc.close()

    try:
        return asyncio.run(go())
    except NotFound as exc:
        refuse(exc.message, Code.UNKNOWN_USER)
    except (ConnectionError, RekeyError) as exc:
        refuse(f"{exc} Use --from-stores to replay the stores directly.", Code.UNUSABLE)


def user_history(settings: Settings, username: str, from_stores: bool) -> list[EventEnvelope]:
    """The audit service's answer, or with ``from_stores`` every store replayed."""
    from services.audit.history import history_from_stores

    if from_stores:
        try:
            events = history_from_stores(settings, username)
        except RekeyError as exc:
            refuse(exc.message, Code.UNUSABLE)
        if not events:
            refuse(f"No user or agent named {username!r} appears in the stores: check the "
                   "spelling (portal usernames are full, e.g. name@masspasrr.org).",
                   Code.UNKNOWN_USER)
        return events
    answer = ask_audit(settings, lambda client: client.call(AUDIT, "history", username=username))
    return [EventEnvelope.model_validate(e) for e in answer]


def register(audit: typer.Typer) -> None:
    audit.command("history")(history)
    audit.command("as-of")(as_of)
    audit.command("export")(export)
    audit.command("feed")(feed)


def history(
    username: str,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    from_stores: FromStores = False,
    data_dir: DataDir = None,
) -> None:
    """A user's whole history, in order: what happened to them and, for an agent, what they
    did (their approvals), from the audit service's index."""
    events = user_history(settings_for(data_dir), username, from_stores)
    if as_json:
        for e in events:
            sys.stdout.write(e.model_dump_json() + "\n")
        return
    terminal.print_history(console, events)


def as_of(
    username: str,
    time: Annotated[str, typer.Argument(help="ISO 8601, e.g. 2026-11-28T05:08:19Z (UTC if no offset)")],
    as_json: Annotated[bool, typer.Option("--json", help="The state as one JSON object")] = False,
    from_stores: FromStores = False,
    data_dir: DataDir = None,
) -> None:
    """The user's state at that instant: account, live temporary password, methods and default,
    agreement accepted, open tickets."""
    from services.audit.state import UserState, state_at

    at = parse_time(time)
    settings = settings_for(data_dir)
    if from_stores:
        state = state_at(username, at, user_history(settings, username, True))
    else:
        state = UserState.model_validate(ask_audit(
            settings, lambda client: client.call(AUDIT, "as_of", username=username, at=at)))
    if as_json:
        sys.stdout.write(state.model_dump_json() + "\n")
        return
    print_state(state)


def print_state(state: Any) -> None:
    table = Table("", f"{state.username} at {state.at:%Y-%m-%d %H:%M:%S.%f} UTC",
                  show_header=True)
    account = state.account + (f" until {state.locked_until:%Y-%m-%d %H:%M:%S}"
                                if state.locked_until else "")
    table.add_row("account", f"{account}, role {state.role}" if state.registered else account)
    tp = state.temporary_password
    table.add_row("temporary password", "none issued" if tp is None else (
        f"{'LIVE' if tp.live else 'not live'}: issued {tp.issued_at:%Y-%m-%d %H:%M:%S}, "
        f"delivery {tp.delivery}" + (f", expires {tp.expires_at:%Y-%m-%d %H:%M:%S}" if tp.expires_at else "")
        + (f"; {tp.ended}" if tp.ended else "")))
    methods = [f"{m.label or m.method_type} ({m.method_id}, {m.state})"
               + (" default" if m.method_id == state.default_method else "") for m in state.methods]
    table.add_row("methods", "; ".join(methods) or "none")
    agreement = state.agreement
    table.add_row("agreement", "none accepted" if agreement is None else (
        f"version {agreement.version} {'accepted' if agreement.accepted else 'declined'} "
        f"{agreement.at:%Y-%m-%d %H:%M:%S}, {agreement.content_hash}"))
    table.add_row("open tickets", ", ".join(f"{t.ticket_number} ({t.state})"
                                            for t in state.open_tickets) or "none")
    table.add_row("made of", f"{state.events} events; last {state.last_event or '-'}")
    console.print(table)


def export(
    out: Annotated[Path | None, typer.Option("--out", help="Write here (default: standard output)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl, csv or ocsf")] = "jsonl",
    user: Annotated[str | None, typer.Option(help="Events about this user")] = None,
    agent: Annotated[str | None, typer.Option(help="Events this agent did")] = None,
    ticket: Annotated[str | None, typer.Option(help="A ticket's events (RK- number or id)")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601, UTC if no offset)")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time")] = None,
    types: Annotated[list[str] | None, typer.Option("--type", help="Event name; repeatable")] = None,
    bundle: Annotated[Path | None, typer.Option(
        help="Also write a signed bundle (zip) that `rekey audit verify --bundle` checks offline")] = None,
    heads: Annotated[Path | None, typer.Option(
        help="Folder of the services' heads files for the bundle's tree heads and proofs "
             "(default: the data folder's heads/)")] = None,
    data_dir: DataDir = None,
) -> None:
    """The audit record's events matching every filter given, in the order they were recorded."""
    from services.audit.export import FORMATS, Writer, write_bundle

    if fmt not in FORMATS:
        refuse(f"Unknown format {fmt!r}: choose {', '.join(FORMATS)}.", Code.UNUSABLE)
    query: dict[str, Any] = {
        "user": user, "agent": agent, "ticket": ticket,
        "since": parse_time(since) if since else None,
        "until": parse_time(until) if until else None, "types": types or [],
    }
    query = {k: v for k, v in query.items() if v not in (None, [])}
    settings = settings_for(data_dir)
    events, signed = ask_audit(settings, lambda client: _fetch(client, query, bool(bundle)))
    with _output(out) as stream:
        writer = Writer(stream, fmt)
        for event in events:
            writer.write(event)
    if bundle is not None:
        from services.audit.application import canonical_line
        from services.audit.bundle_proofs import evidence_for
        from shared.evidence.heads import heads_dir

        folder = heads or heads_dir(settings)
        evidence = evidence_for(events, folder) if folder.is_dir() else {}
        write_bundle(bundle, (canonical_line(e) for e in events), signed, evidence)
        proofs = sum(len(e.proofs) for e in evidence.values())
        err.print(f"Bundle of {len(events)} events written to {bundle}, with "
                  + (f"the tree heads of {', '.join(evidence)} and {proofs} inclusion proofs."
                     if evidence else f"no tree heads (none in {folder}): events and the signed "
                     "manifest only."), markup=False)
    if out is not None:
        err.print(f"{len(events)} events written to {out} ({fmt}).", markup=False)


@contextlib.contextmanager
def _output(out: Path | None) -> Iterator[Any]:
    if out is None:
        yield sys.stdout
        return
    with out.open("w", newline="", encoding="utf-8") as stream:
        yield stream


async def _fetch(client: Any, query: dict[str, Any], signed: bool) -> tuple[list[dict[str, Any]], Any]:
    """Pages up to one snapshot, with a progress bar on long runs; the manifest for that
    snapshot when a bundle is asked for."""
    total = await client.call(AUDIT, "count", **query)
    upto, events, after = total["upto"], [], 0
    progress = Progress(TextColumn("exporting"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                        TimeRemainingColumn(), console=err, disable=total["count"] < PROGRESS_FROM)
    with progress:
        task = progress.add_task("export", total=total["count"])
        while True:
            page = await client.call(AUDIT, "events", **query, upto=upto, after=after, limit=1000)
            events.extend(page["events"])
            progress.update(task, completed=len(events))
            if len(page["events"]) < 1000:
                break
            after = page["last"]
    if signed:  # the service hashes every matching row: give it time on a large record
        client.timeout = max(client.timeout, 300)
    manifest = await client.call(AUDIT, "manifest", **query, upto=upto) if signed else None
    return events, manifest


def verify_bundle_command(bundle: Path, key: Path | None, settings: Settings,
                          heads_keys: Path | None = None) -> None:
    """`rekey audit verify --bundle FILE [--key audit.pub]`: offline, no bus, no store."""
    from services.audit.export import BundleRefused, read_trusted_keys, verify_bundle

    key = key or (Path(settings.nats_keys_dir) / f"{AUDIT}.pub" if settings.nats_keys_dir else None)
    if key is None or not key.exists():
        refuse("No audit public key to check the bundle against: pass --key with the "
               "deployment's audit.pub (from its bus keys folder)"
               + (f"; {key} does not exist." if key else "."), Code.MISSING_KEY)
    try:
        trusted = read_trusted_keys(key)
    except (OSError, ValueError) as exc:
        refuse(f"{key} is not an audit public key file ({exc}).", Code.MISSING_KEY)
    heads_keys = heads_keys or (Path(settings.nats_keys_dir) if settings.nats_keys_dir else None)
    try:
        report = verify_bundle(bundle, trusted, heads_keys)
    except BundleRefused as refused:
        code = {"unusable": Code.UNUSABLE, "other_deployment": Code.OTHER_DEPLOYMENT,
                "missing_key": Code.MISSING_KEY}.get(refused.kind, Code.TAMPERED)
        refuse(refused.message, code)
    filters = ", ".join(f"{k}={v}" for k, v in report.filters.items() if v not in (None, [])) or "none"
    console.print(f"[green]Bundle verified:[/] {report.count} events, exactly as the audit service "
                  f"signed them at {report.created_at} (filters: {escape(filters)}).")
    heads = report.evidence.heads
    if heads:
        console.print(f"{report.evidence.proven} of them proven to be rows of the signed tree heads of "
                      + ", ".join(f"{s} (size {n})" for s, n in heads.items())
                      + f"; {report.count - report.evidence.proven} recorded after those heads.")
    else:
        console.print("The bundle carries no tree heads: only the audit service vouches for it.")


def feed(
    count: Annotated[int, typer.Option(help="Stop after this many events (0: until Ctrl-C)")] = 0,
    data_dir: DataDir = None,
) -> None:
    """The live feed for a SIEM forwarder: each event as the audit service records it, one JSON
    object per line on stdout (as `export --format jsonl`), its signature checked first."""
    from shared.bus.connection import connect
    from shared.bus.signing import ForgedEvent, SignatureCheck
    from shared.contracts.envelope import AUDIT_FEED_PREFIX

    settings = settings_for(data_dir)
    key = Path(settings.nats_keys_dir) / f"{AUDIT}.pub" if settings.nats_keys_dir else None
    if key is None or not key.exists():
        refuse("No audit public key to check the feed against (REKEY_NATS_KEYS_DIR/audit.pub).",
               Code.MISSING_KEY)
    check = SignatureCheck({AUDIT: frozenset(key.read_text().split())})

    async def go() -> None:
        nc = await connect(settings, "auditor", name="rekey-audit-feed", attempts=4)
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def keep(message: Any) -> None:
            await queue.put(message)

        try:
            await nc.subscribe(f"{AUDIT_FEED_PREFIX}.>", cb=keep)
            await nc.flush()
            err.print(f"Listening on {AUDIT_FEED_PREFIX}.> ...", markup=False)
            shown = 0
            while not count or shown < count:
                message = await queue.get()
                try:
                    check.check(AUDIT, message.subject, message.data, message.headers)
                except ForgedEvent as forged:
                    err.print(f"[red]Refused a feed message on {escape(message.subject)}: {forged}[/]")
                    continue
                sys.stdout.write(message.data.decode() + "\n")
                sys.stdout.flush()
                shown += 1
        finally:
            await nc.close()

    try:
        asyncio.run(go())
    except ConnectionError as exc:
        refuse(f"{exc}", Code.UNUSABLE)
