"""Many tasks writing at once on the live MariaDB: rotation stays exact, nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from async_db_client import DBClientFactory, DBInstance
from async_db_client.backends.sql import SQLRemoteStore
from tests.support.live import client_config, connect, empty_tables

pytestmark = [pytest.mark.asyncio, pytest.mark.live]


@pytest_asyncio.fixture
async def db(mysql_database: str) -> AsyncIterator[DBInstance]:
    config = client_config(mysql_database, tiers=("remote",), pool={"max_size": 8})
    async with DBClientFactory(config).create_client() as client:
        await client.migrate()
        empty_tables(mysql_database, "remote")
        yield client


async def test_tasks_on_different_paths_rotate_exactly(db: DBInstance) -> None:
    async def scanner(task: int) -> None:
        for round_ in range(5):
            for n in range(10):
                record = {"path": f"/t{task}/p{n}", "current_hash": f"r{round_}"}
                assert await db.insert_or_update_hash(record)

    await asyncio.gather(*(scanner(task) for task in range(32)))
    for task in (0, 15, 31):
        for n in (0, 9):
            record = await db.get_hash_record(f"/t{task}/p{n}")
            assert record is not None
            assert (record.current_hash, record.prev_hash) == ("r4", "r3")
            assert record.prev_dtg_latest is not None
            assert record.prev_dtg_latest <= record.current_dtg_first


async def test_tasks_on_one_path_never_lose_the_rotation(db: DBInstance) -> None:
    hashes = ["A", "B"] * 50
    results = await asyncio.gather(
        *(db.insert_or_update_hash({"path": "/same", "current_hash": h}) for h in hashes)
    )
    assert all(results)
    record = await db.get_hash_record("/same")
    assert record is not None
    assert {record.current_hash, record.prev_hash} == {"A", "B"}


async def test_concurrent_bulk_writes_with_overlapping_paths(
    db: DBInstance, mysql_database: str
) -> None:
    async def bulk(task: int) -> int:
        records = [
            {"path": f"/bulk/{(task * 500 + i) % 3000}", "current_hash": f"t{task}"}
            for i in range(2500)
        ]
        return (await db.insert_or_update_hashes(records)).stored

    stored = await asyncio.gather(*(bulk(task) for task in range(8)))
    assert stored == [2500] * 8
    with connect(mysql_database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM hash_records")
        assert cursor.fetchone() == (3000, 3000)
        cursor.execute(
            "SELECT COUNT(*) FROM hash_records"
            " WHERE prev_hash IS NOT NULL AND prev_hash = current_hash"
        )
        assert cursor.fetchone() == (0,)
    assert isinstance(db.remote_db.store, SQLRemoteStore)
    stats = db.remote_db.store.executor.pool.get_stats()
    assert stats.in_use == 0 and stats.size <= 8
    assert stats.retries == 0  # key-ordered batches do not deadlock each other
