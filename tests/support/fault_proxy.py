"""A TCP proxy on 127.0.0.1 that tests own, to break the client's connections on purpose.

It runs its own event loop in a thread, so faults happen independently of the code
under test. Faults:

* ``drop_all()``: close every open connection at once (both sides), like a network
  blip or a server-side kill; new connections work.
* ``stall(True)``: stop forwarding anything, on open and new connections (accepted,
  never answered), until ``stall(False)``.
* ``refuse(True)``: close new connections at once (the server seems down).
* ``cut_mid_result(n)``: the next server-to-client chunk of every connection is cut
  after ``n`` bytes and the connection closed, so the client loses it in the middle of
  a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.server):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class FaultProxy:
    """``with FaultProxy(3306) as proxy:`` then point the client at ``proxy.port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self.dropped = 0
        self._links: set[_Link] = set()
        self._stalled = False
        self._resume: asyncio.Event | None = None
        self._refusing = False
        self._cut_after: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fault-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._resume = asyncio.Event()
        self._resume.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            link.close()
            for task in link.tasks:
                task.cancel()
        pending = [t for link in self._links for t in link.tasks]
        await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()
        # Aborted transports close their sockets in callbacks: let those run.
        for _ in range(5):
            await asyncio.sleep(0.01)

    # ---------------------------------------------------------------------- faults

    def _call(self, func: object) -> None:
        async def run() -> None:
            func()  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def drop_all(self) -> None:
        def drop() -> None:
            for link in list(self._links):
                self.dropped += 1
                link.close()

        self._call(drop)

    def stall(self, on: bool) -> None:
        def switch() -> None:
            assert self._resume is not None
            self._stalled = on
            if on:
                self._resume.clear()
            else:
                self._resume.set()

        self._call(switch)

    def refuse(self, on: bool) -> None:
        def switch() -> None:
            self._refusing = on

        self._call(switch)

    def cut_mid_result(self, after_bytes: int | None) -> None:
        def switch() -> None:
            self._cut_after = after_bytes

        self._call(switch)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # ----------------------------------------------------------------- forwarding

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refusing:
            writer.transport.abort()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, server_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, server_writer, link, upstream=True)),
            asyncio.create_task(self._pump(server_reader, writer, link, upstream=False)),
        ]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        link.close()
        self._links.discard(link)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: _Link,
        *,
        upstream: bool,
    ) -> None:
        assert self._resume is not None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._resume.wait()  # a stall holds the data here
                if not upstream and self._cut_after is not None:
                    writer.write(data[: self._cut_after])
                    await writer.drain()
                    self.dropped += 1
                    link.close()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            link.close()
