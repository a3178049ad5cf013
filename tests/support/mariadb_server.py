"""A private, throwaway MariaDB server for tests that kill, restart or reconfigure one.

Each instance has its own folder (data directory, socket, pid file, tmpdir, error log and
an option file, ``my.cnf``, that the server and ``mariadb-install-db`` read with
``--defaults-file``) and its own port on 127.0.0.1, runs as the ``mysql`` user, and is
stopped by PID. ``kill()`` is a real ``kill -9``; ``start()`` again reuses the data
directory, so InnoDB crash recovery runs as it would on a real restart; ``freeze()`` and
``thaw()`` send SIGSTOP and SIGCONT (a server that hangs without closing its sockets).
The replication and Galera topologies (``topologies.py``) are made of these.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pymysql
import pytest

from tests.support.live import unavailable

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
#: What every private server runs with (small: several run at once on a small machine).
SMALL: dict[str, object] = {
    "innodb_log_file_size": "8M",
    "innodb_buffer_pool_size": "32M",
    "skip_name_resolve": True,
}


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of source ports for outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


#: Ports handed out in this process: a server may not have bound its port yet when the
#: next one is asked for.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on, for a server a test starts, from outside the
    kernel's ephemeral range. A port inside it can be taken, while its server is down
    (killed, about to restart on the same port, as a Galera node must), as the source
    port of any outgoing connection on the machine (its peers reconnecting to it, say):
    the restart then fails with "Address already in use" (seen in CI)."""
    low, high = _ephemeral_ports()
    candidates = range(10_000, low) if low > 11_000 else range(high + 1, 65_536)
    for _ in range(1_000):
        port = random.choice(candidates)
        if port in _GIVEN:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {candidates}")


class _PortTaken(RuntimeError):
    pass


