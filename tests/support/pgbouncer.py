"""A private PgBouncer in transaction pooling mode, in front of the live PostgreSQL: its
own port on 127.0.0.1, its own config file in a folder of its own, run as the
``postgres`` user (PgBouncer refuses to run as root), stopped by PID.

``default_pool_size`` is small, so the clients' connections really do share server
connections transaction by transaction (what breaks named prepared statements and
anything else kept in a session).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from tests.support.live import unavailable
from tests.support.mariadb_server import free_port
from tests.support.postgres import PG

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
#: How long start() waits for PgBouncer to accept connections (a bound, not a pause).
START_TIMEOUT = 30.0


class PrivatePgBouncer:
    """``with PrivatePgBouncer(database) as bouncer:`` ... connect to ``bouncer.port``."""

    def __init__(self, database: str, *, server_pool_size: int = 2) -> None:
        if not os.path.exists(PGBOUNCER):
            unavailable("pgbouncer is not installed: apt-get install pgbouncer")
        try:
            self.owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("no postgres system user to run pgbouncer as")
        self.database = database
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="adc-pgbouncer-")
        self.config = os.path.join(self.dir, "pgbouncer.ini")
        self.pidfile = os.path.join(self.dir, "pgbouncer.pid")
        self.logfile = os.path.join(self.dir, "pgbouncer.log")
        with open(self.config, "w", encoding="utf-8") as out:
            out.write(
                "[databases]\n"
                f"{database} = host={PG['host']} port={PG['port']} dbname={database}"
                f" user={PG['user']}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                "unix_socket_dir =\n"
                "auth_type = any\n"
                "pool_mode = transaction\n"
                f"default_pool_size = {server_pool_size}\n"
                "max_client_conn = 100\n"
                f"logfile = {self.logfile}\n"
                f"pidfile = {self.pidfile}\n"
            )
        os.chown(self.dir, self.owner.pw_uid, self.owner.pw_gid)
        os.chown(self.config, self.owner.pw_uid, self.owner.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", PGBOUNCER, self.config],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}: {error}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not listen within {START_TIMEOUT}s")
            time.sleep(0.02)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (PgBouncer's immediate shutdown) by PID, then SIGKILL if it lingers."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePgBouncer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
