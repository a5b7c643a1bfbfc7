"""`rekey bench report` rewrites only its own section of docs/benchmarks.md, with charts."""

from __future__ import annotations

import importlib.util

from rekey.bench.report import BEGIN, END, write_report

FIGURES = [
    {"name": "sign_ins_per_s", "store": "sqlite", "value": 40.0, "unit": "sign-in/s",
     "limit": 90.0, "ratio": 0.444, "concurrency": c} for c in (1, 4)
] + [
    {"name": "sign_in_p99_ms", "store": "sqlite", "value": 30.0 * c, "unit": "ms", "limit": None,
     "ratio": None, "concurrency": c} for c in (1, 4)
] + [{"name": "up_ready_s", "store": "sqlite", "value": 2.5, "unit": "s", "limit": None,
      "ratio": None}]


def test_the_report_keeps_the_hand_written_text_and_replaces_only_its_section(tmp_path):
    report = tmp_path / "benchmarks.md"
    report.write_text(f"# Figures\n\nWhy argon2 runs in threads.\n\n{BEGIN}\nold table\n{END}\n\nMore.\n")

    write_report(FIGURES, report, charts=True)

    text = report.read_text()
    assert "Why argon2 runs in threads." in text and text.endswith("More.\n")
    assert "old table" not in text
    assert "| sqlite | sign_ins_per_s | concurrency 4 | 40.00 | sign-in/s | 90.00 | 0.44 |" in text
    assert "| sqlite | up_ready_s |  | 2.50 | s |  |  |" in text
    if importlib.util.find_spec("matplotlib"):  # the `bench` extra: charts beside the tables
        assert (tmp_path / "benchmarks" / "sign_ins_per_s.png").stat().st_size > 0
        assert "![sign_in_ms](benchmarks/sign_in_ms.png)" in text
