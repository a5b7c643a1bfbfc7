"""`rekey bench challenges` runs and prints figures (no timing is asserted)."""

from __future__ import annotations

from rekey.bench.challenges import run_challenge_bench


async def test_the_challenge_bench_measures_totp_and_push_latency():
    figures = await run_challenge_bench(["sqlite"], 3)

    assert [(f.method, f.count) for f in figures] == [("totp code", 3), ("push approval", 3)]
    assert all(f.p50 > 0 and f.p99 >= f.p50 for f in figures)
