"""A TCP forwarder a test can cut: a dependency "unreachable" without stopping the shared one.

``Cutoff(target_port)`` listens on a free loopback port and forwards to ``target_port``;
``cut()`` closes the listener and every forwarded connection, so the port is closed as it
would be for a database that went away, while the real server keeps serving other tests;
``start()`` again is the database coming back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib

from rekey.stack.ports import free_port


class Cutoff:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Cutoff:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)
        return self

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()
