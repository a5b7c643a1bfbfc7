"""The whole system as separate processes (rekey.stack.processes.Stack, with the portal) and Debian's
Chromium driven by Playwright. Chromium is launched by path; no browser is downloaded.

Screenshots go to a temporary folder; set REKEY_SCREENSHOTS=docs/screenshots to refresh the
pictures the README shows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rekey.stack.agents import AuthenticatorApp, invite_with_app
from rekey.stack.environment import prepare_environment
from rekey.stack.ports import free_port
from rekey.stack.processes import Stack
from rekey.stack.proofs import prove_by_mail_and_id, prove_by_manager
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.errors import NotAllowed, NotFound
from shared.principals import operator_principal
from shared.settings import Settings
from shared.waiting import eventually
from tests.conftest import without_rekey_variables

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
AGENT = "helpdesk.agent"
AGENT_PASSWORD = "quiet river lantern mosaic violet"
# The agent whose principal arranges a test's tickets over the bus (Running.agent_principal).
BUS_AGENT = "approvals.agent"
BUS_AGENT_PASSWORD = "amber harbour quill meadow"
PHONE = {"width": 390, "height": 844}
DESK = {"width": 1100, "height": 800}

pytestmark = pytest.mark.browser


class Running:
    """The running stack, its portal's address and a way to call the services."""

    agent = AGENT
    agent_password = AGENT_PASSWORD
    phone = PHONE
    desk = DESK

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.url = f"http://localhost:{stack.settings.portal_port}"
        self.apps: dict[str, AuthenticatorApp] = {}  # each invited agent's authenticator app
        self.principals: dict[str, tuple[str, float]] = {}  # agent: (principal, signed at)

    def invite(self, agent: str, password: str, email: str, display_name: str) -> AuthenticatorApp:
        """The operator invites the agent; the agent redeems the mailed invitation with a
        password and an authenticator app (kept here for the agent's sign-ins)."""

        async def go() -> AuthenticatorApp:
            nc = await connect(self.settings, "operator", name="browser-tests", attempts=5)
            try:
                return await invite_with_app(RekeyClient(nc).call, self.settings,
                                             self.stack.mail_folder, agent, email, display_name,
                                             password)
            finally:
                await nc.close()

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            self.apps[agent] = pool.submit(asyncio.run, go()).result()
        return self.apps[agent]

    @staticmethod
    def console_password(page: Any, agent: str, password: str) -> None:
        """The console's first step: the username and the password."""
        for label, value in (("Username", agent), ("Password", password)):
            page.get_by_label(label).fill(value)
        page.get_by_role("button", name="Sign in").click()

    def console_sign_in(self, page: Any, agent: str | None = None, password: str | None = None) -> None:
        """On the console's sign-in page: the password, then a code from the agent's app."""
        agent = agent or self.agent
        self.console_password(page, agent, password or self.agent_password)
        self.console_code(page, agent)

    def console_code(self, page: Any, agent: str) -> None:
        """The console's second step, by code: the next one from the agent's app."""
        page.get_by_label("Authenticator code").fill(self.apps[agent].code_when_due())
        page.get_by_role("button", name="Verify").click()

    def agent_principal(self, agent: str | None = None, password: str | None = None) -> str:
        """An agent's principal over the bus: the password, then a code from the app.

        Kept for the module, as the CLI keeps it for the agent's shift (it lives
        ``principal_minutes``). Each sign-in of an agent takes a code of a new 30-second step
        (credentials accepts each step once, one early), so the third sign-in in a step waits
        for the clock: without ``agent``, the principal is that of an agent of its own
        (:data:`BUS_AGENT`, invited at its first use), whose codes the console sign-ins of
        :data:`AGENT` never wait for."""
        if agent is None:
            agent, password = BUS_AGENT, BUS_AGENT_PASSWORD
            if agent not in self.apps:
                self.invite(agent, password, "approvals@example.org", "Approvals Agent")
        kept = self.principals.get(agent)
        half_its_life = self.settings.principal_minutes * 60 / 2
        if kept is not None and time.monotonic() - kept[1] < half_its_life:
            return kept[0]
        answer = self.call("credentials", "sign_in", username=agent,
                           password=password or self.agent_password, channel="cli")
        principal = str(self.call("credentials", "agent_totp_verify",
                                  token=answer["second_factor"]["token"],
                                  code=self.apps[agent].code_when_due(), channel="cli")["principal"])
        self.principals[agent] = (principal, time.monotonic())
        return principal

    def ticketing_knows(self, username: str) -> bool:
        """Whether ticketing has read the account's AccountRegistered (from its store, as it
        reads it): a request filed before then is for an account it does not know."""
        from services.ticketing.application import TicketingApplication
        from services.ticketing.domain import AccountFile

        app = TicketingApplication(self.settings)
        try:
            file = app.find(AccountFile.id_for(username))
            return bool(file is not None and file.known)
        finally:
            app.close()

    def operator(self) -> str:
        """The operator's principal, as the CLI signs it with the operator's key."""
        return operator_principal(self.settings)

    def call(self, service: str, command: str, identity: str = "operator", **payload: Any) -> Any:
        return self._with_client(lambda client: client.call(service, command, **payload),
                                 identity)

    def prove_identity(self, ticket: str, principal: str, *,
                       privileged: bool = False) -> dict[str, Any]:
        """A code mailed to the address on file, read back, and an ID check, over the bus;
        ``privileged``: also the manager on file's approval from the mailed link."""

        def wait(attempt: Any) -> Any:
            return eventually(attempt, what="the proof and its mail", timeout=30,
                              retry_on=(NotAllowed, NotFound))

        async def prove(client: RekeyClient) -> dict[str, Any]:
            folder = self.stack.mail_folder
            proven = await prove_by_mail_and_id(client, folder, ticket, principal, wait)
            if privileged:
                proven = await prove_by_manager(client, folder, ticket, principal, wait)
            return proven

        return self._with_client(prove)  # type: ignore[no-any-return]

    def _with_client(self, work: Callable[[RekeyClient], Awaitable[Any]],
                     identity: str = "operator") -> Any:
        async def go() -> Any:
            nc = await connect(self.settings, identity, name="browser-tests", attempts=5)
            try:
                return await work(RekeyClient(nc))
            finally:
                await nc.close()

        # In a thread of its own: Playwright's sync API keeps an event loop on this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()


