"""``rekey bench all`` and ``rekey bench report``: every figure beside its limit (rekey/bench/all.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def bench_all(
    store: Annotated[list[str] | None, typer.Option(help="sqlite and/or postgres")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    small: Annotated[bool, typer.Option("--small", help="A quick run at a small size")] = False,
    events: Annotated[int | None, typer.Option(help="Events for the pipeline and baselines")] = None,
    resets: Annotated[int | None, typer.Option(help="Guided resets per concurrency level")] = None,
) -> None:
    """Every figure (resets, sign-ins, pipeline, TOTP p99, start-up, memory) beside its limit."""
    from rekey.bench.all import Result, Size, run_all

    logging.basicConfig(level=logging.WARNING)
    size = Size.small() if small else Size()
    size.events = events or size.events
    size.resets = resets or size.resets
    results: list[Result] = []

    def emit(result: Result) -> None:
        results.append(result)
        if as_json:
            print(json.dumps(result.as_json()), flush=True)

    asyncio.run(run_all(store or ["sqlite", "postgres"], size, emit))
    if not as_json:
        table = Table("store", "figure", "value", "limit", "ratio", "at")
        for r in results:
            at = ", ".join(f"{k} {v}" for k, v in r.detail.items())
            table.add_row(r.store or "", r.name, f"{r.value:,.2f} {r.unit}",
                          "" if r.limit is None else f"{r.limit:,.2f}",
                          "" if r.ratio is None else f"{r.ratio:.2f}", at)
        console.print(table)


def bench_report(
    figures: Annotated[Path | None, typer.Option(
        help="JSON lines from `rekey bench all --json` (default: run it now)")] = None,
    output: Annotated[Path, typer.Option(help="The report to write")] = Path("docs/benchmarks.md"),
    charts: Annotated[bool, typer.Option(help="PNG charts beside it (needs matplotlib)")] = True,
) -> None:
    """Write docs/benchmarks.md's measured section (and its charts) from one run's figures."""
    from rekey.bench.report import write_report

    if figures is None:
        from rekey.bench.all import Size, run_all

        collected: list[dict] = []
        asyncio.run(run_all(["sqlite", "postgres"], Size(), lambda r: collected.append(r.as_json())))
    else:
        collected = [json.loads(line) for line in figures.read_text().splitlines() if line.strip()]
    write_report(collected, output, charts=charts)
    console.print(f"wrote {output}")


def register(bench: typer.Typer) -> None:
    bench.command("all")(bench_all)
    bench.command("report")(bench_report)
