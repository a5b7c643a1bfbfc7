"""`rekey audit verify` (every store) and `rekey audit heads`: the evidence commands' output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from rekey.remote import over_the_bus
from shared.errors import RekeyError
from shared.settings import PROCESSES, SERVICES, Settings


def verify_every_store(settings: Settings, heads: Path | None, keys: Path | None,
                       out: Console, err: Console, *, audit_copy: bool = False) -> int:
    """Print each service's verdict and every problem; 0 intact, 1 tampered, 2 unusable (no
    stores there, or one could not be read: the check did not finish).
    ``audit_copy``: against the heads the audit service kept, instead of the heads files."""
    import tempfile

    from services.audit.evidence import verify_stores

    try:
        with tempfile.TemporaryDirectory(prefix="rekey-heads-") as copied:
            if audit_copy:
                heads = audit_heads(settings, Path(copied))
                out.print(f"Checking against the audit service's copy of the tree heads "
                          f"({where_its_store_is(settings)}).")
            reports = verify_stores(settings, heads, keys)
    except RekeyError as exc:
        err.print(f"[red]{escape(str(exc))}[/]")
        return 2
    except Exception as exc:  # a store that cannot be read: no verdict
        # Exit 1 means "tampered": a check that could not finish (a database refusing the
        # connection, a file that is not a database) must not say so, nor look like it.
        err.print(f"[red]The check did not finish: a store could not be read "
                  f"({escape(type(exc).__name__)}: {escape(str(exc))}). Nothing is concluded "
                  "about the stores; run it again once they can be read.[/]")
        return 2
    for report in reports:
        mark = "[green]intact[/]" if report.intact else "[bold red]TAMPERED[/]"
        out.print(f"{report.service:<13} {mark}  {report.rows} rows, {report.signed_rows} under "
                  f"{report.heads} signed heads")
        for note in report.notes:
            out.print(f"{'':<13} note: {escape(note)}")
        first = report.first()
        for problem in report.problems:
            lead = "first bad" if problem is first else "also"
            out.print(f"  {lead}: {escape(problem.line())}", soft_wrap=True)
    if any(not r.intact for r in reports):
        return 1
    out.print("Every store matches its place bindings and its signed tree heads.")
    return 0


def where_its_store_is(settings: Settings) -> str:
    return (str(settings.data_dir / "audit.sqlite") if settings.store == "sqlite"
            else f"PostgreSQL schema audit of {settings.postgres_db!r}")


def audit_heads(settings: Settings, folder: Path) -> Path:
    """The heads the audit service accepted, read from its store, as heads files in ``folder``."""
    from services.audit.application import AuditApplication
    from services.audit.history import missing_stores
    from services.audit.witness import write_heads_files
    from shared.errors import NotFound
    from shared.settings import AUDIT

    if missing_stores(settings, (AUDIT,)):
        raise NotFound(f"the audit service's store is not here ({where_its_store_is(settings)}): "
                       "no copy of the tree heads to check against")
    app = AuditApplication(settings)
    try:
        write_heads_files(app, folder)
    finally:
        app.close()
    return folder


def heads_now(settings: Settings) -> list[dict[str, Any]]:
    """Ask every running service to sign and publish a tree head now (as the auditor)."""
    import asyncio

    async def work(client: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(client.call(s, "tree_head") for s in SERVICES)))

    return over_the_bus(settings, "rekey-audit", work,
                        "Rekey is not running here ({}). Start it with `rekey up`.",
                        identity="auditor")


def erase_everywhere(settings: Settings, username: str) -> list[dict[str, Any]]:
    """Destroy the user's data key in every service, as the operator (its signed principal)."""
    import asyncio

    from shared.principals import operator_principal

    principal = operator_principal(settings)

    async def work(client: Any) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(
            client.call(s, "erase_user", username=username, principal=principal)
            for s in PROCESSES)))  # the audit service drops its copy too

    return over_the_bus(settings, "rekey-erase", work,
                        "Rekey is not running here ({}). Start it with `rekey up`.")
