"""A private, throwaway MariaDB server for tests that kill, restart or reconfigure one.

Each instance has its own data directory and port on 127.0.0.1, runs as the ``mysql``
user, and is stopped by PID. ``kill()`` is a real ``kill -9``; ``start()`` again reuses
the data directory, so InnoDB crash recovery runs as it would on a real restart.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pymysql
import pytest

from tests.support.live import unavailable

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
SMALL = ("--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M", "--skip-name-resolve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _PortTaken(RuntimeError):
    pass


class PrivateMariaDB:
    """``with PrivateMariaDB() as server:`` ... ``server.kill(); server.start()``."""

    def __init__(self, extra_args: Sequence[str] = (), *, port: int | None = None) -> None:
        if os.geteuid() != 0 or not os.path.exists(MARIADBD):
            unavailable("a private mariadbd needs root and the mariadb-server package")
        self.extra_args = tuple(extra_args)
        self.port = port or free_port()
        # A port of our choosing may be taken between free_port() and the server's bind
        # (another test run, or any socket, on this machine): then the first start picks
        # another. Once clients know the port, a restart keeps it.
        self._may_move = port is None
        self.root = Path(tempfile.mkdtemp(prefix="adc-mariadb-"))
        self.root.chmod(0o755)
        self.datadir = self.root / "data"
        # Its own, not /tmp: a starting mariadbd (and each mariadb-install-db bootstrap)
        # deletes the "#sql*" temporary tables it finds in its tmpdir, those of every other
        # server sharing it included: two at once fail ("Unknown table 'mysql.tmp_user_sys'").
        self.tmpdir = self.root / "tmp"
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self._install()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)  # nothing else will remove it
            raise

    def _install(self) -> None:
        shutil.chown(self.root, "mysql")
        self.tmpdir.mkdir()
        shutil.chown(self.tmpdir, "mysql")
        result = subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",  # as the server runs: no tmpdir or log from /etc/mysql
                "--user=mysql",
                f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                *SMALL[:1],
            ],
            capture_output=True,
            timeout=120,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")[-3000:]
            raise RuntimeError(f"mariadb-install-db failed ({result.returncode}): {output}")

    @property
    def log_path(self) -> Path:
        return self.root / "error.log"

    def start(self, timeout: float = 60.0) -> None:
        """Start (or start again) and wait until it accepts connections."""
        for _ in range(3):
            try:
                self._start(timeout)
            except _PortTaken:
                if not self._may_move:
                    raise
                self.port = free_port()
                continue
            self._may_move = False
            return
        raise RuntimeError(f"mariadbd found no free port: {self.log_tail()}")

    def _start(self, timeout: float) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.datadir}",
                f"--tmpdir={self.tmpdir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.root / 'mysqld.sock'}",
                f"--pid-file={self.root / 'mysqld.pid'}",
                f"--log-error={self.log_path}",
                *SMALL,
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if b"Address already in use" in self.log_path.read_bytes()[logged:]:
                    raise _PortTaken(self.port)
                raise RuntimeError(f"mariadbd exited at start: {self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"mariadbd did not start within {timeout}s: {self.log_tail()}")

    def ping(self) -> bool:
        """True once this server answers. Not just any: until ours has bound the port (or
        exited for want of it), the port may be another's, another test run's mariadbd."""
        try:
            with (
                contextlib.closing(self.connect(read_timeout=5)) as conn,
                conn.cursor() as cursor,
            ):
                cursor.execute("SELECT @@datadir")
                (datadir,) = cursor.fetchone()
        except pymysql.err.MySQLError:
            return False
        return Path(datadir).resolve() == self.datadir.resolve()

    def connect(self, **kw: object) -> pymysql.connections.Connection:
        options: dict[str, object] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": "root",
            "password": "",
            "connect_timeout": 2,
            "autocommit": True,
            **kw,
        }
        return pymysql.connect(**options)  # type: ignore[arg-type]

    def execute(self, *statements: str) -> None:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def kill(self) -> None:
        """``kill -9``: no shutdown, no flush; clients see their sockets die."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateMariaDB:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def private_server() -> Iterator[PrivateMariaDB]:
    """A started private mariadbd with an empty database ``hashdb``; stopped and removed
    at the end of the test."""
    server = PrivateMariaDB()
    try:
        server.start()
        server.execute("CREATE DATABASE hashdb CHARACTER SET utf8mb4")
        yield server
    finally:
        server.close()
