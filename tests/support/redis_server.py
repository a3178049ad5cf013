"""A private, throwaway Redis server for the cache tests: its own port on 127.0.0.1, no
persistence (a restart comes back empty, as a cache's Redis usually does), stopped by PID.

``kill()`` is a real ``kill -9``; ``start()`` again reuses the port. Tests wait for
conditions (the server answering a PING), never for a fixed time.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.support.live import unavailable
from tests.support.mariadb_server import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: How long start() waits for the server to answer (a bound, not a pause).
START_TIMEOUT = 30.0


class PrivateRedis:
    """``with PrivateRedis() as server:`` ... ``server.kill(); server.start()``."""

    def __init__(self, *, port: int | None = None, password: str | None = None) -> None:
        if not os.path.exists(REDIS_SERVER):
            unavailable("redis-server is not installed: apt-get install redis-server")
        self.port = port or free_port()
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="adc-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.dir,
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT}s")
            time.sleep(0.02)

    def answers(self) -> bool:
        """Whether the server answers a PING now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                if self.password:
                    pw = self.password.encode()
                    sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(pw), pw))
                    sock.recv(64)
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """``kill -9`` the server (by its PID) and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[PrivateRedis]:
    """One private Redis for the session's cache tests (each test uses its own prefix)."""
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
