"""Faults on PostgreSQL: a private ``postgres`` killed with SIGKILL (postmaster and
backends) in the middle of bulk writes from eight tasks, restarted (crash recovery) a
second later, then the audit of tests/support/reliability.py: every record a call
reported stored is there once and rotated, none lost, none doubled, none half-written."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance
from tests.support.postgres import in_thread
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


def client(port: int) -> DBInstance:
    config = {
        "database": {
            "remote_type": "postgresql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": port,
                "database": "postgres",
                "user": "postgres",
                "ssl": {"sslmode": "disable"},
                "pool": POOL,
            },
        }
    }
    return DBClientFactory(config).create_client()


def table(port: int) -> dict[str, tuple[str, str | None]]:
    async def read() -> dict[str, tuple[str, str | None]]:
        import asyncpg

        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user="postgres", database="postgres", ssl=False
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
