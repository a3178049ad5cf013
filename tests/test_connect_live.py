"""An unreachable server is an answer, not a stall: against real loopback sockets (a port
nothing listens on, and a server the test owns that accepts and never says a word).

No assertion here is about speed: the tests assert what happened, so a regression fails
on what it does, not on a busy machine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from async_db_client.config import MySQLConfig
from async_db_client.drivers.aiomysql import AiomysqlDriver

#: Far longer than any of these tests.
ACQUIRE_TIMEOUT = 60.0


class Blackhole:
    """A loopback TCP server that accepts connections and never answers (a hung server,
    or a firewall that lets the handshake through)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # shut down by close()
                return
            self.accepted.append(conn)

    def hung_up_by_client(self, conn: socket.socket) -> bool:
        """Wait for the client's side of ``conn`` to close (EOF), as the event it is."""
        conn.settimeout(30)
        try:
            return conn.recv(1) == b""
        except TimeoutError:
            return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(10)
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    server = Blackhole()
    try:
        yield server
    finally:
        server.close()


# ------------------------------------------------------------------ async client


@pytest.mark.asyncio
async def test_closing_never_waits_for_a_connect_in_flight(blackhole: Blackhole) -> None:
    """A connect cancelled at any step of the handshake ends at once: within a few turns
    of the event loop, not when the silent server or a timeout lets it. (aiomysql's own
    connect timeout, asyncio.wait_for on Python 3.11, lost a cancellation arriving as the
    TCP connect completed: a pool closing then waited the whole connect_timeout.)"""
    driver = AiomysqlDriver(
        MySQLConfig(host="127.0.0.1", port=blackhole.port, database="x", user="u")
    )
    for steps in range(40):
        task = asyncio.create_task(driver.connect(ACQUIRE_TIMEOUT))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        for _ in range(20):  # turns of the loop, not seconds: the silent server never wakes it
            if task.done():
                break
            await asyncio.sleep(0)
        assert task.done(), f"a cancellation after {steps} steps was lost"
        assert task.cancelled()
    for conn in blackhole.accepted:  # in a thread: the loop must run the closing callbacks
        assert await asyncio.to_thread(blackhole.hung_up_by_client, conn)
