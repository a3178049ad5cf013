"""An unreachable server is an answer, not a stall: against real loopback sockets (a port
nothing listens on, and a server the test owns that accepts and never says a word), every
entry point fails once, with one DBConnectionError naming host:port and the reason, after
the connect retries ``connect_retry_budget`` allows, however long ``acquire_timeout`` is.

No assertion here is about speed: the tests set a long acquire timeout and a short
connect budget, and assert what happened (the error's type and text, attempts logged and
counted, which budget ended the loop), so a regression fails on what it does, not on a
busy machine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import async_db_client.sync
from async_db_client import DBClientFactory, DBConnectionError
from async_db_client.config import MySQLConfig
from async_db_client.drivers.aiomysql import AiomysqlDriver
from async_db_client.pool import ConnectionPool
from tests.support.fault_proxy import FaultProxy
from tests.support.live import MYSQL, executor_of, mysql_config
from tests.support.mariadb_server import free_port
from tests.test_cli import one_line_error, run_cli

#: Far longer than any of these tests: if it ever ended a call, the connect budget did not.
ACQUIRE_TIMEOUT = 60.0
BUDGET = 1.0
#: The retry log line of the pool (INFO; the CLI shows it with -v).
RETRY = re.compile(r"connect attempt failed: (.+); retry (\d+) in ")


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


def remote_config(port: int, **pool: Any) -> dict[str, Any]:
    settings = {
        "min_size": 0,  # no background refill: every attempt is the call's own
        "acquire_timeout": ACQUIRE_TIMEOUT,
        "connect_timeout": ACQUIRE_TIMEOUT,
        "connect_retry_budget": BUDGET,
        **pool,
    }
    tier = mysql_config("x", pool=settings) | {"host": "127.0.0.1", "port": port, "user": "u"}
    return {"database": {"remote_type": "mysql", "remote_config": tier}}


def retries(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int]]:
    """(reason, retry number) of each connect retry the pool logged."""
    found = []
    for record in caplog.records:
        match = RETRY.search(record.getMessage())
        if match and record.levelno == logging.INFO:
            found.append((match[1], int(match[2])))
    return found


def check_message(error: BaseException, port: int, reason: str) -> str:
    """The error names the target and the reason exactly once, and what ended the loop."""
    text = str(error)
    assert type(error) is DBConnectionError, repr(error)  # not a PoolTimeout, not nested
    assert text.count(f"127.0.0.1:{port}") == 1, text
    assert text.count("cannot connect to") == 1, text
    assert text.count(reason) == 1, text
    assert f"connect_retry_budget {BUDGET:g}s" in text, text
    return text


def attempts_in(text: str) -> int:
    match = re.search(r"\((\d+) attempts?, unreachable for", text)
    assert match, text
    return int(match[1])


# ------------------------------------------------------------------ async client


@pytest.mark.asyncio
async def test_a_refused_port_is_retried_within_the_budget_then_named_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    caplog.set_level(logging.INFO, logger="async_db_client")
    async with DBClientFactory(remote_config(port)).create_client() as db:
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
        text = check_message(info.value, port, "(2003) Connection refused")
        assert info.value.reason == "(2003) Connection refused"
        logged = retries(caplog)
        # Each retry logged with its reason and number; the error counts the first try too.
        # A retry is announced before its pause; a pause that overslept the budget (a busy
        # machine) ends the call without that last attempt, which is then not counted.
        assert [n for _, n in logged] == list(range(1, len(logged) + 1))
        assert {reason for reason, _ in logged} == {"(2003) Connection refused"}
        attempts = attempts_in(text)
        assert attempts in (len(logged), len(logged) + 1) and attempts >= 2
        stats = db.pool_stats()[f"mysql://u@127.0.0.1:{port}/x"]
        assert stats.connection_errors == attempts
        assert (stats.acquire_timeouts, stats.retries, stats.size) == (0, 0, 0)


@pytest.mark.asyncio
async def test_a_shorter_acquire_timeout_ends_the_retries_and_the_error_says_so() -> None:
    port = free_port()
    config = remote_config(port, acquire_timeout=0.3, connect_retry_budget=ACQUIRE_TIMEOUT)
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
        text = str(info.value)
        assert type(info.value) is DBConnectionError and text.count(f"127.0.0.1:{port}") == 1
        assert text.endswith("; acquire_timeout 0.3s)") and "connect_retry_budget" not in text


@pytest.mark.asyncio
async def test_a_server_that_never_answers_gets_one_attempt_bounded_by_the_budget(
    blackhole: Blackhole, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="async_db_client")
    async with DBClientFactory(remote_config(blackhole.port)).create_client() as db:
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
        # connect_timeout is 60 s: the attempt was cut by what was left of the budget.
        text = check_message(info.value, blackhole.port, f"no answer within {BUDGET:.1f}s")
        assert attempts_in(text) == 1 and retries(caplog) == []
        assert db.pool_stats()[f"mysql://u@127.0.0.1:{blackhole.port}/x"].size == 0
    assert len(blackhole.accepted) == 1
    # Not leaked (in a thread: the loop must run the closing callbacks meanwhile).
    assert await asyncio.to_thread(blackhole.hung_up_by_client, blackhole.accepted[0])


@pytest.mark.asyncio
async def test_tasks_waiting_for_a_slot_give_up_with_the_connect_budget(
    blackhole: Blackhole,
) -> None:
    """One slot, five acquires: the four waiting for it do not wait out the acquire
    timeout (which would end them with PoolTimeout) behind a connect that cannot succeed;
    the connect budget ends their wait too, with the server's error."""
    config = MySQLConfig(**remote_config(blackhole.port, max_size=1)["database"]["remote_config"])
    pool: ConnectionPool[Any] = ConnectionPool(AiomysqlDriver(config), config.pool, name="one")
    try:
        results = await asyncio.gather(*(pool.acquire() for _ in range(5)), return_exceptions=True)
        for error in results:
            check_message(error, blackhole.port, "no answer within")
        stats = pool.get_stats()
        assert (stats.acquire_timeouts, stats.size, stats.waiting) == (0, 0, 0)
    finally:
        await pool.aclose()


