"""The whole system as separate processes (rekey.stack.Stack, with the portal) and Debian's
Chromium driven by Playwright. Chromium is launched by path; no browser is downloaded.

Screenshots go to a temporary folder; set REKEY_SCREENSHOTS=docs/screenshots to refresh the
pictures the README shows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rekey.ports import free_port
from rekey.stack import Stack, prepare_environment
from shared.bus.stream import connect
from shared.client import RekeyClient
from shared.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
AGENT = "helpdesk.agent"
AGENT_PASSWORD = "quiet river lantern mosaic violet"
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

    def call(self, service: str, command: str, **payload: Any) -> Any:
        async def go() -> Any:
            nc = await connect(self.settings.nats_url, "browser-tests", attempts=5)
            try:
                return await RekeyClient(nc).call(service, command, **payload)
            finally:
                await nc.close()

        # In a thread of its own: Playwright's sync API keeps an event loop on this one.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("portal") / "rekey"
    overrides = {
        "REKEY_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "REKEY_SMTP_PORT": str(free_port()),
        "REKEY_PORTAL_PORT": str(free_port()),
        "REKEY_PORTAL_HOST": "127.0.0.1",
        "REKEY_PORTAL_DEV_PAGES": "true",
        "REKEY_PORTAL_SIGN_IN_ATTEMPTS": "30",
        "REKEY_STORE": "sqlite",
    }
    with pytest.MonkeyPatch.context() as mp:
        for variable in list(os.environ):
            if variable.startswith("REKEY_"):
                mp.delenv(variable)
        env = prepare_environment(folder, **overrides)
        for key, value in env.items():
            mp.setenv(key, value)
        with Stack(Settings(), env=env, portal=True) as stack:
            running = Running(stack)
            running.call("credentials", "register_account", username=AGENT,
                         email="agent@example.org", display_name="Help Desk Agent", role="agent",
                         password=AGENT_PASSWORD)
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
