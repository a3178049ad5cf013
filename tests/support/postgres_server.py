"""A private, throwaway PostgreSQL 15 for the fault and multi-host tests: its own data
directory (made by ``initdb``; with ``standby=True`` kept in recovery, as a replica; with
``base_backup_of`` a ``pg_basebackup -R`` of another one: its streaming standby), its
own port on 127.0.0.1, run as the ``postgres`` user (PostgreSQL
refuses root), started and stopped by PID.

``kill()`` is a real ``kill -9`` of the postmaster and every backend (its process group:
a machine losing power, as far as the client can tell; ``fsync`` stays on, so what was
committed survives); ``start()`` again runs crash recovery on the same directory and
port. Tests wait for conditions (the server accepting logins), never a fixed time.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from tests.support.live import unavailable
from tests.support.mariadb_server import free_port

BIN = "/usr/lib/postgresql/15/bin"
#: How long start() waits for logins (crash recovery included): a bound, not a pause.
START_TIMEOUT = 60.0


class PrivatePostgres:
    """``with PrivatePostgres() as server:`` ... ``server.kill(); server.start()``."""

    def __init__(
        self,
        *,
        standby: bool = False,
        password: str | None = None,
        settings: dict[str, str] | None = None,
        base_backup_of: PrivatePostgres | None = None,
    ) -> None:
        if not os.path.exists(f"{BIN}/initdb"):
            unavailable(f"no {BIN}/initdb: apt-get install postgresql-15")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("no postgres system user to run a private PostgreSQL as")
        self.uid, self.gid = owner.pw_uid, owner.pw_gid
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="adc-pg-")
        os.chown(self.dir, self.uid, self.gid)
        self.data = os.path.join(self.dir, "data")
        self.process: subprocess.Popen[bytes] | None = None
        #: Extra server settings (``-c name=value``), e.g. TLS.
        self.settings = dict(settings or {})
        if base_backup_of is not None:
            # A streaming-replication standby of a running server: its data copied by
            # pg_basebackup, which writes primary_conninfo and standby.signal (-R).
            self._as_postgres(
                [f"{BIN}/pg_basebackup", "-h", "127.0.0.1", "-p", str(base_backup_of.port),
                 "-U", "postgres", "-D", self.data, "-R", "-X", "stream", "-c", "fast",
                 "--no-sync"],
            )  # fmt: skip
            return
        auth = ["--auth=trust"]
        if password is not None:
            # Logins over TCP need the password (scram-sha-256); the socket stays trust.
            pwfile = os.path.join(self.dir, "pwfile")
            with open(pwfile, "w", encoding="utf-8") as out:
                out.write(password + "\n")
            os.chown(pwfile, self.uid, self.gid)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._as_postgres(
            [f"{BIN}/initdb", "-D", self.data, "-U", "postgres", *auth,
             "-E", "UTF8", "--no-sync"],
        )  # fmt: skip
        if password is not None:
            os.unlink(pwfile)
        if standby:
            self._mark_standby()

    def own(self, path: str, mode: int = 0o600) -> None:
        """Make ``path`` (a key, a certificate) the server's, as it requires."""
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)

    def _mark_standby(self) -> None:
        # In recovery for good (no primary to follow): read-only, hot standby, and
        # pg_is_in_recovery() true, as a replica is.
        signal_file = os.path.join(self.data, "standby.signal")
        open(signal_file, "w").close()
        os.chown(signal_file, self.uid, self.gid)

    def become_standby(self) -> None:
        """Restart (fast shutdown) as a standby, keeping the data made so far."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            process.wait(timeout=60)
        self._mark_standby()
        self.start()

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run ``statement`` with psql as the superuser; its output (unaligned)."""
        result = subprocess.run(
            [f"{BIN}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-c", statement],
            capture_output=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"psql {statement!r}: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode().strip()

    def _as_postgres(self, args: list[str]) -> None:
        result = subprocess.run(
            args, user=self.uid, group=self.gid, extra_groups=[], capture_output=True, timeout=120
        )
        if result.returncode != 0:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError(f"{args[0]} failed: {result.stderr.decode(errors='replace')}")

    def start(self) -> None:
        log = open(os.path.join(self.dir, "server.log"), "ab")  # noqa: SIM115 - the child's
        try:
            self.process = subprocess.Popen(
                [f"{BIN}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.dir,
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on",
                 *(f"-c{name}={value}" for name, value in self.settings.items())],
                user=self.uid, group=self.gid, extra_groups=[],
                stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"postgres did not accept logins in {START_TIMEOUT}s")
            time.sleep(0.05)

    def answers(self) -> bool:
        """Whether the server accepts logins now (pg_isready)."""
        result = subprocess.run(
            [f"{BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"],
            capture_output=True,
            timeout=30,
        )
        return result.returncode == 0

    def log(self) -> str:
        with open(os.path.join(self.dir, "server.log"), "rb") as handle:
            return handle.read()[-2000:].decode(errors="replace")

    def kill(self) -> None:
        """``kill -9`` the postmaster and its backends (the process group) by PID."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def stop(self) -> None:
        """A fast shutdown (SIGINT to the postmaster), then the folder goes."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
