"""The ``rekey`` command against a running stack (separate processes, real stores): bad
input and an agent's sign-in at the command line, each answered with a clear message and an
exit code, never a traceback.

None of these tests reads what another leaves, so they share one stack per store (six
processes started and stopped: about 6 s of CPU each). They are the whole module and one
xdist group, so the stack lives on one worker only while they run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from rekey.stack.processes import Stack
from shared.settings import Settings
from tests.conftest import scratch_database
from tests.e2e.running import rekey, stack_environment, use_environment

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
pytestmark = pytest.mark.e2e  # one stack per store for the module: on one worker (tests/workers.py)


@pytest.fixture(scope="module", params=STORES)
def shared_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 scratch_databases) -> Iterator[tuple[Stack, dict[str, str]]]:
    """One stack per store for this module's tests."""
    folder = tmp_path_factory.mktemp("the-cli") / "rekey"
    with contextlib.ExitStack() as held:
        postgres_db = (held.enter_context(scratch_database(scratch_databases))
                       if request.param == "postgres" else None)
        env = stack_environment(folder, request.param, postgres_db)
        with pytest.MonkeyPatch.context() as mp:
            use_environment(env, mp)
            running = held.enter_context(Stack(Settings(), env=env))
        yield running, env


@pytest.fixture
def cli_stack(shared_stack: tuple[Stack, dict[str, str]],
              monkeypatch: pytest.MonkeyPatch) -> Stack:
    """The store's shared stack, its variables set for this test's commands."""
    running, env = shared_stack
    use_environment(env, monkeypatch)
    return running


def test_the_cli_explains_bad_input_without_a_traceback(cli_stack: Stack):
    result = rekey("tickets", "show", "RK-00000000")
    assert result.returncode == 1
    assert "There is no ticket" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_approval_at_the_cli_without_a_password_says_how_to_sign_in(cli_stack: Stack, monkeypatch):
    monkeypatch.delenv("REKEY_AGENT_PASSWORD", raising=False)
    result = rekey("tickets", "approve", "RK-00000000", "--agent", "helpdesk.agent")
    assert result.returncode == 2
    assert "REKEY_AGENT_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_an_approval_at_the_cli_needs_the_agents_own_sign_in(cli_stack: Stack, monkeypatch):
    """A name typed at the command line proves nothing: the agent signs in first."""
    monkeypatch.setenv("REKEY_AGENT_PASSWORD", "not the agent's password")
    result = rekey("tickets", "approve", "RK-00000000", "--agent", "helpdesk.agent")
    assert result.returncode == 1
    assert "username or password" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def invited_agent(stack: Stack, agent: str, password: str) -> Any:
    """An agent the operator invited, enrolled with the reference authenticator app."""
    from rekey.stack.agents import invite_with_app
    from shared.bus.connection import connect
    from shared.client import RekeyClient

    async def invited() -> Any:
        nc = await connect(stack.settings, "operator", name="e2e", attempts=5)
        try:
            return await invite_with_app(RekeyClient(nc).call, stack.settings, stack.mail_folder,
                                         agent, f"{agent}@example.org", agent.title(), password)
        finally:
            await nc.close()

    return asyncio.run(invited())


def test_an_agent_at_the_cli_needs_an_authenticator_code_after_the_password(cli_stack: Stack, monkeypatch):
    """The right password alone does not act: the CLI asks for the code, and without a terminal
    says how to give it; with a fresh code the agent acts (here: looks for a ticket)."""
    app = invited_agent(cli_stack, "cli.agent", "cli agent passphrase for the tests")
    monkeypatch.setenv("REKEY_AGENT_PASSWORD", "cli agent passphrase for the tests")
    monkeypatch.delenv("REKEY_AGENT_TOTP_CODE", raising=False)
    asked = rekey("tickets", "approve", "RK-00000000", "--agent", "cli.agent")
    assert asked.returncode == 2
    assert "REKEY_AGENT_TOTP_CODE" in asked.stderr
    monkeypatch.setenv("REKEY_AGENT_TOTP_CODE", "000000")
    wrong = rekey("tickets", "approve", "RK-00000000", "--agent", "cli.agent")
    assert wrong.returncode == 1 and "code is not correct" in wrong.stderr
    monkeypatch.setenv("REKEY_AGENT_TOTP_CODE", app.code_when_due())
    signed_in = rekey("tickets", "approve", "RK-00000000", "--agent", "cli.agent")
    assert signed_in.returncode == 1 and "There is no ticket" in signed_in.stderr
    assert "Traceback" not in asked.stderr + wrong.stderr + signed_in.stderr


def test_an_agent_closes_a_review_at_the_cli_only_of_a_reset_the_person_cancelled(
        cli_stack: Stack, monkeypatch):
    """`rekey tickets close-review` acts as the signed-in agent; on a ticket nobody cancelled
    it says why not, exits 1 and changes nothing."""
    app = invited_agent(cli_stack, "review.agent", "review agent passphrase for the tests")
    filed = rekey("tickets", "request", "someone@masspasrr.org", "--name", "Some One",
                  "--email", "someone@example.org")
    assert filed.returncode == 0, filed.stderr
    number = filed.stdout.split()[1]
    monkeypatch.setenv("REKEY_AGENT_PASSWORD", "review agent passphrase for the tests")
    monkeypatch.setenv("REKEY_AGENT_TOTP_CODE", app.code_when_due())
    closed = rekey("tickets", "close-review", number, "--agent", "review.agent",
                   "--note", "the person did not ask for it")
    assert closed.returncode == 1, closed.stdout + closed.stderr
    assert "Only a reset the person cancelled" in closed.stderr
    assert "Traceback" not in closed.stderr + closed.stdout
    shown = rekey("tickets", "show", number)
    assert shown.returncode == 0 and "Open" in shown.stdout, shown.stdout
