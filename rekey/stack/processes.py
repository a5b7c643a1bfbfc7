"""The embedded stack: nats-server, the mail sink, the four services and audit as processes.

``rekey up`` runs it in the foreground; ``rekey demo --embedded`` and the end-to-end tests
start and stop one of their own in a temporary folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from rekey.stack.buskeys import BusKeys
from rekey.stack.mailsink import MailSink
from rekey.stack.natsd import EmbeddedNats
from rekey.stack.ports import free_port
from rekey.stack.startable import Startable
from rekey.stack.supervisor import STATE_FILE, Supervisor, Watched
from rekey.stack.twilio_sim import twilio_sim_for
from shared.bus.connection import connect
from shared.client import RekeyClient
from shared.errors import RekeyError
from shared.files import keep_files_private, private_folder
from shared.settings import PROCESSES, Settings

log = logging.getLogger(__name__)

# How often start-up asks a process that does not answer yet. Cheap: until a service
# subscribes, NATS answers "no responders" at once, and the portal's port refuses at once; a
# longer wait only adds to `rekey up`'s time (0.2 s here was up to 0.4 s of it).
POLL_SECONDS = 0.05


class Stack(Startable):
    def __init__(
        self, settings: Settings, *, env: dict[str, str] | None = None, portal: bool = False,
        supervise: bool = False,
    ) -> None:
        self.settings = settings
        self.with_portal = portal
        self.env = {**os.environ, **(env or {})}
        if not self.env.get("REKEY_INTAKE_PORT"):  # ticketing's mail intake for the help desk address
            self.env["REKEY_INTAKE_PORT"] = str(free_port())
        self.intake_port = int(self.env["REKEY_INTAKE_PORT"])
        self.data_dir = Path(settings.data_dir)
        url = urlparse(settings.nats_url)
        keys = BusKeys(Path(settings.nats_keys_dir)) if settings.nats_keys_dir else None
        self.nats = EmbeddedNats(
            port=url.port or 4222, store_dir=self.data_dir / "nats", host=url.hostname or "127.0.0.1",
            keys=keys,
        )
        self.mail = MailSink(self.data_dir / "mail", port=settings.smtp_port)
        self.twilio = twilio_sim_for(settings, self.data_dir)  # --- verification
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # Each process's /livez, /readyz and /metrics port, kept across restarts and written to
        # health.json for `rekey status` (shared/health.py).
        self.health_ports: dict[str, int] = {}
        # `rekey up` supervises: a process that dies is started again (rekey/stack/supervisor.py)
        self.lock = threading.Lock()
        self.supervisor = (Supervisor(self._watched, self.data_dir / STATE_FILE, lock=self.lock)
                           if supervise else None)

    @property
    def mail_folder(self) -> Path:
        return self.data_dir / "mail"

    def start(self) -> None:
        keep_files_private()  # stores, vault, mail, logs: 0600, in the sinks' threads too
        private_folder(self.data_dir)
        self.nats.start()
        self.mail.start()
        if self.twilio is not None:
            self.twilio.start()
        for name in PROCESSES:
            self.start_service(name)
        if self.with_portal:  # it needs no service to start: it loads while they do
            self.start_service("portal")
        asyncio.run(self.wait_healthy())
        if self.with_portal:
            self.start_portal()
        if self.supervisor is not None:
            self.supervisor.start()

    def _watched(self) -> dict[str, Watched]:
        """nats-server and every process started and not stopped on purpose (under the lock)."""
        watched: dict[str, Watched] = {name: _Child(self, name) for name in self.processes}
        return {"nats": _Nats(self.nats), **watched}

    # --- portal: the web edge, a process too, started once the services answer
    @property
    def portal_url(self) -> str:
        from services.portal.app import display_url

        return display_url(self.settings)

    def start_portal(self, timeout: float = 30.0) -> None:
        import urllib.request

        if "portal" not in self.processes:
            self.start_service("portal")
        host = self.settings.portal_host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        url = f"http://{host}:{self.settings.portal_port}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if self.processes["portal"].poll() is not None:
                raise RuntimeError(f"the portal exited; see {self.data_dir}/logs/portal.log")
            if time.monotonic() > deadline:
                raise RuntimeError("the portal did not start")
            time.sleep(POLL_SECONDS)

    def start_service(self, name: str) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = (logs / f"{name}.log").open("ab")
        port = self.health_ports.setdefault(name, free_port())
        write_health_ports(self.data_dir, self.health_ports)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "rekey", "serve", name],
            env={**self.env, "REKEY_HEALTH_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        self.stop_services([name], kill=kill)

    def stop_services(self, names: list[str], *, kill: bool = False, timeout: float = 15.0) -> None:
        """Signal them all, then wait for each: they stop side by side, not one after another."""
        with self.lock:  # no longer the supervisor's to restart
            stopping = [p for p in (self.processes.pop(name, None) for name in names)
                        if p is not None]
        for process in stopping:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in stopping:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        nc = await connect(self.settings, "operator", name="rekey-stack")
        client = RekeyClient(nc, timeout=2)
        deadline = time.monotonic() + timeout
        try:
            for name in [n for n in self.processes if n != "portal"]:  # it answers /healthz
                while True:
                    with contextlib.suppress(RekeyError):
                        await client.call(name, "health")
                        break
                    if self.processes[name].poll() is not None:
                        raise RuntimeError(f"the {name} service exited; see {self.data_dir}/logs")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {name} service did not become healthy")
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            await nc.close()

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()  # nothing is started again from here on
        self.stop_service("portal")  # the edge first, then the services behind it
        self.stop_services(list(self.processes))
        with contextlib.suppress(Exception):
            self.mail.stop()
        if self.twilio is not None:
            with contextlib.suppress(Exception):
                self.twilio.stop()
        with contextlib.suppress(Exception):
            self.nats.stop()



class _Child:
    """A service or the portal, as the supervisor sees it."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.stack, self.name = stack, name

    def _process(self) -> subprocess.Popen[bytes] | None:
        return self.stack.processes.get(self.name)

    def pid(self) -> int | None:
        process = self._process()
        return process.pid if process is not None and process.poll() is None else None

    def exit_code(self) -> int | None:
        process = self._process()
        return None if process is None else process.poll()  # poll() reaps: no zombie

    def restart(self) -> None:
        self.stack.start_service(self.name)


class _Nats:
    def __init__(self, nats: EmbeddedNats) -> None:
        self.nats = nats

    def pid(self) -> int | None:
        process = self.nats.process
        return process.pid if process is not None and process.poll() is None else None

    def exit_code(self) -> int | None:
        process = self.nats.process
        return None if process is None else process.poll()

    def restart(self) -> None:
        self.nats.restart()  # same port and store: JetStream keeps its streams


HEALTH_FILE = "health.json"


def write_health_ports(folder: Path, ports: dict[str, int]) -> None:
    """``<data dir>/health.json``: where each process `rekey up` started serves /readyz."""
    import json

    (folder / HEALTH_FILE).write_text(json.dumps(ports, indent=2, sort_keys=True))
