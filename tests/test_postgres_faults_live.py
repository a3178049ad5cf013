"""Faults on PostgreSQL, in the middle of bulk writes (COPY + merge) from eight tasks,
each followed by the audit of tests/support/reliability.py: every record a call reported
stored is there once and rotated, none lost, none doubled, none half-written.

* a private ``postgres`` killed with SIGKILL (postmaster and backends), restarted (crash
  recovery) a second later;
* through the fault proxy (tests/support/fault_proxy.py) to the live server: every
  connection dropped at once, all traffic stalled past the query timeout, the server
  unreachable past the acquire timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance
from async_db_client.executor import CLIENT_TIMEOUT_GRACE
from tests.support.fault_proxy import FaultProxy
from tests.support.postgres import PG, admin_fetch, in_thread
from tests.support.postgres_server import PrivatePostgres
from tests.support.reliability import (
    Outcome,
    audit,
    bulk_under_fault,
    call_bound,
    fault_pool,
    report,
)
from tests.support.waiting import SLACK

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.asyncio]

PATHS = [f"/site/d{i // 100:03d}/r{i:05d}" for i in range(10_000)]
POOL = fault_pool()
#: Calls finished before the kill: it lands while the others are mid-write.
START_AFTER = 8


def client(port: int, database: str = "postgres") -> DBInstance:
    config = {
        "database": {
            "remote_type": "postgresql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": port,
                "database": database,
                "user": "postgres",
                "ssl": {"sslmode": "disable"},
                "pool": POOL,
            },
        }
    }
    return DBClientFactory(config).create_client()


def table(port: int, database: str = "postgres") -> dict[str, tuple[str, str | None]]:
    async def read() -> dict[str, tuple[str, str | None]]:
        import asyncpg

        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user="postgres", database=database, ssl=False
        )
        try:
            total, distinct = await conn.fetchrow(
                "SELECT COUNT(*), COUNT(DISTINCT path_key) FROM hash_records"
            )
            assert total == distinct  # never a record twice
            rows = await conn.fetch("SELECT path, current_hash, prev_hash FROM hash_records")
            return {row[0]: (row[1], row[2]) for row in rows}
        finally:
            await conn.close()

    result: dict[str, tuple[str, str | None]] = in_thread(read())
    return result


async def test_bulk_write_through_a_postgres_kill() -> None:
    with PrivatePostgres() as server:
        async with client(server.port) as db:
            await db.migrate()
            assert not (await bulk_under_fault(db, PATHS, "v1")).failed_calls
            restarted: list[float] = []

            async def kill_and_restart(outcome: Outcome) -> None:
                await outcome.progress(START_AFTER)
                await asyncio.to_thread(server.kill)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(server.start)
                restarted.append(time.monotonic())

            outcome = await bulk_under_fault(db, PATHS, "v2", kill_and_restart)
            assert max(c.seconds for c in outcome.calls) <= call_bound(POOL) + SLACK
            recovery = outcome.first_success_after(restarted[0])
            again = await bulk_under_fault(db, PATHS, "v2")
            assert not again.failed_calls
            stats: Any = next(iter(db.pool_stats().values()))
            assert stats.in_use == 0
        counts = audit(table(server.port), PATHS, outcome)
    report(
        "kill -9 of PostgreSQL, restarted after 1 s",
        **counts,
        errors=sorted({c.error for c in outcome.calls if c.error}),
        slowest_call_s=round(max(c.seconds for c in outcome.calls), 2),
        recovery_s=None if recovery is None else round(recovery, 2),
        retries=stats.retries,
        connections_lost=stats.connections_lost,
    )


async def drop_connections(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    await asyncio.to_thread(proxy.drop_all)
    return time.monotonic()


async def stall_traffic(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    await asyncio.to_thread(proxy.stall, True)
    # The fault's length: past the query timeout and the client's grace.
    await asyncio.sleep(POOL["query_timeout"] + CLIENT_TIMEOUT_GRACE + 1)
    await asyncio.to_thread(proxy.stall, False)
    return time.monotonic()


async def refuse_connections(proxy: FaultProxy, outcome: Outcome) -> float:
    await outcome.progress(START_AFTER)
    await asyncio.to_thread(proxy.refuse, True)
    await asyncio.to_thread(proxy.drop_all)
    await asyncio.sleep(POOL["acquire_timeout"] + 1)  # past the acquire timeout
    await asyncio.to_thread(proxy.refuse, False)
    return time.monotonic()


FAULTS = {
    "drop every connection": drop_connections,
    f"stall all traffic for {POOL['query_timeout'] + CLIENT_TIMEOUT_GRACE + 1:g} s": stall_traffic,
    f"server unreachable for {POOL['acquire_timeout'] + 1:g} s": refuse_connections,
}


@pytest.mark.parametrize("name", sorted(FAULTS))
async def test_bulk_write_through_a_proxy_fault(name: str, own_postgres_database: str) -> None:
    with FaultProxy(PG["port"]) as proxy:
        async with client(proxy.port, own_postgres_database) as db:
            await db.migrate()
            assert not (await bulk_under_fault(db, PATHS, "v1")).failed_calls
            cleared: list[float] = []

            async def inject(outcome: Outcome) -> None:
                cleared.append(await FAULTS[name](proxy, outcome))

            outcome = await bulk_under_fault(db, PATHS, "v2", inject)
            assert max(c.seconds for c in outcome.calls) <= call_bound(POOL) + SLACK
            recovery = outcome.first_success_after(cleared[0])
            again = await bulk_under_fault(db, PATHS, "v2")  # recovered by itself
            assert not again.failed_calls
            stats: Any = next(iter(db.pool_stats().values()))
            assert stats.in_use == 0
    # Nothing left in a transaction on the server by the cut connections.
    idle = await admin_fetch(
        own_postgres_database,
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1"
        " AND state LIKE 'idle in transaction%'",
        own_postgres_database,
    )
    assert idle[0][0] == 0
    counts = audit(table(PG["port"], own_postgres_database), PATHS, outcome)
    report(
        f"PostgreSQL proxy: {name}",
        **counts,
        errors=sorted({c.error for c in outcome.calls if c.error}),
        slowest_call_s=round(max(c.seconds for c in outcome.calls), 2),
        recovery_s=None if recovery is None else round(recovery, 2),
        retries=stats.retries,
        connections_lost=stats.connections_lost,
    )
