"""Faults injected for real in the middle of a 20,000-record bulk write from 8 tasks.

Through a test-owned TCP proxy (connections dropped, traffic stalled, a result cut in
half, the server refusing connections) and with a private mariadbd killed (-9) and
started again, on each MySQL driver (aiomysql, asyncmy). Every call either succeeds or
raises a documented error within the bound its settings imply; afterwards every record
reported as stored is in the table exactly once with the right rotation, and the pool
recovers without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from async_db_client import DBClientFactory, DBInstance
from async_db_client.executor import CLIENT_TIMEOUT_GRACE
from tests.support.fault_proxy import FaultProxy
from tests.support.live import (
    MYSQL,
    MYSQL_DRIVERS,
    connect,
    create_database,
    drop_database,
    require_driver,
    require_mysql,
)
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.reliability import (
    Outcome,
    audit,
    bulk_under_fault,
    call_bound,
    fault_pool,
    report,
)
from tests.support.waiting import SLACK

pytestmark = [pytest.mark.live, pytest.mark.slow]

PATHS = [f"/site/d{i // 100:03d}/r{i:05d}" for i in range(20_000)]
POOL = fault_pool()
#: A fault lasts a second longer than the timeout it is meant to trip: from the settings.
STALL_S = POOL["query_timeout"] + CLIENT_TIMEOUT_GRACE + 1
UNREACHABLE_S = POOL["acquire_timeout"] + 1


def table(database: str, **connect_args: Any) -> dict[str, tuple[str, str | None]]:
    with connect(database, **connect_args) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), COUNT(DISTINCT path_key) FROM hash_records")
        total, distinct = cursor.fetchone()
        assert total == distinct  # never a record twice
        cursor.execute("SELECT path, current_hash, prev_hash FROM hash_records")
        return {path: (current, prev) for path, current, prev in cursor.fetchall()}


@pytest.fixture(params=MYSQL_DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_driver(name)
    return name


@pytest_asyncio.fixture
async def fault_database() -> AsyncIterator[str]:
    require_mysql()
    name = create_database("adc_fault")
    try:
        yield name
    finally:
        drop_database(name)


def client(port: int, database: str, pool: dict[str, Any], driver: str) -> DBInstance:
    config = {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": port,
                "database": database,
                "user": MYSQL["user"],
                "password": MYSQL["password"],
                "driver": driver,
                "pool": pool,
            },
        }
    }
    return DBClientFactory(config).create_client()


Injector = Callable[[FaultProxy, Outcome], Awaitable[float]]
FAULTS: dict[str, Injector] = {}
#: The fault starts once this many of the 80 calls are done.
START_AFTER = 16


def fault(name: str) -> Callable[[Injector], Injector]:
    def register(func: Injector) -> Injector:
        FAULTS[name] = func
        return func

    return register


# Each fault waits for the write to be under way, injects, clears, and returns the
# monotonic time at which it cleared.


@fault("drop every connection, three times")
async def drop_connections(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    for _ in range(3):
        await asyncio.to_thread(proxy.drop_all)
        await asyncio.sleep(0.05)
    return time.monotonic()


@fault(f"stall all traffic for {STALL_S:g} s")
async def stall_traffic(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    await asyncio.to_thread(proxy.stall, True)
    await asyncio.sleep(STALL_S)  # the fault's length: longer than the query timeout + grace
    await asyncio.to_thread(proxy.stall, False)
    return time.monotonic()


@fault("cut connections mid-result for 1 s")
async def cut_results(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    await asyncio.to_thread(proxy.cut_mid_result, 5)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(proxy.cut_mid_result, None)
    return time.monotonic()


@fault(f"server unreachable for {UNREACHABLE_S:g} s")
async def refuse_connections(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    await asyncio.to_thread(proxy.refuse, True)
    await asyncio.to_thread(proxy.drop_all)
    await asyncio.sleep(UNREACHABLE_S)  # the fault's length: longer than the acquire timeout
    await asyncio.to_thread(proxy.refuse, False)
    return time.monotonic()


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(FAULTS))
async def test_bulk_write_through_a_fault(name: str, fault_database: str, driver: str) -> None:
    pool = POOL
    with FaultProxy(MYSQL["port"]) as proxy:
        async with client(proxy.port, fault_database, pool, driver) as db:
            await db.migrate()
            first = await bulk_under_fault(db, PATHS, "v1")
            assert not first.failed_calls
            cleared: list[float] = []

            async def inject(outcome: Outcome) -> None:
                cleared.append(await FAULTS[name](proxy, outcome))

            start = time.monotonic()
            outcome = await bulk_under_fault(db, PATHS, "v2", inject)
            elapsed = time.monotonic() - start
            bound = call_bound(pool)
            assert max(c.seconds for c in outcome.calls) <= bound + SLACK
            recovery = outcome.first_success_after(cleared[0])

            # The pool recovers by itself: a full write again, no failure.
            again = await bulk_under_fault(db, PATHS, "v2")
            assert not again.failed_calls
            stats = next(iter(db.pool_stats().values()))
            assert stats.in_use == 0
    counts = audit(table(fault_database), PATHS, outcome)
    report(
        f"proxy: {name}" + ("" if driver == "aiomysql" else f" ({driver})"),
        **counts,
        errors=sorted({c.error for c in outcome.calls if c.error}),
        slowest_call_s=round(max(c.seconds for c in outcome.calls), 2),
        call_bound_s=round(bound, 1),
        recovery_s=None if recovery is None else round(recovery, 2),
        write_s=round(elapsed, 2),
        retries=stats.retries,
        connections_lost=stats.connections_lost,
    )


@pytest.mark.asyncio
async def test_bulk_write_through_a_server_kill(
    private_server: PrivateMariaDB, driver: str
) -> None:
    pool = POOL
    async with client(private_server.port, "hashdb", pool, driver) as db:
        await db.migrate()
        assert not (await bulk_under_fault(db, PATHS, "v1")).failed_calls
        restarted: list[float] = []

        async def kill_and_restart(outcome: Outcome) -> None:
            await outcome.progress(START_AFTER)
            await asyncio.to_thread(private_server.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(private_server.start)
            restarted.append(time.monotonic())

        outcome = await bulk_under_fault(db, PATHS, "v2", kill_and_restart)
        assert max(c.seconds for c in outcome.calls) <= call_bound(pool) + SLACK
        recovery = outcome.first_success_after(restarted[0])
        again = await bulk_under_fault(db, PATHS, "v2")
        assert not again.failed_calls
        stats = next(iter(db.pool_stats().values()))
    counts = audit(table("hashdb", port=private_server.port), PATHS, outcome)
    report(
        # The key RELIABILITY.md quotes (aiomysql's run; asyncmy's has its own row key).
        "kill -9 of the server, restarted after 1 s"
        + ("" if driver == "aiomysql" else f" ({driver})"),
        **counts,
        errors=sorted({c.error for c in outcome.calls if c.error}),
        slowest_call_s=round(max(c.seconds for c in outcome.calls), 2),
        recovery_s=None if recovery is None else round(recovery, 2),
        retries=stats.retries,
        connections_lost=stats.connections_lost,
    )
