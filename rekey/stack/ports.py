"""Free TCP ports for servers that tests and the local stack start on loopback."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

# Below the kernel's ephemeral range: the source port of an outgoing connection (to NATS, to
# PostgreSQL, to a mail server) is taken from that range, so a port chosen there can be taken
# between being chosen and being bound. Ports chosen here are not handed out that way.
LOWEST = 20_000
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
ATTEMPTS = 200
# Ports handed out recently by this process: a caller asking for three ports before binding
# any (a cluster node's client, route and monitor ports) must get three different ones.
RECENT = 2_000
_recent: deque[int] = deque(maxlen=RECENT)
_lock = threading.Lock()
# ... and by every process on this machine: a port handed out is not handed out again for this
# long, so another process (a test worker beside this one, or a stack it starts) cannot take it
# while its caller has not bound it yet (seen: a portal's port taken by another worker's
# server during the seconds the stack took to start).
RESERVED_SECONDS = 120.0
RESERVATIONS = Path(tempfile.gettempdir()) / f"rekey-free-ports-{os.getuid()}"


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now, below the ephemeral range.

    The socket is closed again, so until the caller binds it only the reservation (no process
    here hands it out again for RESERVED_SECONDS) keeps it; a server of some other program may
    still take it, which is acceptable for tests and a local stack, and far better than fixed
    ports that collide with the system NATS on 4222.
    """
    with _lock:
        port = _choose(host)
        _recent.append(port)
        return port


def _choose(host: str) -> int:
    top = _ephemeral_start() - 1
    if top > LOWEST:
        with _machine_lock() as reserve:
            for _ in range(ATTEMPTS):
                port = random.randint(LOWEST, top)
                if port not in _recent and _bindable(host, port) and reserve(port):
                    return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the kernel's choice
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _machine_lock() -> Iterator[Callable[[int], bool]]:
    """Held across processes while a port is chosen; gives ``reserve(port)``: whether no
    process here handed ``port`` out in the last RESERVED_SECONDS, marking it handed out.
    Where the folder cannot be used, every port counts as free (as before there was one)."""
    try:
        RESERVATIONS.mkdir(mode=0o700, exist_ok=True)
        lock = (RESERVATIONS / ".lock").open("a")
    except OSError:
        yield lambda port: True
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)

        def reserve(port: int) -> bool:
            marker = RESERVATIONS / str(port)
            with contextlib.suppress(FileNotFoundError):
                if time.time() - marker.stat().st_mtime < RESERVED_SECONDS:
                    return False
            with contextlib.suppress(OSError):
                marker.touch()  # an existing marker gets a new time
            return True

        yield reserve
