"""The embedded stack: nats-server, the mail sink and the four services as processes.

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
import time
from pathlib import Path
from urllib.parse import urlparse

from rekey.mailsink import MailSink
from rekey.natsd import EmbeddedNats
from rekey.twilio_sim import prepare_verification, twilio_sim_for
from shared.bus.stream import connect
from shared.client import RekeyClient
from shared.errors import RekeyError
from shared.settings import SERVICES, Settings, new_key

log = logging.getLogger(__name__)

ENV_FILE = "rekey.env"
KEY_VARIABLES = ("REKEY_VAULT_KEY", "REKEY_TOKEN_KEY", "REKEY_CIPHER_KEY")


def load_env_file(data_dir: Path) -> dict[str, str]:
    path = data_dir / ENV_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    return values


def prepare_environment(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment every process of the stack shares; keys are made once and kept.

    The keys file sits in the data folder with mode 0600: it is what an operator would put in
    a secret store. Losing it makes stored TOTP seeds and encrypted payloads unreadable.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    values = load_env_file(data_dir)
    for name in KEY_VARIABLES:
        if os.environ.get(name):  # an operator's own key wins, as in every other command
            values[name] = os.environ[name]
        values.setdefault(name, new_key())
    prepare_verification(values)  # --- verification: Twilio sim token and ports
    values.update(overrides)
    values["REKEY_DATA_DIR"] = str(data_dir.resolve())
    path = data_dir / ENV_FILE
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    path.chmod(0o600)
    return values


class Stack:
    def __init__(
        self, settings: Settings, *, env: dict[str, str] | None = None, portal: bool = False
    ) -> None:
        self.settings = settings
        self.with_portal = portal
        self.env = {**os.environ, **(env or {})}
        if not self.env.get("REKEY_INTAKE_PORT"):  # ticketing's mail intake for the help desk address
            from rekey.ports import free_port

            self.env["REKEY_INTAKE_PORT"] = str(free_port())
        self.intake_port = int(self.env["REKEY_INTAKE_PORT"])
        self.data_dir = Path(settings.data_dir)
        url = urlparse(settings.nats_url)
        self.nats = EmbeddedNats(
            port=url.port or 4222, store_dir=self.data_dir / "nats", host=url.hostname or "127.0.0.1"
        )
        self.mail = MailSink(self.data_dir / "mail", port=settings.smtp_port)
        self.twilio = twilio_sim_for(settings, self.data_dir)  # --- verification
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def mail_folder(self) -> Path:
        return self.data_dir / "mail"

    def start(self) -> None:
        self.nats.start()
        self.mail.start()
        if self.twilio is not None:
            self.twilio.start()
        for name in SERVICES:
            self.start_service(name)
        asyncio.run(self.wait_healthy())
        if self.with_portal:
            self.start_portal()

    # --- portal: the web edge, a process too, started once the services answer
    @property
    def portal_url(self) -> str:
        from services.portal.app import display_url

        return display_url(self.settings)

    def start_portal(self, timeout: float = 30.0) -> None:
        import urllib.request

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
            time.sleep(0.2)

    def start_service(self, name: str) -> None:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        out = (logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "rekey", "serve", name],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def wait_healthy(self, timeout: float = 60.0) -> None:
        nc = await connect(self.settings.nats_url, "rekey-stack")
        client = RekeyClient(nc, timeout=2)
        deadline = time.monotonic() + timeout
        try:
            for name in list(self.processes):
                while True:
                    with contextlib.suppress(RekeyError):
                        await client.call(name, "health")
                        break
                    if self.processes[name].poll() is not None:
                        raise RuntimeError(f"the {name} service exited; see {self.data_dir}/logs")
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {name} service did not become healthy")
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    def stop(self) -> None:
        self.stop_service("portal")  # the edge first, then the services behind it
        for name in list(self.processes):
            self.stop_service(name)
        with contextlib.suppress(Exception):
            self.mail.stop()
        if self.twilio is not None:
            with contextlib.suppress(Exception):
                self.twilio.stop()
        with contextlib.suppress(Exception):
            self.nats.stop()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
