"""A TCP proxy on 127.0.0.1 that can cut every connection and refuse new ones, or freeze them: a database outage
on demand, of either kind (a crashed server refuses; a stopped or partitioned one accepts and never answers)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from tests.servers import free_port


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a target; `cut()` drops all connections and closes the port until `restore()`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None

    def start(self) -> None:
        """Start forwarding."""
        self._thread.start()
        self._call(self._create_event())
        self.restore()

    def freeze(self) -> None:
        """Keep accepting connections and bytes, but pass nothing on, as a server stopped with SIGSTOP does."""
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def thaw(self) -> None:
        """Pass on everything held back, and go on forwarding."""
        assert self._flowing is not None
        self._loop.call_soon_threadsafe(self._flowing.set)

    def cut(self) -> None:
        """Close the listening port and every open connection: clients see refused and reset connections."""
        self._call(self._cut())

    def restore(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def stop(self) -> None:
        """Cut, then stop the proxy's thread."""
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _create_event(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._connections):
            writer.transport.abort()
        self._connections.clear()

    async def _forward(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        await self._flowing.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._connections |= {client_writer, upstream_writer}
        await asyncio.gather(_pipe(client_reader, upstream_writer, self._flowing),
                             _pipe(upstream_reader, client_writer, self._flowing))
        self._connections -= {client_writer, upstream_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(1 << 16):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    writer.transport.abort()


@contextlib.contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    """A running proxy, stopped afterwards."""
    proxy = TcpProxy(target_host, target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
