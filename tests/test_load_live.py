"""Load on the live MariaDB: 1,000 tasks on a pool of 10, cancellation storms (on each MySQL
driver), 16 threads."""

from __future__ import annotations

import asyncio
import collections
import random
import threading
import time

import pytest

from async_db_client import PoolTimeout
from async_db_client.paths import path_key
from async_db_client.sync import DBClientFactory as SyncFactory
from tests.support.live import (
    MYSQL_DRIVERS,
    client_config,
    connect,
    executor_of,
    live_client,
    open_transactions,
    require_driver,
    running,
    server_connections,
)
from tests.support.reliability import report
from tests.support.waiting import PATIENCE, SLACK, eventually

pytestmark = [pytest.mark.live, pytest.mark.slow]


def no_stray_connections(database: str, pool: object) -> bool:
    """The server lists exactly the pool's connections to ``database``: none leaked, and
    every discarded one closed (in the background, so a test polls this)."""
    return server_connections(database) == pool.get_stats().size  # type: ignore[attr-defined]


@pytest.mark.asyncio
async def test_a_thousand_tasks_on_a_pool_of_ten(own_database: str) -> None:
    async with live_client(own_database, min_size=2, max_size=10, acquire_timeout=30) as db:

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
        # Nothing leaked (the migrating client's connection may still be closing).
        await eventually(lambda: no_stray_connections(own_database, executor_of(db).pool))
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
    deadline, statement = 2.0, 1.0
    async with live_client(mysql_database, max_size=2, acquire_timeout=deadline) as db:
        executor = executor_of(db)
        durations: list[float] = []
        timeouts = 0

        async def slow(n: int) -> None:
            nonlocal timeouts
            start = time.monotonic()
            try:
                await executor.run(lambda s: s.fetchall(f"SELECT SLEEP({statement:g})"))
            except PoolTimeout:
                timeouts += 1
                durations.append(time.monotonic() - start)

        await asyncio.gather(*(slow(n) for n in range(50)))
        # 50 statements of 1 s on 2 connections need 25 s: whatever the machine, at most
        # 6 start within the 2 s deadline, the others time out.
        assert timeouts >= 50 - 2 * (deadline / statement + 1)
        # Bounded by the deadline, not by the queue (25 s): a slow machine adds seconds.
        queue = 50 * statement / 2
        assert max(durations) < deadline + SLACK < queue
        stats = executor.pool.get_stats()
        assert stats.acquire_timeouts == timeouts and stats.in_use == 0


#: The storm: tasks of three kinds (a two-write transaction, a read, a bulk write of 200),
#: each cancelled at a point the test chooses (seeded), never at a moment of the wall
#: clock: a slow machine then sees the same storm as a fast one.
STORM = 600
#: Writes of LOCKED, a row the test holds locked: cancelled while the server runs them.
#: The first tasks, so that they take connections before the storm fills the pool.
BLOCKED = frozenset(range(4))
#: Paired writes stopped between their two writes (a write uncommitted), cancelled there.
HELD = frozenset(range(6, 66, 6))
LOCKED = "/storm/locked"


