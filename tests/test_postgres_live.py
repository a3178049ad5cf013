"""The asyncpg driver on the live PostgreSQL: the pool's guarantees, timeouts and
cancellation, error mapping, COPY bulk writes, migrations under the advisory lock.

No mocks: every test talks to the server (tests/support/postgres.py), its own database.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_db_client import DBClientFactory
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.errors import (
    ConnectionLostError,
    DBConnectionError,
    IntegrityError,
    QueryError,
    QueryTimeoutError,
    ServerRoleError,
    TransientQueryError,
)
from async_db_client.models import HashRecord
from tests.support.postgres import PG, admin_fetch, pg_client_config
from tests.support.waiting import PATIENCE

pytestmark = [pytest.mark.live, pytest.mark.asyncio]


@contextlib.asynccontextmanager
async def client(database: str, **pool: Any) -> AsyncIterator[Any]:
    config = pg_client_config(database, tiers=("remote",), pool=pool or None)
    async with DBClientFactory(config).create_client() as db:
        await db.migrate()
        yield db


def executor_of(db: Any) -> Any:
    assert isinstance(db.remote_db.store, SQLRemoteStore)
    return db.remote_db.store.executor


def record(path: str, current_hash: str, **kw: Any) -> HashRecord:
    return HashRecord(path=path, current_hash=current_hash, **kw)


async def test_bulk_upsert_by_copy_rotates_a_repeated_path_in_order(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database) as db:
        repo = db.remote_db
        # Many rows (the COPY path), one path three times: three rounds, in input order.
        records = [record(f"/d/{n}", f"h{n}") for n in range(200)]
        records[10:10] = [record("/twice", "a1")]
        records[50:50] = [record("/twice", "a2")]
        records[150:150] = [record("/twice", "a3")]
        await repo.insert_or_update_hashes(records)
        twice = await repo.get_hash_record("/twice")
        assert twice is not None
        assert (twice.current_hash, twice.prev_hash) == ("a3", "a2")
        rows = await admin_fetch(own_postgres_database, "SELECT COUNT(*) FROM hash_records")
        assert rows[0][0] == 201
        # And again, unordered (each path once) over several connections: rotates once.
        await repo.insert_or_update_hashes([record(f"/d/{n}", f"g{n}") for n in range(200)])
        again = await repo.get_hash_record("/d/7")
        assert again is not None and (again.current_hash, again.prev_hash) == ("g7", "h7")
        # Nothing of the staging tables outlives the writes.
        temp = await admin_fetch(
            own_postgres_database,
            "SELECT COUNT(*) FROM pg_class WHERE relname = 'adc_hash_staging'",
        )
        assert temp[0][0] == 0


async def test_statement_timeout_is_the_servers_and_keeps_the_connection(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database, query_timeout=0.5) as db:
        executor = executor_of(db)
        pid = (await executor.fetchone("SELECT pg_backend_pid()"))[0]
        with pytest.raises(QueryTimeoutError) as info:
            await executor.fetchone("SELECT pg_sleep(30)")
        assert info.value.code == "57014"
        # Cancelled by the server: the same connection answers the next call.
        assert (await executor.fetchone("SELECT pg_backend_pid()"))[0] == pid
        assert executor.pool.get_stats().connections_discarded == 0


async def test_a_cancelled_statement_terminates_its_connection(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database, max_size=2) as db:
        executor = executor_of(db)
        pid = (await executor.fetchone("SELECT pg_backend_pid()"))[0]
        task = asyncio.create_task(executor.fetchone("SELECT pg_sleep(30)"))
        for _ in range(int(PATIENCE * 20)):
            rows = await admin_fetch(
                own_postgres_database,
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'",
            )
            if rows:
                break
            await asyncio.sleep(0.05)
        assert [row[0] for row in rows] == [pid]
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Never reused: the server sees that backend go, the next call gets another.
        for _ in range(int(PATIENCE * 20)):
            gone = not await admin_fetch(
                own_postgres_database, "SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid
            )
            if gone:
                break
            await asyncio.sleep(0.05)
        assert gone
        assert (await executor.fetchone("SELECT pg_backend_pid()"))[0] != pid


async def test_cancellation_storm_leaves_no_connection_in_a_transaction(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database, max_size=4) as db:
        repo = db.remote_db
        executor = executor_of(db)

        async def writer(n: int) -> None:
            async with repo.transaction() as tx:
                await tx.insert_or_update_hash(record(f"/storm/{n}", "h"))
                await tx.insert_or_update_hash(record(f"/storm/{n}/b", "h"))

        for round_number in range(5):
            tasks = [asyncio.create_task(writer(round_number * 100 + n)) for n in range(8)]
            await asyncio.sleep(0.005 * round_number)
            for task in tasks[::2]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        rows = await admin_fetch(
            own_postgres_database,
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1"
            " AND state LIKE 'idle in transaction%'",
            own_postgres_database,
        )
        assert rows[0][0] == 0
        stats = executor.pool.get_stats()
        assert stats.in_use == 0


async def test_errors_map_by_sqlstate(own_postgres_database: str) -> None:
    async with client(own_postgres_database) as db:
        executor = executor_of(db)
        await executor.execute("CREATE TABLE t (a integer PRIMARY KEY)")
        await executor.execute("INSERT INTO t VALUES (?)", (1,))
        with pytest.raises(IntegrityError) as integrity:
            await executor.execute("INSERT INTO t VALUES (?)", (1,))
        assert integrity.value.code == "23505"
        with pytest.raises(QueryError) as syntax:
            await executor.fetchone("SELEC 1")
        assert syntax.value.code == "42601" and not isinstance(syntax.value, TransientQueryError)
        with pytest.raises(ServerRoleError) as role:
            await executor.run(
                lambda s: _read_only_write(s), transaction=True, retry=False
            )
        assert role.value.code == "25006"
        for sqlstate in ("40001", "40P01", "55P03"):
            with pytest.raises(TransientQueryError) as transient:
                await _raise_in_server(executor, sqlstate)
            assert transient.value.code == sqlstate
            assert not isinstance(transient.value, ServerRoleError)
        with pytest.raises(ConnectionLostError):
            await _raise_in_server(executor, "57P01")  # admin_shutdown: the session ends


async def _read_only_write(session: Any) -> None:
    await session.execute("SET TRANSACTION READ ONLY")
    await session.execute("INSERT INTO t VALUES (?)", (2,))


def _raise_in_server(executor: Any, sqlstate: str) -> Any:
    return executor.run(
        lambda s: s.execute(
            f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{sqlstate}'; END $$"
        ),
        retry=False,
    )


async def test_deadlocks_and_serialization_failures_are_retried(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database) as db:
        executor = executor_of(db)
        # A sequence is not rolled back: the first run fails as a deadlock victim
        # (40P01), the second as a serialization failure (40001), the third succeeds.
        await executor.execute("CREATE SEQUENCE attempts")
        work = (
            "DO $$ DECLARE n bigint := nextval('attempts'); BEGIN"
            " IF n = 1 THEN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END IF;"
            " IF n = 2 THEN RAISE EXCEPTION 'serialization' USING ERRCODE = '40001'; END IF;"
            " END $$"
        )
        before = executor.pool.get_stats().retries
        await executor.execute(work)
        assert executor.pool.get_stats().retries == before + 2
        assert (await executor.fetchone("SELECT last_value FROM attempts"))[0] == 3


async def test_refused_connects_name_the_server_never_the_password(
    own_postgres_database: str,
) -> None:
    secret = "never-Shown-pw'\""
    config = pg_client_config(
        own_postgres_database,
        tiers=("remote",),
        pool={"connect_retry_budget": 0.5, "connect_timeout": 2},
    )
    config["database"]["remote_config"] |= {"port": 1, "password": secret}
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(DBConnectionError) as info:
            await db.remote_db.get_hash_record("/x")
    text = str(info.value)
    assert "cannot connect to postgresql://postgres@127.0.0.1:1/" in text
    assert secret not in text and secret not in repr(info.value)
    assert secret not in repr(db.remote_db.store.executor.driver)

    config["database"]["remote_config"] |= {"port": PG["port"], "database": "adc_missing_db"}
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(DBConnectionError) as missing:
            await db.remote_db.get_hash_record("/x")
    assert "3D000" in str(missing.value) and secret not in str(missing.value)


async def test_connections_lost_to_a_terminated_backend_are_retried(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database) as db:
        executor = executor_of(db)
        pid = (await executor.fetchone("SELECT pg_backend_pid()"))[0]
        await admin_fetch(own_postgres_database, "SELECT pg_terminate_backend($1)", pid)
        # The next idempotent read meets the dead connection, then retries on a new one.
        row = await executor.fetchone("SELECT pg_backend_pid()")
        assert row is not None and row[0] != pid
        with pytest.raises(ConnectionLostError):
            pid = (await executor.fetchone("SELECT pg_backend_pid()"))[0]
            await admin_fetch(own_postgres_database, "SELECT pg_terminate_backend($1)", pid)
            await executor.run(lambda s: s.fetchone("SELECT 1"), retry=False)


async def test_concurrent_migrations_apply_each_step_once(own_postgres_database: str) -> None:
    config = pg_client_config(own_postgres_database)

    async def migrate() -> None:
        async with DBClientFactory(config).create_client() as db:
            await db.migrate()

    await asyncio.gather(*(migrate() for _ in range(4)))
    rows = await admin_fetch(
        own_postgres_database,
        "SELECT tier, COUNT(*) FROM async_db_client_schema GROUP BY tier ORDER BY tier",
    )
    assert [tuple(row) for row in rows] == [("core", 1), ("pipeline", 1), ("remote", 1)]


async def test_pool_stats_and_deadlines_as_on_mysql(own_postgres_database: str) -> None:
    async with client(own_postgres_database, max_size=1, acquire_timeout=0.3) as db:
        executor = executor_of(db)
        pool = executor.pool
        async with pool.connection():
            from async_db_client.errors import PoolTimeout

            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=0.2)
        stats = pool.get_stats()
        assert stats.acquire_timeouts == 1 and stats.in_use == 0 and stats.size == 1


async def test_the_server_sees_utc_and_the_application_name(own_postgres_database: str) -> None:
    async with client(own_postgres_database) as db:
        executor = executor_of(db)
        row = await executor.fetchone(
            "SELECT current_setting('TimeZone'), current_setting('application_name'),"
            " current_setting('statement_timeout')"
        )
        assert row == ("UTC", "async_db_client", "5min")


async def test_bulk_writes_inside_a_transaction_commit_or_roll_back_together(
    own_postgres_database: str,
) -> None:
    async with client(own_postgres_database) as db:
        repo = db.remote_db
        async with repo.transaction() as tx:  # two COPY batches in one transaction
            await tx.insert_or_update_hashes([record(f"/t/{n}", "a") for n in range(100)])
            await tx.insert_or_update_hashes([record(f"/t/{n}", "b") for n in range(100)])
        rotated = await repo.get_hash_record("/t/5")
        assert rotated is not None and (rotated.current_hash, rotated.prev_hash) == ("b", "a")
        with pytest.raises(RuntimeError):
            async with repo.transaction() as tx:
                await tx.insert_or_update_hashes([record(f"/u/{n}", "a") for n in range(100)])
                raise RuntimeError("rolled back")
        assert await repo.get_hash_record("/u/5") is None
