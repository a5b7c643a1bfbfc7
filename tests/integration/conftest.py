"""A running Rekey inside the test process: real nats-server, real stores, real SMTP sink.

Each service runs with its own runtime and store (``rekey.stack.inprocess``), exactly as in
production but on the test's event loop, so a test can stop, "kill" and restart one service
while the others keep going.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from rekey.stack.agents import AuthenticatorApp, agent_principal, invite_with_app
from rekey.stack.inprocess import InProcessServices
from rekey.stack.mailsink import MailSink
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.proofs import prove_by_mail_and_id, prove_by_manager
from shared import context
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.clock import SYSTEM_CLOCK, Clock, ManualClock
from shared.contracts.envelope import ActionContext
from shared.principals import issuer_for, operator_principal
from shared.settings import SERVICES, Settings
from shared.waiting import StillWaiting
from shared.waiting import eventually as wait_until

AGENT = "agent.smith"
AGENT_PASSWORD = "a long agent passphrase for tests"
USER = "jane.doe@masspasrr.org"
USER_EMAIL = "jane.doe@example.org"
AGENT_MANAGER = "head.of.desk@example.org"  # the agent's manager on file (identity proofs)


class System(InProcessServices):
    """The services in this process (:class:`InProcessServices`), their bus, mail and a client."""

    def __init__(self, settings: Settings, nats: EmbeddedNats, mail: MailSink) -> None:
        super().__init__(settings)
        self.nats = nats
        self.mail = mail
        self.client: RekeyClient | None = None
        self._nc: Any = None
        self._last_ends: list[tuple[str, Any]] | None = None  # caught_up's previous idle pass

    async def call(self, service: str, command: str, **payload: Any) -> Any:
        assert self.client is not None
        return await self.client.call(service, command, **payload)

    def event_names(self, name: str) -> list[str]:
        return [e.name for e in self.app(name).envelopes()]

    async def caught_up(self) -> bool:
        """Whether every relay has published all its service stored and every consumer has
        handled all it was given, by each running service's own ``health``: with no mail or
        text on its way, nothing more is recorded.

        The services are asked one after another, so one pass can see ticketing idle just
        before credentials publishes an event that ticketing then records: a pass counts only
        when the previous pass (``eventually`` asks again) saw the same log ends.
        """
        running = dict.fromkeys(name.partition("#")[0] for name in self.runtimes)  # replicas
        healths = [await self.call(name, "health") for name in running]
        idle = all(h["relay_lag"] == 0 and h["consumer_pending"] in (0, None)
                   and not h["consumer_unacked"] for h in healths)
        ends = [(h["service"], h["max_notification_id"]) for h in healths]
        previous, self._last_ends = self._last_ends, (ends if idle else None)
        return idle and ends == previous

    async def provision(self) -> None:
        await self.call("credentials", "register_account", username=USER, email=USER_EMAIL,
                        display_name="Jane Doe", principal=self.operator())
        await self.call("credentials", "register_account", username=AGENT,
                        email="smith@example.org", display_name="Agent Smith", role="agent",
                        manager_email=AGENT_MANAGER,
                        password=AGENT_PASSWORD, principal=self.operator())
        await eventually(lambda: self._ticketing_knows(USER) and self._ticketing_knows(AGENT))

    def _ticketing_knows(self, username: str) -> bool:
        from services.ticketing.domain import AccountFile

        app = self.app("ticketing")
        try:
            return bool(app.repository.get(AccountFile.id_for(username)).known)
        except Exception:
            return False

    def operator(self) -> str:
        """The operator's principal, as the CLI signs it with the operator's key."""
        return operator_principal(self.settings)

    def principal(self, agent: str = AGENT) -> str:
        """An agent's principal as credentials signs one at sign-in (the tests hold the keys),
        at the time on credentials' clock (a test may have moved it)."""
        clock = self.app("credentials").clock if "credentials" in self.runtimes else SYSTEM_CLOCK
        return issuer_for(self.settings, "credentials", clock).issue(
            "agent", agent, channel="console", ttl_seconds=600, amr=("pwd", "otp")
        )

    async def invited_agent(self, agent: str = AGENT, password: str = AGENT_PASSWORD,
                            email: str = "smith@example.org") -> AuthenticatorApp:
        """The agent invited by the operator (registered if new), the invitation read from the
        mail and redeemed with a password and an authenticator app: the app, for sign-ins.
        The app reads credentials' clock: on a ``ManualClock`` its wait for a code passes at
        once."""
        clock = self.app("credentials").clock
        return await invite_with_app(self.call, self.settings, self.mail.folder, agent, email,
                                     "Agent " + agent.split(".")[-1].title(), password, clock)

    async def signed_in_agent(self, app: AuthenticatorApp, agent: str = AGENT,
                              password: str = AGENT_PASSWORD) -> str:
        """The principal credentials signs after the password and a code from ``app``."""
        return await agent_principal(self.call, agent, password, app, channel="console")

    async def prove_identity(self, ticket: str, agent: str = AGENT, *,
                             privileged: bool = False) -> dict[str, Any]:
        """Meet the default policy the way an agent would: a code mailed to the address on
        file, read back (1 point), and an ID check (1 point), enough for an ordinary account;
        ``privileged``: also the manager on file's approval by the signed link (2 points)."""
        assert self.client is not None
        principal = self.principal(agent)

        def wait(attempt: Any) -> Any:
            return eventually(attempt, what="the proof and its mail")

        proven = await prove_by_mail_and_id(self.client, self.mail.folder, ticket, principal,
                                            wait)
        if privileged:
            proven = await prove_by_manager(self.client, self.mail.folder, ticket, principal,
                                            wait)
        return proven

    async def approved_ticket(self, username: str = USER) -> str:
        ticket = await self.call("ticketing", "request_reset", name="Jane Doe", email=USER_EMAIL,
                                 username=username, reason="new phone")
        await self.prove_identity(ticket["ticket_number"])
        await self.call("ticketing", "approve", ticket=ticket["ticket_number"],
                        principal=self.principal())
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
    system._nc = await connect(system.settings, "inspector", name="tests")
    system.client = RekeyClient(system._nc, timeout=10)
    try:
        yield system
    finally:
        with contextlib.suppress(Exception):
            await system.stop_all()
        await system._nc.close()


