"""The benchmark itself works (figures are printed by `rekey bench pipeline`, never asserted)."""

from __future__ import annotations

import pytest

from rekey.bench.pipeline import run_pipeline_bench


async def test_the_pipeline_benchmark_measures_every_figure_on_sqlite():
    figures = await run_pipeline_bench(["sqlite"], events=50, resets=2)
    assert [f.name for f in figures] == [
        "JetStream publish (baseline)",
        "store commit (baseline)",
        "relay -> JetStream -> consumer",
        "start over unswept events",
        "guided resets (4 at a time)",
    ]
    assert all(f.count > 0 and f.seconds > 0 for f in figures)


async def test_the_audit_benchmark_fills_the_index_from_a_real_reset_and_measures_history():
    from rekey.bench.audit import run_audit_bench

    figures = await run_audit_bench(["sqlite"], sizes=[300, 600], queries=20)

    assert [(f.events, f.measure) for f in figures] == [
        (300, "history, in the service"), (300, "history over the bus"),
        (600, "history, in the service"), (600, "history over the bus")]
    assert all(0 < f.p50_ms <= f.p99_ms for f in figures)


REQUIRED = {"resets_per_s", "sign_ins_per_s", "sign_ins_one_account_per_s",
            "pipeline_events_per_s", "start_over_unswept_s", "totp_check_p99_ms", "up_ready_s"}


def test_bench_all_prints_one_well_formed_figure_per_line_each_beside_its_limit():
    import json
    import math

    from typer.testing import CliRunner

    from rekey.cli.app import app

    result = CliRunner().invoke(app, ["bench", "all", "--json", "--small", "--store", "sqlite"])

    assert result.exit_code == 0, result.output
    figures = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert {f["name"] for f in figures} >= REQUIRED
    for figure in figures:
        assert {"name", "store", "value", "unit", "limit", "ratio"} <= set(figure)
        assert figure["store"] == "sqlite"
        # CPU time is read in clock ticks: a service idle during a few sign-ins reads 0
        cpu = figure["name"] in ("reset_cpu_s", "sign_in_cpu_ms")
        assert math.isfinite(figure["value"]) and (figure["value"] >= 0 if cpu else
                                                   figure["value"] > 0)
        assert (figure["limit"] is None) == (figure["ratio"] is None)
    with_limits = {f["name"] for f in figures if f["limit"] is not None}
    assert with_limits >= {"resets_per_s", "sign_ins_per_s", "sign_ins_one_account_per_s",
                           "pipeline_events_per_s", "totp_check_p99_ms"}
    # the pipeline's limit: the bare commit rate measured on both sides of it, their mean
    [pipeline] = [f for f in figures if f["name"] == "pipeline_events_per_s"]
    assert pipeline["commits_before"] > 0 and pipeline["commits_after"] > 0
    assert pipeline["limit"] == pytest.approx(
        (pipeline["commits_before"] + pipeline["commits_after"]) / 2, rel=1e-3)
    # where a sign-in's CPU goes: credentials verifies the password, so never nothing
    [credentials] = [f for f in figures
                     if f["name"] == "sign_in_cpu_ms" and f["process"] == "credentials"]
    assert credentials["value"] > 0
    # memory: every process of the stack, idle and under load
    processes = {f["process"] for f in figures if f["name"] == "rss_idle_mb"}
    assert {"credentials", "ticketing", "verification", "consent", "audit", "portal"} <= processes
