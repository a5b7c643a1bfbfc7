"""A running Rekey inside the test process: real nats-server, real stores, real SMTP sink.

Each service runs with its own runtime and store, exactly as in production but on the test's
event loop, so a test can stop, "kill" and restart one service while the others keep going.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rekey.mailsink import MailSink
from rekey.natsd import EmbeddedNats
from shared.bus.stream import connect
from shared.client import RekeyClient
from shared.runtime import ServiceRuntime
from shared.settings import SERVICES, Settings
from shared.waiting import StillWaiting
from shared.waiting import eventually as wait_until

AGENT = "agent.smith"
AGENT_PASSWORD = "a long agent passphrase for tests"
USER = "jane.doe@masspasrr.org"
USER_EMAIL = "jane.doe@example.org"


class System:
    def __init__(self, settings: Settings, nats: EmbeddedNats, mail: MailSink) -> None:
        self.settings = settings
        self.nats = nats
        self.mail = mail
        self.runtimes: dict[str, ServiceRuntime] = {}
        self.client: RekeyClient | None = None
        self._nc: Any = None
        self.killed: list[ServiceRuntime] = []

    async def start(self, name: str, **options: Any) -> ServiceRuntime:
        bootstrap = importlib.import_module(f"services.{name}.bootstrap")
        wiring = await asyncio.to_thread(bootstrap.build, self.settings)
        runtime = ServiceRuntime(wiring, self.settings, **options)
        await runtime.start()
        self.runtimes[name] = runtime
        return runtime

    async def stop(self, name: str) -> None:
        await self.runtimes.pop(name).stop()

    async def kill(self, name: str) -> None:
        """Like SIGKILL: no drain, no ack, no position saved; only the store stays.

        The dead runtime's application is left open, as a killed process would leave its
        files: closing it under a worker thread's running query is what a kill cannot do.
        """
        runtime = self.runtimes.pop(name)
        for task in runtime.tasks:
            task.cancel()
        for task in runtime.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runtime.nc.close()
        self.killed.append(runtime)

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        assert self.client is not None
        return await self.client.call(service, command, **payload)

    def app(self, name: str) -> Any:
        return self.runtimes[name].wiring.app

    def event_names(self, name: str) -> list[str]:
        return [e.name for e in self.app(name).envelopes()]

    async def provision(self) -> None:
        await self.call("credentials", "register_account", username=USER, email=USER_EMAIL,
                        display_name="Jane Doe")
        await self.call("credentials", "register_account", username=AGENT,
                        email="smith@example.org", display_name="Agent Smith", role="agent",
                        password=AGENT_PASSWORD)
        await eventually(lambda: self._ticketing_knows(USER) and self._ticketing_knows(AGENT))

    def _ticketing_knows(self, username: str) -> bool:
        from services.ticketing.domain import AccountFile

        app = self.app("ticketing")
        try:
            return bool(app.repository.get(AccountFile.id_for(username)).known)
        except Exception:
            return False

    async def approved_ticket(self, username: str = USER) -> str:
        ticket = await self.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                                 username=username, reason="new phone")
        await self.call("ticketing", "approve", ticket=ticket["ticket_number"], agent=AGENT)
        return str(ticket["ticket_number"])


async def eventually(
    check: Callable[[], Any | Awaitable[Any]], timeout: float = 15.0, what: str = "condition"
) -> Any:
    try:
        return await wait_until(check, what=what, timeout=timeout)
    except StillWaiting as exc:
        raise AssertionError(str(exc)) from None


@contextlib.asynccontextmanager
async def connected(system: System) -> AsyncIterator[System]:
    """A client on the bus for the test; every service still running is stopped after."""
    system._nc = await connect(system.settings.nats_url, "tests")
    system.client = RekeyClient(system._nc, timeout=10)
    try:
        yield system
    finally:
        for name in list(system.runtimes):
            with contextlib.suppress(Exception):
                await system.stop(name)
        await system._nc.close()


@pytest.fixture
async def system(nats_server, mail_sink, settings_factory, store) -> AsyncIterator[System]:
    settings = settings_factory(
        nats_server.url, store=store.name, postgres_db=store.postgres_db, smtp_port=mail_sink.port
    )
    sys_ = System(settings, nats_server, mail_sink)
    async with connected(sys_):
        yield sys_


async def start_all(system: System, **options: Any) -> None:
    for name in SERVICES:
        await system.start(name, **options)


# --- verification: the local Twilio server and a System whose services use it -------------------
TWILIO_SID = "AC" + "5" * 32
TWILIO_TOKEN = "sim-auth-token-for-tests-0123456789"


@pytest.fixture
def twilio_sim(tmp_path):
    """The local Twilio-compatible server on a free port, keeping texts and calls in tmp_path."""
    from rekey.ports import free_port
    from rekey.twilio_sim import TwilioSim

    sim = TwilioSim(tmp_path / "twilio", account_sid=TWILIO_SID, auth_token=TWILIO_TOKEN,
                    port=free_port(), answer_delay=0.05)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
async def phone_system(nats_server, mail_sink, settings_factory, store, twilio_sim) -> AsyncIterator[System]:
    """Like ``system``, with verification's texts and calls going through ``twilio_sim``."""
    from rekey.ports import free_port

    settings = settings_factory(
        nats_server.url, store=store.name, postgres_db=store.postgres_db, smtp_port=mail_sink.port,
        twilio_api_url=twilio_sim.url, twilio_account_sid=TWILIO_SID, twilio_auth_token=TWILIO_TOKEN,
        webhook_port=free_port(),
    )
    sys_ = System(settings, nats_server, mail_sink)
    sys_.twilio = twilio_sim  # type: ignore[attr-defined]
    async with connected(sys_):
        yield sys_


async def start_verification(system: System) -> None:
    """Start the verification service and wait until it answers (its first request can race
    its start when it is the only service started)."""
    from shared.errors import Unavailable

    await system.start("verification")

    async def answers() -> bool:
        try:
            return bool(await system.call("verification", "health"))
        except Unavailable:
            return False

    await eventually(answers, what="the verification service to answer")
