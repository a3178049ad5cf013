"""The blocking facade against real databases: Ctrl-C inside transactions, fork, threads.

Ctrl-C is a real SIGINT sent to a script in a subprocess, at a moment the script reports:
the driver's begin or commit is wrapped (in that script only) to say when it is running
and to wait for the test's word, so the signal lands inside it every time.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from async_db_client.sync import DBClientFactory
from tests.support.live import (
    MYSQL_DRIVERS,
    client_config,
    open_transactions,
    require_driver,
    server_connections,
)
from tests.support.mariadb_server import free_port

ROOT = Path(__file__).resolve().parent.parent

#: Wraps a driver method so that the script says when it runs and waits for "go" on stdin.
HOOK = """
import asyncio, json, os, sys, threading
from async_db_client.sync import DBClientFactory

def hold(cls, name, after=False):
    original = getattr(cls, name)
    async def held(self, conn):
        if after:
            await original(self, conn)
        print(name, flush=True)
        await asyncio.to_thread(sys.stdin.readline)  # the test's word
        if not after:
            await original(self, conn)
    setattr(cls, name, held)

config = json.loads(sys.argv[1])
"""


class Script:
    """A Python script in a subprocess, talking line by line."""

    def __init__(self, prelude: str, code: str, *args: str) -> None:
        source = textwrap.dedent(HOOK) + prelude + "\n" + textwrap.dedent(code)
        self.process = subprocess.Popen(
            [sys.executable, "-c", source, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("<end of output>")

    def expect(self, line: str) -> None:
        try:
            got = self.lines.get(timeout=60)  # generous: a hang fails, slowness does not
        except queue.Empty:
            got = "<nothing within 60 s>"
        if got != line:
            raise AssertionError(f"expected {line!r}, got {got!r}; stderr: {self.stderr()}")

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def finish(self) -> list[str]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=120)
        assert self.process.stderr is not None
        assert self.process.returncode == 0, self.process.stderr.read()[-3000:]
        lines = []
        while (line := self.lines.get(timeout=60)) != "<end of output>":
            lines.append(line)
        return lines

    def stderr(self) -> str:
        self.process.kill()
        assert self.process.stderr is not None
        return self.process.stderr.read()[-3000:]

    def __enter__(self) -> Script:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def sqlite_config(path: Path) -> dict[str, Any]:
    return {
        "database": {
            "remote_type": "sqlite",
            "remote_config": {"path": str(path), "busy_timeout": 2.0},
        }
    }


# ------------------------------------------------------------------------ Ctrl-C

#: SQLite, and MariaDB through each MySQL driver.
ENGINES = [
    "sqlite",
    *(pytest.param(f"mysql-{d}", marks=pytest.mark.live) for d in MYSQL_DRIVERS),
]
#: The driver class whose begin or commit a script holds, by engine.
DRIVER_CLASS = {
    "sqlite": "from async_db_client.drivers.aiosqlite import AiosqliteDriver as D",
    "mysql-aiomysql": "from async_db_client.drivers.aiomysql import AiomysqlDriver as D",
    "mysql-asyncmy": "from async_db_client.drivers.asyncmy import AsyncmyDriver as D",
}


def mysql_engine(engine: str, database: str) -> dict[str, Any]:
    """The config of a MySQL engine (``mysql-<driver>``), its driver installed."""
    driver = engine.removeprefix("mysql-")
    require_driver(driver)
    return client_config(database, tiers=("remote",), driver=driver)


@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_while_entering_a_transaction_leaves_none_open(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if engine.startswith("mysql"):
        database = request.getfixturevalue("own_database")
        config = mysql_engine(engine, database)
    else:
        config = sqlite_config(tmp_path / "h.db")
    with Script(
        DRIVER_CLASS[engine],
        """
        db = DBClientFactory(config).create_client()
        db.migrate()
        hold(D, "begin", after=True)  # BEGIN done, then wait: the transaction is open
        try:
            with db.transaction():
                print("inside", flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        in_use = sum(s.in_use for s in db.pool_stats().values())
        # The write lock (SQLite) and the connection are free: a write goes through.
        print(db.insert_or_update_hash({"path": "/after", "current_hash": "h"}), in_use)
        print("ready", flush=True)
        sys.stdin.readline()
        db.close()
        """,
        json.dumps(config),
    ) as script:
        script.expect("begin")
        script.interrupt()  # while BEGIN's transaction is open and the call not yet returned
        script.say("go")
        script.expect("interrupted")
        script.expect("True 0")
        script.expect("ready")
        if engine.startswith("mysql"):
            assert open_transactions(database) == 0
        else:
            import sqlite3

            with sqlite3.connect(tmp_path / "h.db", timeout=0.5) as other:  # not locked
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
        script.say("done")
        script.finish()


@pytest.mark.parametrize("engine", ENGINES)
def test_ctrl_c_while_committing_commits_then_raises(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if engine.startswith("mysql"):
        config = mysql_engine(engine, request.getfixturevalue("own_database"))
    else:
        config = sqlite_config(tmp_path / "h.db")
    with Script(
        DRIVER_CLASS[engine],
        """
        db = DBClientFactory(config).create_client()
        db.migrate()
        hold(D, "commit")  # say "commit", wait, then commit for real
        try:
            with db.transaction():
                db.insert_or_update_hash({"path": "/tx", "current_hash": "h"})
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        print(db.get_hash_record("/tx") is not None)
        print(sum(s.in_use for s in db.pool_stats().values()))
        db.close()
        """,
        json.dumps(config),
    ) as script:
        script.expect("commit")
        script.interrupt()
        script.say("go")
        assert script.finish() == ["interrupted", "True", "0"]


# -------------------------------------------------------------------------- fork


@pytest.mark.live
def test_after_fork_the_parent_keeps_working_whatever_the_children_did(
    own_database: str, tmp_path: Path
) -> None:
    config = client_config(own_database, tiers=("remote",))
    down = {  # an outbox whose database refuses: writes queue in the parent and children
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": free_port(),  # nothing listens there
                "database": "x",
                "user": "u",
                "pool": {"acquire_timeout": 1, "connect_timeout": 0.5},
                "outbox": {"path": str(tmp_path / "outbox.db")},
            },
        }
    }
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import json, os, signal, sys
                from async_db_client.sync import DBClientFactory
                signal.alarm(60)  # a hang fails the test instead of stalling the suite
                db = DBClientFactory(json.loads(sys.argv[1])).create_client()
                db.migrate()
                queued = DBClientFactory(json.loads(sys.argv[2])).create_client()
                assert queued.insert_or_update_hash({"path": "/q/parent", "current_hash": "h"})
                assert queued.outbox_pending() == 1
                for n in range(6):
                    db.insert_or_update_hash({"path": f"/p/{n}", "current_hash": "h"})
                    pid = os.fork()
                    if pid == 0:  # the child uses both clients, then leaves
                        ok = db.insert_or_update_hash({"path": f"/c/{n}", "current_hash": "c"})
                        ok = ok and queued.insert_or_update_hash(
                            {"path": f"/q/{n}", "current_hash": "c"})
                        if n % 2:
                            db.close()  # closing, or not, must not reach the parent's
                            queued.close()
                        os._exit(0 if ok else 3)
                    _, status = os.waitpid(pid, 0)
                    assert os.waitstatus_to_exitcode(status) == 0
                    # The parent's first call after the child: answered, not hung.
                    assert db.get_hash_record(f"/c/{n}") is not None
                    assert db.get_hash_record(f"/p/{n}") is not None
                print("ok", queued.outbox_pending())
                db.close()
                queued.close()
                """
            ),
            json.dumps(config),
            json.dumps(down),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["ok", "7"]  # the parent's write and each child's
    settles(lambda: server_connections(own_database) == 0)


