"""Load on the live MariaDB: 1,000 tasks on a pool of 10, cancellation storms (on each MySQL
driver), 16 threads."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance, PoolTimeout
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.sync import DBClientFactory as SyncFactory
from tests.support.live import (
    MYSQL_DRIVERS,
    client_config,
    connect,
    empty_tables,
    open_transactions,
    require_driver,
    server_connections,
)
from tests.support.reliability import report

pytestmark = [pytest.mark.live, pytest.mark.slow]


@contextlib.asynccontextmanager
async def client(database: str, driver: str = "aiomysql", **pool: Any) -> AsyncIterator[DBInstance]:
    config = client_config(database, tiers=("remote",), pool=pool, driver=driver)
    async with DBClientFactory(config).create_client() as db:
        await db.migrate()
        empty_tables(database, "remote")
        yield db


@pytest.mark.asyncio
async def test_a_thousand_tasks_on_a_pool_of_ten(own_database: str) -> None:
    async with client(own_database, min_size=2, max_size=10, acquire_timeout=30) as db:

        async def task(n: int) -> None:
            path = f"/load/{n % 250}"
            await db.insert_or_update_hash({"path": path, "current_hash": f"h{n}"})
            assert await db.get_hash_record(path) is not None

        start = time.monotonic()
        await asyncio.gather(*(task(n) for n in range(1000)))
        elapsed = time.monotonic() - start
        stats = next(iter(db.pool_stats().values()))
        assert stats.in_use == 0 and stats.waiting == 0
        assert stats.size <= 10 and stats.idle == stats.size
        assert stats.acquired_total >= 2000
        assert stats.acquire_wait_max_s <= 30
        assert server_connections(own_database) == stats.size  # nothing leaked
    report(
        "load: 1,000 tasks on a pool of 10",
        operations=2000,
        seconds=round(elapsed, 2),
        pool_size=stats.size,
        max_wait_s=stats.acquire_wait_max_s,
        leaked_connections=0,
    )


@pytest.mark.asyncio
async def test_waits_are_bounded_by_the_acquire_timeout(mysql_database: str) -> None:
    async with client(mysql_database, max_size=2, acquire_timeout=0.2) as db:
        store = db.remote_db.store
        executor = store.executor if isinstance(store, SQLRemoteStore) else None
        assert executor is not None
        durations: list[float] = []
        timeouts = 0

        async def slow(n: int) -> None:
            nonlocal timeouts
            start = time.monotonic()
            try:
                await executor.run(lambda s: s.fetchall("SELECT SLEEP(0.1)"))
            except PoolTimeout:
                timeouts += 1
                durations.append(time.monotonic() - start)

        await asyncio.gather(*(slow(n) for n in range(50)))
        assert timeouts > 0
        assert max(durations) < 0.2 + 0.15  # the deadline, plus scheduling slack
        stats = executor.pool.get_stats()
        assert stats.acquire_timeouts == timeouts and stats.in_use == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("driver", MYSQL_DRIVERS)
async def test_cancellation_storm_leaves_nothing_checked_out(
    own_database: str, driver: str
) -> None:
    require_driver(driver)
    rng = random.Random(20261126)
    async with client(own_database, driver, max_size=8, acquire_timeout=30) as db:

        async def paired_write(n: int) -> None:
            # Two writes in one transaction, with awaits between them: a cancellation
            # must leave both or neither.
            async with db.transaction():
                await db.insert_or_update_hash({"path": f"/pair/{n}/a", "current_hash": "h"})
                await asyncio.sleep(rng.uniform(0, 0.01))
                await db.insert_or_update_hash({"path": f"/pair/{n}/b", "current_hash": "h"})

        async def read(n: int) -> None:
            await db.get_hash_record(f"/pair/{n}/a")

        async def bulk(n: int) -> None:
            await db.insert_or_update_hashes(
                [{"path": f"/bulk/{n}/{i}", "current_hash": "h"} for i in range(200)]
            )

        kinds = [paired_write, read, bulk]
        tasks = [asyncio.create_task(kinds[n % 3](n)) for n in range(600)]
        for task in tasks:  # some finish first, others are cancelled waiting or mid-statement
            task.get_loop().call_later(rng.uniform(0, 1.0), task.cancel)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        others = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        assert not others, others[:3]
        assert 0 < cancelled < 600
        await asyncio.sleep(0.1)  # background closes of discarded connections
        stats = next(iter(db.pool_stats().values()))
        assert stats.in_use == 0
        assert open_transactions(own_database) == 0
        assert server_connections(own_database) == stats.size
        with connect(own_database) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT SUBSTRING_INDEX(path, '/', 3) AS pair, COUNT(*) FROM hash_records"
                " WHERE path LIKE '/pair/%' GROUP BY pair HAVING COUNT(*) <> 2"
            )
            assert cursor.fetchall() == ()  # every transaction: both writes or none
        # and the pool still works
        assert await db.insert_or_update_hash({"path": "/after-storm", "current_hash": "h"})
    report(
        "cancellation storm: 600 tasks cancelled at random points"
        + ("" if driver == "aiomysql" else f" ({driver})"),
        tasks=600,
        cancelled=cancelled,
        checked_out_after=0,
        open_transactions_after=0,
        half_written_transactions=0,
        connections_discarded=stats.connections_discarded,
    )


def test_sync_facade_from_sixteen_threads(own_database: str) -> None:
    config = client_config(own_database, tiers=("remote",), pool={"max_size": 8})
    errors: list[BaseException] = []
    with SyncFactory(config).create_client() as db:
        db.migrate()

        def worker(n: int) -> None:
            try:
                for i in range(50):
                    path = f"/threads/{n}/{i}"
                    assert db.insert_or_update_hash({"path": path, "current_hash": "h"})
                    assert db.get_single_field(path, "current_hash") == "h"
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
        assert errors == []
        stats = next(iter(db.pool_stats().values()))
        # One client and pool per calling thread (16 workers and this one), each <= 8.
        assert stats.in_use == 0 and stats.size <= 8 * 17 and stats.max_size == 8 * 17
    with connect(own_database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM hash_records WHERE path LIKE '/threads/%'")
        assert cursor.fetchone() == (800,)
    report("sync facade from 16 threads", operations=1600, seconds=round(elapsed, 2), errors=0)
