"""Schema migrations on the live MariaDB: ordered, recorded, idempotent, concurrent-safe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_db_client import DBClientFactory, MigrationError
from async_db_client.dialects.mysql import MySQLDialect
from async_db_client.migrations import latest_version
from tests.support.live import client_config, connect, create_database, drop_database, require_mysql

pytestmark = pytest.mark.live
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fresh_database() -> Iterator[str]:
    require_mysql()
    name = create_database("adc_migrate")
    try:
        yield name
    finally:
        drop_database(name)


def versions(database: str) -> list[tuple[str, int]]:
    with connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT tier, version FROM async_db_client_schema ORDER BY tier, version")
        return [(tier, int(version)) for tier, version in cursor.fetchall()]


def tables(database: str) -> set[str]:
    with connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        return {row[0] for row in cursor.fetchall()}


EXPECTED_TABLES = {
    "async_db_client_schema",
    "hash_records",
    "remote_logs",
    "core_sites",
    "core_baselines",
    "core_logs",
}


@pytest.mark.asyncio
async def test_migrate_is_recorded_and_idempotent(fresh_database: str) -> None:
    config = client_config(fresh_database)
    async with DBClientFactory(config).create_client() as db:
        assert await db.migrate() == {"remote": 1, "core": 1}
        assert await db.migrate() == {"remote": 1, "core": 1}
    assert versions(fresh_database) == [("core", 1), ("remote", 1)]
    assert tables(fresh_database) == EXPECTED_TABLES
    assert latest_version(MySQLDialect(), "remote") == 1


@pytest.mark.asyncio
async def test_schema_is_created_on_first_use(fresh_database: str) -> None:
    async with DBClientFactory(client_config(fresh_database)).create_client() as db:
        assert await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})
        assert await db.get_hash_record_count() == 0
    assert versions(fresh_database) == [("core", 1), ("remote", 1)]


@pytest.mark.asyncio
async def test_auto_migrate_off_needs_an_explicit_migrate(fresh_database: str) -> None:
    config = client_config(fresh_database, tiers=("remote",), auto_migrate=False)
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(MigrationError, match="run `migrate`"):
            await db.get_hash_record("/a")
        assert tables(fresh_database) == set()  # nothing created behind the user's back
    async with DBClientFactory(config).create_client() as db:
        assert await db.migrate() == {"remote": 1}
        assert await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})


@pytest.mark.asyncio
async def test_a_newer_schema_is_refused(fresh_database: str) -> None:
    config = client_config(fresh_database, tiers=("remote",))
    async with DBClientFactory(config).create_client() as db:
        await db.migrate()
    with connect(fresh_database) as conn, conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO async_db_client_schema VALUES ('remote', 99, 'from the future', NOW())"
        )
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(MigrationError, match="newer than this library"):
            await db.get_hash_record("/a")


def test_two_processes_migrating_at_once(fresh_database: str) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from async_db_client import DBClientFactory
        from tests.support.live import client_config

        async def main():
            config = client_config({fresh_database!r})
            async with DBClientFactory(config).create_client() as db:
                print(await db.migrate())

        asyncio.run(main())
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
        assert out.strip() == "{'remote': 1, 'core': 1}"
    assert versions(fresh_database) == [("core", 1), ("remote", 1)]
    assert tables(fresh_database) == EXPECTED_TABLES
