"""The ODBC path for real: aioodbc + unixODBC + MariaDB's ODBC driver on the live server.

The contract suites already run through this path (backend ``mysql-odbc``); these tests
cover what they cannot see: rollback on release, error mapping, reconnection after a
killed connection, cancellation of a running statement, and the adapter's threads.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from async_db_client import IntegrityError
from tests.support.live import (
    connect,
    connection_gone,
    connection_id,
    executor_of,
    live_client,
    running,
)
from tests.support.waiting import PATIENCE, eventually

pytestmark = [pytest.mark.live]


def odbc_client(database: str, **pool: Any) -> Any:
    return live_client(database, driver="odbc", **pool)


@pytest.mark.asyncio
async def test_open_transaction_is_rolled_back_on_release(mysql_database: str) -> None:
    async with odbc_client(mysql_database, max_size=1) as db:
        executor = executor_of(db)
        with pytest.raises(RuntimeError):
            async with executor.transaction() as tx:
                await tx.execute(
                    "INSERT INTO remote_logs (log_key, log_level, logged_at, summary_message)"
                    " VALUES (?, 'INFO', ?, 'never committed')",
                    ("k1", "2024-01-01 00:00:00"),
                )
                raise RuntimeError
        assert await db.get_logs() == []
        assert executor.pool.get_stats().in_use == 0


@pytest.mark.asyncio
async def test_duplicate_key_maps_to_integrity_error(mysql_database: str) -> None:
    async with odbc_client(mysql_database) as db:
        sql = (
            "INSERT INTO remote_logs (log_key, log_level, logged_at, summary_message)"
            " VALUES ('dup', 'INFO', '2024-01-01', 'x')"
        )
        await executor_of(db).execute(sql)
        with pytest.raises(IntegrityError):
            await executor_of(db).execute(sql)
        assert await db.put_log({"summary_message": "y"}, idempotency_key="dup") is not None


@pytest.mark.asyncio
async def test_killed_connection_is_replaced_and_the_call_retried(mysql_database: str) -> None:
    async with odbc_client(mysql_database, check_after_idle=3600) as db:
        executor = executor_of(db)
        victim = await connection_id(executor)
        with connect() as admin, admin.cursor() as cursor:
            cursor.execute(f"KILL {victim}")
        await eventually(lambda: connection_gone(victim))  # the server has hung up
        assert await db.insert_or_update_hash({"path": "/after-kill", "current_hash": "h"})
        assert await connection_id(executor) != victim
        stats = executor.pool.get_stats()
        assert stats.retries >= 1 and stats.connections_lost >= 1


@pytest.mark.asyncio
async def test_cancelled_statement_is_cancelled_on_the_server(mysql_database: str) -> None:
    async with odbc_client(mysql_database) as db:
        executor = executor_of(db)
        # Far longer than the wait below: only a cancellation on the server ends it in time.
        endless = f"SELECT SLEEP({4 * PATIENCE:g})"
        task = asyncio.create_task(executor.run(lambda s: s.fetchall(endless)))
        [victim] = await eventually(lambda: running(mysql_database, endless))  # mid-statement
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The discarded connection's statement is cancelled from the spare thread, so the
        # close does not wait for it to finish and the server drops the connection.
        await eventually(lambda: connection_gone(victim))
        assert await connection_id(executor) != victim
        assert executor.pool.get_stats().in_use == 0


@pytest.mark.asyncio
async def test_threads_are_sized_to_the_pool_and_stopped_on_close(mysql_database: str) -> None:
    def odbc_threads() -> int:
        return sum(t.name.startswith("async_db_client-odbc") for t in threading.enumerate())

    async with odbc_client(mysql_database, max_size=3) as db:
        await asyncio.gather(*(db.get_hash_record(f"/t{i}") for i in range(20)))
        assert 1 <= odbc_threads() <= 4  # max_size + 1 spare
    assert odbc_threads() == 0