# ----------------------------------------------------------------------- threads


@pytest.mark.live
def test_each_thread_runs_its_own_loop_and_close_closes_them_all(own_database: str) -> None:
    config = client_config(own_database, tiers=("remote",), pool={"min_size": 1, "max_size": 2})
    db = DBClientFactory(config).create_client()
    db.migrate()
    seen: dict[int, tuple[int, int]] = {}
    ready, done = threading.Barrier(4), threading.Barrier(4)

    def worker(n: int) -> None:
        ready.wait()
        assert db.insert_or_update_hash({"path": f"/t/{n}", "current_hash": "h"})
        client = db.async_client
        seen[n] = (id(client), threading.get_ident())
        # All four alive until each has its client: a thread that ended first would have
        # its client closed by the next one to start a client (as documented).
        done.wait()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({client for client, _ in seen.values()} | {id(db.async_client)}) == 5
    stats = next(iter(db.pool_stats().values()))
    assert stats.in_use == 0 and 5 <= stats.size <= 10, stats  # the pools of five threads
    assert stats.max_size == 10
    settles(lambda: server_connections(own_database) == stats.size)
    # Threads that ended left their clients behind: the next thread to start one closes
    # them, so only the main thread's and the newest one's remain.
    late = threading.Thread(target=lambda: db.get_hash_record("/t/0"))
    late.start()
    late.join()
    stats = next(iter(db.pool_stats().values()))
    assert stats.max_size == 4, stats
    settles(lambda: server_connections(own_database) == stats.size)
    db.close()
    assert db.closed
    settles(lambda: server_connections(own_database) == 0)


def settles(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """The server's own view lags the client's (a closed connection leaves its process
    list a moment later): wait for ``condition``, up to a generous ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the server did not settle"
        time.sleep(0.05)
