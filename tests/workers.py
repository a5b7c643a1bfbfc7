"""How `./scripts/test` shares the tests among its worker processes (pytest-xdist).

Each test is a unit of work of its own, taken in the order ``tests/conftest.py`` sets, except a
module whose tests share one running stack (a module-scoped fixture): it runs whole on one
worker, so its stack starts once.

pytest-xdist's own groups (``xdist_group`` with ``--dist loadgroup``) ride on an ``@group``
suffix that its worker adds to each node id, and pytest 9.2 no longer lets a plugin change a
node id: the groups were silently lost, and a browser module started its stack on every worker
that took one of its tests (seen: 16 extra starts, 16 extra stops). The scheduler below groups by
path instead, which the controller knows without the items.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Modules whose tests share a module-scoped stack (tests/unit/test_workers.py keeps it complete).
ONE_WORKER = ("tests/browser/", "tests/e2e/test_the_cli.py")


def unit_of_work(nodeid: str) -> str:
    """The module for a test of a shared-stack module, else the test itself."""
    module = nodeid.split("::", 1)[0]
    return module if module.startswith(ONE_WORKER) else nodeid


class SharedStackScheduling(LoadScopeScheduling):
    """pytest-xdist's scope scheduling, one unit of work per test or shared-stack module."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of_work(nodeid)
