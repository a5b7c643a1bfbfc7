"""Free TCP ports for servers that tests and the local stack start on loopback."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now.

    The kernel picks it by binding port 0; the socket is closed again, so a tiny race
    remains until the caller binds it. That is acceptable for tests and a local stack,
    and far better than fixed ports that collide with the system NATS on 4222.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
