"""A TCP proxy in front of a real PostgreSQL, so tests can make the database vanish and return."""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.postgres import over_tcp, server_address


class TcpProxy:
    """Forward 127.0.0.1:<port> to a target while ``up``; refuse connections while down.

    The target is a TCP (host, port) or a Unix socket path: the embedded test server listens
    only on a socket, and the service reaches it through the proxy over TCP all the same.
    """

    def __init__(self, target: tuple[str, int] | str) -> None:
        self.target = target
        self.up = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @classmethod
    def to_database(cls, url: str) -> TcpProxy:
        """A proxy to the server of a libpq URL (TCP or Unix socket)."""
        return cls(server_address(url))

    def url(self, database_url: str) -> str:
        """``database_url`` reached through this proxy."""
        return over_tcp(database_url, "127.0.0.1", self.port)

    async def start(self) -> None:
        """Listen on a free port (connections are refused until :meth:`enable`)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def enable(self) -> None:
        """Forward new connections."""
        self.up = True

    async def cut(self) -> None:
        """Stop forwarding and drop every open connection, as a crashed server would."""
        self.up = False
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def close(self) -> None:
        """Stop listening and drop everything."""
        await self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            if isinstance(self.target, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.target)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(dst)
            with contextlib.suppress(Exception):
                dst.transport.abort()