@pytest.mark.asyncio
@pytest.mark.parametrize("driver", MYSQL_DRIVERS)
async def test_cancellation_storm_leaves_nothing_checked_out(
    own_database: str, driver: str
) -> None:
    require_driver(driver)
    rng = random.Random(20261126)
    async with live_client(
        own_database, driver=driver, max_size=8, acquire_timeout=4 * PATIENCE
    ) as db:
        pool = executor_of(db).pool
        await db.insert_or_update_hash({"path": LOCKED, "current_hash": "h"})
        # Every other task: cancelled once the storm has finished `at` statements (0: before
        # it starts), or never (None), so some always finish and some never do.
        cancel_at = {
            n: None if rng.random() < 0.25 else rng.randrange(STORM)
            for n in range(STORM)
            if n not in HELD | BLOCKED
        }
        yields = [rng.randrange(3) for _ in range(STORM)]
        due: dict[int, list[asyncio.Task[None]]] = collections.defaultdict(list)
        statements = 0

        def statement_done() -> None:
            # The storm's own clock: the statements it has finished so far.
            nonlocal statements
            statements += 1
            for task in due.pop(statements, []):
                task.cancel()

        async def paired_write(n: int) -> None:
            # Two writes in one transaction, with awaits between them: a cancellation
            # must leave both or neither.
            async with db.transaction():
                await db.insert_or_update_hash({"path": f"/pair/{n}/a", "current_hash": "h"})
                statement_done()
                if n in HELD:
                    task = asyncio.current_task()
                    assert task is not None
                    # Cancelled from the event loop, as by another task, while it waits here.
                    asyncio.get_running_loop().call_soon(task.cancel)
                    await asyncio.Event().wait()  # never set
                for _ in range(yields[n]):
                    await asyncio.sleep(0)  # other tasks run inside this transaction
                await db.insert_or_update_hash({"path": f"/pair/{n}/b", "current_hash": "h"})
                statement_done()

        async def read(n: int) -> None:
            await db.get_hash_record(f"/pair/{n}/a")
            statement_done()

        async def bulk(n: int) -> None:
            await db.insert_or_update_hashes(
                [{"path": f"/bulk/{n}/{i}", "current_hash": "h"} for i in range(200)]
            )
            statement_done()

        async def blocked(n: int) -> None:
            await db.insert_or_update_hash({"path": LOCKED, "current_hash": f"h{n}"})

        kinds = [paired_write, read, bulk]
        holder = connect(own_database)
        try:
            holder.begin()
            with holder.cursor() as cursor:  # a record lock on LOCKED's row alone
                cursor.execute(
                    "SELECT path FROM hash_records WHERE path_key = %s FOR UPDATE",
                    (path_key(LOCKED),),
                )
            # Cancelled mid-statement: each runs on the server (waiting for the lock) before
            # the storm starts around them, so they hold their connections (a pool filled by
            # the storm first would keep them queued for as long as the storm runs). Until
            # then they are the only writes: matched by statement, not by parameter, which
            # asyncmy's prepared statements show as "?".
            tasks = [asyncio.create_task(blocked(n)) for n in sorted(BLOCKED)]
            await eventually(
                lambda: len(running(own_database, "INSERT INTO hash_records")) == len(BLOCKED),
                what=f"{len(BLOCKED)} writes of {LOCKED} running",
            )
            for n in range(len(BLOCKED), STORM):
                tasks.append(asyncio.create_task(kinds[n % 3](n)))
                at = cancel_at.get(n)
                if at == 0:
                    tasks[-1].cancel()
                elif at is not None:
                    due[at].append(tasks[-1])
            # The storm runs on the other connections when they are cancelled, and the lock
            # is held until they are done: they end cancelled, never by the lock's release.
            await eventually(lambda: statements > 0, what="the storm's first statement")
            for n in BLOCKED:
                tasks[n].cancel()
            await asyncio.wait([tasks[n] for n in BLOCKED], timeout=PATIENCE)
        finally:
            holder.rollback()
            holder.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        others = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        assert not others, others[:3]
        by_design = len(HELD) + len(BLOCKED) + sum(at == 0 for at in cancel_at.values())
        never = sum(at is None for at in cancel_at.values())
        assert by_design <= cancelled <= STORM - never
        stats = pool.get_stats()
        assert stats.in_use == 0
        # Each held a connection in an unknown state when cancelled: closed, never reused.
        assert stats.connections_discarded >= len(HELD) + len(BLOCKED)
        # The server rolls back and drops the discarded connections once it sees them
        # closed, in the background: waited for, however long a loaded machine takes.
        await eventually(lambda: open_transactions(own_database) == 0, what="no open transaction")
        await eventually(
            lambda: no_stray_connections(own_database, pool), what="the pool's connections only"
        )
        with connect(own_database) as conn, conn.cursor() as cursor:
            cursor.execute(
                "SELECT SUBSTRING_INDEX(path, '/', 3) AS pair, COUNT(*) FROM hash_records"
                " WHERE path LIKE '/pair/%' GROUP BY pair HAVING COUNT(*) <> 2"
            )
            assert cursor.fetchall() == ()  # every transaction: both writes or none
            cursor.execute(
                "SELECT COUNT(*) FROM hash_records WHERE path IN %s",
                ([f"/pair/{n}/a" for n in HELD],),
            )
            assert cursor.fetchone() == (0,)  # a transaction cancelled half-way: nothing
        # and the pool still works
        assert await db.insert_or_update_hash({"path": "/after-storm", "current_hash": "h"})
    report(
        "cancellation storm: 600 tasks cancelled at seeded points of its progress"
        + ("" if driver == "aiomysql" else f" ({driver})"),
        tasks=STORM,
        cancelled=cancelled,
        finished=STORM - cancelled,
        cancelled_in_transaction=len(HELD),
        cancelled_mid_statement=len(BLOCKED),
        connections_discarded=stats.connections_discarded,
        checked_out_after=0,
        open_transactions_after=0,
        half_written_transactions=0,
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