@pytest.fixture(scope="module")
def stack_settings() -> dict[str, str]:
    """Extra REKEY_* variables for the stack; a test module with other rules overrides this."""
    return {}


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory,
            stack_settings: dict[str, str]) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("portal") / "rekey"
    overrides = {
        "REKEY_NATS_URL": f"tls://127.0.0.1:{free_port()}",
        "REKEY_SMTP_PORT": str(free_port()),
        "REKEY_PORTAL_PORT": str(free_port()),
        "REKEY_PORTAL_HOST": "127.0.0.1",
        "REKEY_PORTAL_DEV_PAGES": "true",
        "REKEY_PORTAL_SIGN_IN_ATTEMPTS": "30",
        "REKEY_STORE": "sqlite",
        **stack_settings,
    }
    with pytest.MonkeyPatch.context() as mp:
        without_rekey_variables(mp)
        env = prepare_environment(folder, **overrides)
        for key, value in env.items():
            mp.setenv(key, value)
        with Stack(Settings(), env=env, portal=True) as stack:
            running = Running(stack)
            running.invite(AGENT, AGENT_PASSWORD, "agent@example.org", "Help Desk Agent")
            yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)  # .ci/run installs it; CI must not skip
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any, str], Path]:
    """``shot(page, name)``: one screen as a small PNG (the viewport only)."""
    wanted = os.environ.get("REKEY_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path))
        assert path.stat().st_size > 0
        return path

    return take


# --- accessibility: axe-core in the page -----------------------------------------------------------
AXE_VERSION = "4.10.3"
VENDOR = Path(__file__).parent / "vendor"
AXE_SCRIPT = VENDOR / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS = ({"width": 1100, "height": 800}, {"width": 375, "height": 740})


def _axe_script() -> Path | str:
    """axe-core from the npm registry, fetched once into tests/browser/vendor (not committed);
    the reason when it cannot be had."""
    import shutil
    import subprocess

    VENDOR.mkdir(exist_ok=True)
    # Workers side by side start their browser modules together: one fetches, the others wait
    # for it rather than read a half-written file (and two npm installs into one folder break
    # each other's files: TAR_ENTRY_ERROR).
    with (VENDOR / ".fetching").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if AXE_SCRIPT.exists():
            return AXE_SCRIPT
        npm = shutil.which("npm")
        if npm is None:
            return "npm is missing: apt-get install npm (axe-core comes from the npm registry)"
        done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                               str(VENDOR), f"axe-core@{AXE_VERSION}"],
                              capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or not AXE_SCRIPT.exists():
        return f"axe-core could not be fetched from the npm registry: {done.stderr.strip()[-300:]}"
    return AXE_SCRIPT


@pytest.fixture(scope="session")
def axe() -> Callable[[Any], None]:
    """``axe(page)``: axe-core's checks (WCAG 2.1 A and AA, and its best practices) on the page
    at desktop and 375 px widths; any violation fails the test, named with its nodes."""
    script = _axe_script()
    if isinstance(script, str):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(script)
        pytest.skip(script)

    source = script.read_text()

    def check(page: Any) -> None:
        original = page.viewport_size
        try:
            for size in WIDTHS:
                page.set_viewport_size(size)
                if not page.evaluate("() => typeof window.axe !== 'undefined'"):
                    # evaluated through the DevTools protocol: the page's CSP allows no inline
                    # script, and rightly so
                    page.evaluate(source + "\n;true")
                found = page.evaluate("async () => (await axe.run(document)).violations")
                problems = [f"{v['id']} ({v['impact']}): {v['help']} at "
                            + ", ".join(str(n["target"]) for n in v["nodes"][:3])
                            for v in found]
                assert not problems, (f"{page.url} at {size['width']} px: "
                                      + "; ".join(problems))
        finally:
            if original:
                page.set_viewport_size(original)

    return check