@pytest.mark.asyncio
async def test_concurrent_first_calls_share_one_connect_budget(blackhole: Blackhole) -> None:
    """The first calls of a client queue behind the one preparing the schema; when it
    cannot connect, they fail with its error at once: one attempt, not one budget each."""
    async with DBClientFactory(remote_config(blackhole.port)).create_client() as db:
        results = await asyncio.gather(
            *(db.get_hash_record(f"/{i}") for i in range(5)), return_exceptions=True
        )
        texts = {check_message(error, blackhole.port, "no answer within") for error in results}
        assert len(texts) == 1 and attempts_in(texts.pop()) == 1
    assert len(blackhole.accepted) == 1


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


@pytest.mark.live
@pytest.mark.asyncio
async def test_executor_retries_do_not_multiply_the_connect_budget(
    mysql_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A statement that lost its connection is retried once on a new one; when that
    connect fails, the call ends with the pool's error after one connect budget: the
    executor does not start another budget for each of its retry_attempts."""
    caplog.set_level(logging.INFO, logger="async_db_client")
    with FaultProxy(MYSQL["port"], MYSQL["host"]) as proxy:
        tier = mysql_config(
            mysql_database,
            pool={
                "min_size": 0,
                "acquire_timeout": ACQUIRE_TIMEOUT,
                "connect_retry_budget": BUDGET,
                "retry_attempts": 3,
            },
        )
        tier |= {"host": "127.0.0.1", "port": proxy.port}
        config = {"database": {"remote_type": "mysql", "remote_config": tier}}
        async with DBClientFactory(config).create_client() as db:
            assert await db.get_hash_record("/a") is None  # connected and migrated
            proxy.drop_all()
            proxy.refuse(True)
            with pytest.raises(DBConnectionError) as info:
                await db.get_hash_record("/a")
            text = check_message(info.value, proxy.port, "(2013) Lost connection")
            stats = executor_of(db).pool.get_stats()
            assert stats.retries == 1  # the lost statement, once; never the failed connect
            first_retries = [n for _, n in retries(caplog) if n == 1]
            assert len(first_retries) == 1  # one connect budget was spent, not four
            assert attempts_in(text) == len(retries(caplog)) + 1


# ------------------------------------------------------------------- sync facade


def test_the_sync_facade_fails_alike(blackhole: Blackhole) -> None:
    port = free_port()
    for target, reason in ((port, "(2003) Connection refused"), (blackhole.port, "no answer")):
        with async_db_client.sync.DBClientFactory(remote_config(target)).create_client() as db:
            with pytest.raises(DBConnectionError) as info:
                db.get_hash_record("/a")
            check_message(info.value, target, reason)
            assert db.health_check() == {"local_db": False}


# --------------------------------------------------------------------------- CLI


def write_config(directory: Path, port: int) -> Path:
    path = directory / f"down-{port}.toml"
    path.write_text(
        '[database]\nremote_type = "mysql"\n[database.remote_config]\n'
        f'host = "127.0.0.1"\nport = {port}\ndatabase = "x"\nuser = "u"\n'
        f"pool = {{ min_size = 0, acquire_timeout = {ACQUIRE_TIMEOUT:g}, "
        f"connect_timeout = {ACQUIRE_TIMEOUT:g}, connect_retry_budget = {BUDGET:g} }}\n"
    )
    return path


def test_the_cli_says_it_in_one_line_and_shows_the_retries_at_v(
    tmp_path: Path, blackhole: Blackhole
) -> None:
    data = tmp_path / "data"
    port = free_port()
    for target, reason in ((port, "(2003) Connection refused"), (blackhole.port, "no answer")):
        config = str(write_config(tmp_path, target))
        for command in ("health", "get"):
            args = ("get", "/x") if command == "get" else ("health",)
            line = one_line_error(run_cli("--config", config, *args, data_dir=data), 1)
            check_message(DBConnectionError(line.partition(": ")[2]), target, reason)
        unhealthy = run_cli("--config", config, "health", "--json", data_dir=data)
        assert unhealthy.returncode == 1 and json.loads(unhealthy.stdout) == {"remote": False}

    verbose = run_cli(
        "--config", str(write_config(tmp_path, port)), "-v", "get", "/x", data_dir=data
    )
    assert verbose.returncode == 1
    lines = verbose.stderr.splitlines()
    retry_lines = [line for line in lines if RETRY.search(line)]
    assert retry_lines and all(
        line.startswith("INFO async_db_client.pool: ") for line in retry_lines
    )
    assert lines[-1].startswith("Error: cannot connect to")
    assert attempts_in(lines[-1]) == len(retry_lines) + 1