@pytest.fixture
async def system(nats_server, mail_sink, settings_factory, store) -> AsyncIterator[System]:
    settings = settings_factory(
        nats_server, store=store.name, postgres_db=store.postgres_db, smtp_port=mail_sink.port
    )
    sys_ = System(settings, nats_server, mail_sink)
    async with connected(sys_):
        yield sys_


async def start_all(system: System, **options: Any) -> None:
    for name in SERVICES:
        await system.start(name, **options)


@contextlib.contextmanager
def from_the_web_form() -> Iterator[None]:
    """Requests filed as channel ``web`` come from the portal's web form: ticketing refuses the
    claim from any other edge. Sets what the portal's edge sets, for a call over the bus (the
    channel header) and for an application called in-process (the context)."""
    with context.calling_as(channel="portal", session_id=None), \
            context.acting(ActionContext(channel="portal", caller="portal")):
        yield

async def provisioned_on_a_manual_clock(system: System) -> ManualClock:
    """Credentials and ticketing started on one clock the test advances, accounts provisioned."""
    clock = ManualClock()
    await system.start("credentials", clock=clock)
    await system.start("ticketing", clock=clock)
    await system.provision()
    return clock


# --- verification: the local Twilio server and a System whose services use it -------------------
TWILIO_SID = "AC" + "5" * 32
TWILIO_TOKEN = "sim-auth-token-for-tests-0123456789"


@pytest.fixture
def twilio_sim(tmp_path):
    """The local Twilio-compatible server on a free port, keeping texts and calls in tmp_path."""
    from rekey.stack.ports import free_port
    from rekey.stack.twilio_sim import TwilioSim

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
    from rekey.stack.ports import free_port

    settings = settings_factory(
        nats_server, store=store.name, postgres_db=store.postgres_db, smtp_port=mail_sink.port,
        twilio_api_url=twilio_sim.url, twilio_account_sid=TWILIO_SID, twilio_auth_token=TWILIO_TOKEN,
        webhook_port=free_port(),
    )
    sys_ = System(settings, nats_server, mail_sink)
    sys_.twilio = twilio_sim  # type: ignore[attr-defined]
    async with connected(sys_):
        yield sys_


async def start_verification(system: System, clock: Clock | None = None) -> None:
    """Start the verification service (on ``clock``, if given) and wait until it answers (its
    first request can race its start when it is the only service started)."""
    from shared.errors import Unavailable

    await system.start("verification", clock=clock)

    async def answers() -> bool:
        try:
            return bool(await system.call("verification", "health"))
        except Unavailable:
            return False

    await eventually(answers, what="the verification service to answer")