def processes_under(path: Path) -> list[int]:
    """PIDs of the processes whose command line names something under ``path`` (a
    private server's folder: its mariadbd, and what that started, such as a Galera state
    transfer's rsync). The folders are this test run's own, so these are too."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


class PrivateMariaDB:
    """``with PrivateMariaDB() as server:`` ... ``server.kill(); server.start()``.

    ``options`` are added to (or override) the option file's ``[mariadbd]`` group (a
    value ``True`` writes the bare name); ``extra_args`` go on the command line.
    ``install=False`` leaves the data directory empty (a Galera joiner, which receives
    its data by a state transfer). ``parent`` is the folder to make this one's in.
    """

    def __init__(
        self,
        extra_args: Sequence[str] = (),
        *,
        port: int | None = None,
        options: Mapping[str, object] | None = None,
        install: bool = True,
        parent: Path | None = None,
        name: str = "adc-mariadb-",
    ) -> None:
        if os.geteuid() != 0 or not os.path.exists(MARIADBD):
            unavailable("a private mariadbd needs root and the mariadb-server package")
        self.extra_args = tuple(extra_args)
        self.options = dict(options or {})
        self.port = port or free_port()
        # A port of our choosing may be taken between free_port() and the server's bind
        # (another test run, or any socket, on this machine): then the first start picks
        # another. Once clients know the port, a restart keeps it.
        self._may_move = port is None
        self.root = Path(tempfile.mkdtemp(prefix=name, dir=parent))
        self.root.chmod(0o755)
        self.datadir = self.root / "data"
        # Its own, not /tmp: a starting mariadbd (and each mariadb-install-db bootstrap)
        # deletes the "#sql*" temporary tables it finds in its tmpdir, those of every other
        # server sharing it included: two at once fail ("Unknown table 'mysql.tmp_user_sys'").
        self.tmpdir = self.root / "tmp"
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False
        try:
            shutil.chown(self.root, "mysql")
            self.tmpdir.mkdir()
            shutil.chown(self.tmpdir, "mysql")
            self.write_options()
            if install:
                self._install()
            else:
                self.datadir.mkdir()
                shutil.chown(self.datadir, "mysql")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)  # nothing else will remove it
            raise

    @property
    def defaults_file(self) -> Path:
        return self.root / "my.cnf"

    @property
    def socket_path(self) -> Path:
        return self.root / "mysqld.sock"

    @property
    def pid_path(self) -> Path:
        return self.root / "mysqld.pid"

    def write_options(self) -> None:
        """(Re)write the option file: its own paths and port, SMALL, then ``options``.
        Nothing from /etc/mysql is read (no tmpdir or log of the system's server)."""
        settings: dict[str, object] = {
            "user": "mysql",
            "datadir": self.datadir,
            "tmpdir": self.tmpdir,
            "port": self.port,
            "bind_address": "127.0.0.1",
            "socket": self.socket_path,
            "pid_file": self.pid_path,
            "log_error": self.log_path,
            **SMALL,
        }
        for key, value in self.options.items():
            settings[key.replace("-", "_")] = value
        lines = ["[mariadbd]"]
        for key, value in settings.items():
            if value is True:
                lines.append(key)
            elif value is not False and value is not None:
                lines.append(f"{key}={value}")
        self.defaults_file.write_text("\n".join(lines) + "\n")
        self.defaults_file.chmod(0o644)

    def _install(self) -> None:
        result = subprocess.run(
            [
                INSTALL_DB,
                f"--defaults-file={self.defaults_file}",
                "--user=mysql",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            timeout=120,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")[-3000:]
            raise RuntimeError(
                f"mariadb-install-db failed ({result.returncode}): {output}\n{self.log_tail()}"
            )

    @property
    def log_path(self) -> Path:
        return self.root / "error.log"

    def start(self, args: Sequence[str] = (), timeout: float = 60.0) -> None:
        """Start (or start again) and wait until it accepts connections; ``args`` are
        for this start only (``--wsrep-new-cluster``)."""
        for _ in range(3):
            try:
                self._start(tuple(args), timeout)
            except _PortTaken:
                if not self._may_move:
                    raise
                self.port = free_port()
                self.write_options()
                continue
            self._may_move = False
            return
        raise RuntimeError(f"mariadbd found no free port: {self.log_tail()}")

    def _start(self, args: tuple[str, ...], timeout: float) -> None:
        assert not self.running, "already running"
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.frozen = False
        self.process = subprocess.Popen(
            [MARIADBD, f"--defaults-file={self.defaults_file}", *self.extra_args, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    if b"Address already in use" in self.log_path.read_bytes()[logged:]:
                        raise _PortTaken(self.port)
                    raise RuntimeError(f"mariadbd exited at start: {self.log_tail()}")
                if self.ping():
                    return
                time.sleep(0.05)
            raise RuntimeError(f"mariadbd did not start within {timeout}s: {self.log_tail()}")
        except BaseException:
            self.kill()  # never a half-started server left behind
            raise

    @property
    def running(self) -> bool:
        """The process is alive (frozen or not)."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

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
        """``kill -9``: no shutdown, no flush; clients see their sockets die. What the
        server had started (a Galera state transfer's rsync daemon, on a port of this
        node's) dies with it, as on a machine that crashed: left running, it kept that
        port and the restart failed with "Address already in use"."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._end_leftovers()
        self.frozen = False

    def _end_leftovers(self) -> None:
        for pid in processes_under(self.root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the server hangs, its sockets stay open (a stalled machine)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT: a frozen server goes on where it stopped."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self, timeout: float = 60.0) -> None:
        """A clean shutdown (SIGTERM; SIGKILL if it takes longer than ``timeout``)."""
        if self.process is not None and self.process.poll() is None:
            self.thaw()  # a stopped process would not act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.frozen = False

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def close(self) -> None:
        """Stop the server, end anything it left running (a state transfer's rsync), and
        remove its folder."""
        try:
            self.stop()
        finally:
            self._end_leftovers()
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
