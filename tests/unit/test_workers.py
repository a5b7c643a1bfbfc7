"""The tests' units of work for the workers side by side (tests/workers.py)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.workers import ONE_WORKER, unit_of_work

TESTS = Path(__file__).parents[1]


def test_a_browser_modules_tests_are_one_unit_of_work():
    assert unit_of_work("tests/browser/test_portal_guide.py::test_a") == \
        unit_of_work("tests/browser/test_portal_guide.py::test_b") == \
        "tests/browser/test_portal_guide.py"


def test_the_cli_modules_tests_on_both_stores_are_one_unit_of_work():
    assert unit_of_work("tests/e2e/test_the_cli.py::test_a[sqlite]") == \
        unit_of_work("tests/e2e/test_the_cli.py::test_b[postgres]")


def test_any_other_test_is_a_unit_of_work_of_its_own():
    assert unit_of_work("tests/security/test_store_tampering.py::test_a[sqlite]") == \
        "tests/security/test_store_tampering.py::test_a[sqlite]"
    assert unit_of_work("tests/e2e/test_the_guide.py::test_a") == "tests/e2e/test_the_guide.py::test_a"


def test_every_module_that_shares_a_stack_among_its_tests_stays_on_one_worker():
    """A module-scoped fixture outside the unit tests (or the browser modules' ``running``)
    is a stack shared by the module's tests: split across workers, it starts on each."""
    sharing = sorted(
        path.relative_to(TESTS.parent).as_posix()
        for path in TESTS.rglob("test_*.py")
        if "unit" not in path.parts
        and re.search(r'scope="module"|def test_\w+\(\s*running\b', path.read_text())
    )
    assert sharing, "no module shares a stack: the check reads the wrong folder"
    assert [module for module in sharing if not module.startswith(ONE_WORKER)] == []
