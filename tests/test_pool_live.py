"""The connection pool against the live MariaDB: sizes, waits, returns, cancellation.

The tests that exercise the driver (returns, cancellation, timeouts, disconnects,
connect failures) run on each MySQL driver (aiomysql, asyncmy)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pymysql
import pytest
import pytest_asyncio

import async_db_client.executor
from async_db_client import (
    DBClientFactory,
    DBConnectionError,
    DBInstance,
    PoolClosedError,
    PoolTimeout,
    QueryTimeoutError,
    TooManyWaitersError,
    WrongEventLoopError,
)
from tests.support.live import (
    MYSQL_DRIVERS,
    client_config,
    connect,
    connection_gone,
    connection_id,
    executor_of,
    is_closed,
    live_client,
    require_driver,
    running,
)
from tests.support.waiting import PATIENCE, SLACK, eventually

pytestmark = [pytest.mark.live]

#: How long a statement of these tests sleeps: until it is cancelled or timed out, on any
#: machine, far longer than any wait of these tests.
ENDLESS_S = 4 * PATIENCE


def kill_connection(database: str, conn_id: int) -> None:
    with connect(database) as conn, conn.cursor() as cursor:
        cursor.execute(f"KILL {int(conn_id)}")


@pytest.fixture(params=MYSQL_DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_driver(name)
    return name


@pytest_asyncio.fixture
async def db(mysql_database: str, driver: str) -> AsyncIterator[DBInstance]:
    async with live_client(mysql_database, driver=driver, max_size=8) as client:
        yield client


@pytest.mark.asyncio
async def test_many_tasks_share_a_small_pool(db: DBInstance) -> None:
    await db.insert_or_update_hashes(
        [{"path": f"/r/{i}", "current_hash": f"h{i}"} for i in range(64)]
    )
    executor = executor_of(db)
    peak = 0

    async def read(i: int) -> str | None:
        nonlocal peak
        record = await db.get_hash_record(f"/r/{i}")
        peak = max(peak, executor.pool.get_stats().in_use)
        return None if record is None else record.current_hash

    before = executor.pool.get_stats().acquired_total
    results = await asyncio.gather(*(read(i) for i in range(64)))
    assert results == [f"h{i}" for i in range(64)]
    stats = executor.pool.get_stats()
    assert stats.in_use == 0 and stats.waiting == 0
    assert stats.size <= 8 and peak <= 8
    assert stats.acquired_total - before == 64
    assert stats.idle == stats.size
    assert list(db.pool_stats()) == [executor.pool.name]


@pytest.mark.asyncio
async def test_acquire_timeout_is_typed_and_bounded(mysql_database: str) -> None:
    async with live_client(mysql_database, max_size=1, acquire_timeout=0.3) as db:
        pool = executor_of(db).pool
        async with pool.connection():
            start = time.monotonic()
            with pytest.raises(PoolTimeout, match=r"no connection within 0.3s \(1/1 in use"):
                await db.get_hash_record("/x")
            elapsed = time.monotonic() - start
        assert 0.25 < elapsed < 0.3 + SLACK  # the deadline: not before, and no hang
        assert pool.get_stats().acquire_timeouts == 1
        assert await db.get_hash_record("/x") is None  # usable again


@pytest.mark.asyncio
async def test_waiters_are_capped_and_served_in_order(mysql_database: str) -> None:
    async with live_client(mysql_database, max_size=1, max_waiting=2, acquire_timeout=5) as db:
        pool = executor_of(db).pool
        order: list[int] = []

        async def waiter(n: int) -> None:
            async with pool.connection():
                order.append(n)

        async with pool.connection():
            tasks = [asyncio.create_task(waiter(n)) for n in range(2)]
            await eventually(lambda: pool.get_stats().waiting == 2)
            with pytest.raises(TooManyWaitersError):
                await pool.acquire()
        await asyncio.gather(*tasks)
        assert order == [0, 1]


@pytest.mark.asyncio
async def test_connection_returned_inside_a_transaction_is_rolled_back(db: DBInstance) -> None:
    pool = executor_of(db).pool
    async with pool.connection() as conn:
        await conn.raw.begin()
        async with conn.raw.cursor() as cursor:
            await cursor.execute(
                "INSERT INTO remote_logs (log_key, log_level, logged_at, summary_message)"
                " VALUES ('left-open', 'INFO', '2024-01-01', 'never committed')"
            )
    # The same connection (LIFO) comes back clean; nothing was committed.
    async with pool.connection() as again:
        assert again is conn and not again.raw.get_transaction_status()
    assert await db.get_logs() == []


#: The endless statement, without parameters and with one (asyncmy prepares those).
SLEEPS = [
    pytest.param(f"SELECT SLEEP({ENDLESS_S:g})", (), id="text"),
    pytest.param("SELECT SLEEP(?)", (ENDLESS_S,), id="parameters"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("sleep", "params"), SLEEPS)
async def test_cancelled_query_closes_its_connection(
    db: DBInstance, mysql_database: str, sleep: str, params: tuple[Any, ...]
) -> None:
    executor = executor_of(db)
    pool = executor.pool
    task = asyncio.create_task(executor.run(lambda s: s.fetchall(sleep, params)))
    # Cancelled mid-statement: once the server runs it.
    [victim] = await eventually(lambda: running(mysql_database, "SLEEP("))
    discarded = pool.get_stats().connections_discarded
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The release ran before the cancellation reached this task: counted already.
    stats = pool.get_stats()
    assert stats.in_use == 0
    assert stats.connections_discarded == discarded + 1
    assert await connection_id(executor) != victim  # the cancelled one is never reused
    assert await db.get_hash_record("/after") is None
    with contextlib.suppress(pymysql.err.OperationalError):  # unless gone already,
        kill_connection(mysql_database, victim)  # its statement would outlive the test


@pytest.mark.asyncio
async def test_cancelled_transaction_stores_nothing(db: DBInstance) -> None:
    entered = asyncio.Event()

    async def writer() -> None:
        async with db.transaction():
            await db.insert_or_update_hash({"path": "/tx", "current_hash": "h"})
            entered.set()
            await asyncio.Event().wait()  # never set: holds the transaction until cancelled

    task = asyncio.create_task(writer())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await db.get_hash_record("/tx") is None
    assert executor_of(db).pool.get_stats().in_use == 0


@pytest.mark.asyncio
@pytest.mark.parametrize(("sleep", "params"), SLEEPS)
async def test_query_timeout_is_enforced_by_the_server(
    mysql_database: str,
    driver: str,
    sleep: str,
    params: tuple[Any, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The client's own deadline (query timeout + a grace) is the fallback for a server
    # that does not answer; moved out of reach here, so that on a loaded machine the
    # server's answer is never overtaken by it. The server must enforce the timeout alone.
    monkeypatch.setattr(async_db_client.executor, "CLIENT_TIMEOUT_GRACE", 4 * PATIENCE)
    async with live_client(mysql_database, driver=driver, query_timeout=1) as db:
        executor = executor_of(db)
        conn_id = await connection_id(executor)
        start = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            await executor.run(lambda s: s.fetchall(sleep, params))
        assert time.monotonic() - start < 1 + SLACK  # far below the client's deadline
        # MariaDB aborted the statement itself: the connection is still good.
        assert await connection_id(executor) == conn_id
        assert executor.pool.get_stats().connections_discarded == 0


@pytest.mark.asyncio
async def test_max_lifetime_retires_old_connections(mysql_database: str) -> None:
    async with live_client(mysql_database, max_lifetime=0.3, min_size=0) as db:
        executor = executor_of(db)
        first = await connection_id(executor)
        await asyncio.sleep(0.4)  # past the lifetime: a lower bound, load only adds to it
        second = await connection_id(executor)
        assert second != first
        assert executor.pool.get_stats().connections_opened >= 2


@pytest.mark.asyncio
async def test_idle_connection_killed_by_server_is_replaced_silently(
    mysql_database: str, driver: str
) -> None:
    async with live_client(mysql_database, driver=driver, check_after_idle=0) as db:
        executor = executor_of(db)
        first = await connection_id(executor)
        kill_connection(mysql_database, first)
        await eventually(lambda: connection_gone(first))  # the server has hung up
        assert await connection_id(executor) != first  # the check caught it
        assert executor.pool.get_stats().retries == 0


@pytest.mark.asyncio
async def test_connection_lost_mid_use_is_retried(mysql_database: str, driver: str) -> None:
    async with live_client(mysql_database, driver=driver, check_after_idle=3600) as db:
        executor = executor_of(db)
        first = await connection_id(executor)
        kill_connection(mysql_database, first)
        await eventually(lambda: connection_gone(first))  # the server has hung up
        assert await db.insert_or_update_hash({"path": "/retried", "current_hash": "h"})
        stats = executor.pool.get_stats()
        assert stats.retries == 1 and stats.connections_lost >= 1
        assert await db.get_single_field("/retried", "current_hash") == "h"


@pytest.mark.asyncio
async def test_tiers_on_one_database_share_one_pool(mysql_database: str) -> None:
    config = client_config(mysql_database, tiers=("remote", "core"))
    async with DBClientFactory(config).create_client() as db:
        await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})
        await db.put_site_heartbeat("site")
        assert len(db.pool_stats()) == 1


@pytest.mark.asyncio
async def test_close_waits_for_borrowed_connections_then_aborts(
    mysql_database: str, driver: str
) -> None:
    config = client_config(mysql_database, tiers=("remote",), driver=driver)
    db = DBClientFactory(config).create_client()
    pool = executor_of(db).pool
    borrowed = await pool.acquire()
    start = time.monotonic()
    await pool.aclose(timeout=0.2)
    assert 0.15 < time.monotonic() - start < 0.2 + SLACK  # waited the timeout, no longer
    assert is_closed(borrowed.raw)
    with pytest.raises(PoolClosedError):
        await pool.acquire()
    await pool.release(borrowed)  # late return after close: quietly ignored
    await db.aclose()
    with pytest.raises(PoolClosedError):
        await db.get_hash_record("/a")


@pytest.mark.asyncio
async def test_unreachable_server_fails_fast_with_a_clear_error(driver: str) -> None:
    config = {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": 1,
                "database": "x",
                "user": "u",
                "password": "pw-never-shown",
                "driver": driver,
                "pool": {"acquire_timeout": 0.5, "connect_timeout": 0.2},
            },
        }
    }
    async with DBClientFactory(config).create_client() as db:
        start = time.monotonic()
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
        assert time.monotonic() - start < 0.5 + SLACK  # the acquire timeout bounds it
        assert "mysql://u@127.0.0.1:1/x" in str(info.value)
        assert "pw-never-shown" not in str(info.value)
        assert await db.health_check() == {"local_db": False}
        assert db.pool_stats()["mysql://u@127.0.0.1:1/x"].connection_errors >= 1


@pytest.mark.asyncio
async def test_wrong_password_is_not_retried(mysql_database: str, driver: str) -> None:
    deadline = 4 * PATIENCE
    pool = {"min_size": 0, "acquire_timeout": deadline}  # min_size 0: only the call connects
    config = client_config(mysql_database, tiers=("remote",), pool=pool, driver=driver)
    config["database"]["remote_config"]["password"] = "definitely-wrong"
    async with DBClientFactory(config).create_client() as db:
        start = time.monotonic()
        with pytest.raises(DBConnectionError, match="1045") as info:
            await db.get_hash_record("/a")
        # One attempt, and no backoff loop until the (distant) deadline.
        assert sum(s.connection_errors for s in db.pool_stats().values()) == 1
        assert time.monotonic() - start < deadline / 2
        assert "definitely-wrong" not in str(info.value)


@pytest.mark.asyncio
async def test_a_pool_belongs_to_one_event_loop(mysql_database: str) -> None:
    async with live_client(mysql_database) as db:
        assert await db.get_hash_record("/a") is None  # the pool is bound to this loop now

        def from_another_loop() -> None:
            with pytest.raises(WrongEventLoopError, match="another event loop"):
                asyncio.run(db.get_hash_record("/a"))
            with pytest.raises(WrongEventLoopError):
                asyncio.run(executor_of(db).pool.aclose())

        await asyncio.to_thread(from_another_loop)
        assert await db.get_hash_record("/a") is None  # still fine in its own loop
