"""`./scripts/test` installs Chromium only when the browser tests are selected: options alone
select every test, paths select the browser tests when one is `tests/` or under `tests/browser`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test"
# The script's own function, read from it, called with the arguments given to the script.
CALL = ('eval "$(sed -n \'/^browser_tests_selected()/,/^}/p\' "$0")"; '
        'browser_tests_selected "$@"')


def selects_browser_tests(*args: str) -> bool:
    done = subprocess.run(["bash", "-c", CALL, str(SCRIPT), *args], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode == 0


@pytest.mark.parametrize("args", [
    (), ("--durations=40",), ("-k", "passkey"), ("-p", "some_plugin"), ("tests",),
    ("./tests/",), ("tests/browser",), ("tests/unit", "tests/browser/test_portal_guide.py"),
])
def test_these_command_lines_select_the_browser_tests(args):
    assert selects_browser_tests(*args)


@pytest.mark.parametrize("args", [
    ("tests/unit",), ("--durations=10", "tests/integration"),
    ("tests/e2e/test_the_cli.py", "-k", "bad_input"),
])
def test_these_command_lines_do_not(args):
    assert not selects_browser_tests(*args)
