"""The benchmark itself works (figures are printed by `rekey bench pipeline`, never asserted)."""

from __future__ import annotations

from rekey.bench import run_pipeline_bench


async def test_the_pipeline_benchmark_measures_every_figure_on_sqlite():
    figures = await run_pipeline_bench(["sqlite"], events=50, resets=2)
    assert [f.name for f in figures] == [
        "JetStream publish (baseline)",
        "store commit (baseline)",
        "relay -> JetStream -> consumer",
        "guided resets (4 at a time)",
    ]
    assert all(f.count > 0 and f.seconds > 0 for f in figures)
