"""Inside ``db.transaction()``: health checks answer, and calls on the other tiers either
work as they do outside it or fail at once with a UsageError saying what to do, on every
backend (in memory, SQLite ``:memory:``, a SQLite file, MariaDB) and through the sync
facade.

The configurations have short acquire and busy timeouts and no retries, so a regression
(a call waiting for the transaction's own connection or write lock) fails within a second
on what it raises, instead of stalling: nothing here measures time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import async_db_client.sync
from async_db_client import DBClientFactory, DBInstance, UsageError
from async_db_client.tiers import Tier
from tests.support.live import mysql_config

#: Short enough that waiting for the transaction's own connection fails fast (and shows).
POOL = {"acquire_timeout": 0.5, "retry_attempts": 0}
ALL_HEALTHY = {"local_db": True, "core_db": True, "pipeline_db": True}
BACKENDS = ("memory", "sqlite-memory", "sqlite-file", "mariadb")
#: Where a transaction locks the whole database: other tiers on it are refused.
SINGLE_WRITER = ("sqlite-memory", "sqlite-file")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def config(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if backend == "memory":
        tiers = {tier: ("local", {}) for tier in ("remote", "core", "pipeline")}
    elif backend == "mariadb":
        # A database of this test's own (skipped, or failed in CI, without a server).
        database = request.getfixturevalue("own_database")
        mysql = mysql_config(database, pool={"min_size": 0, **POOL})
        # The pipeline tier does not run on MySQL in a client (it is SQL Server's).
        tiers = {"remote": ("mysql", mysql), "core": ("mysql", mysql), "pipeline": ("local", {})}
    else:
        path = ":memory:" if backend == "sqlite-memory" else str(tmp_path / "scope.db")
        sqlite = {"path": path, "busy_timeout": 0.2, "pool": POOL}
        tiers = {tier: ("sqlite", sqlite) for tier in ("remote", "core", "pipeline")}
    database: dict[str, Any] = {}
    for tier, (kind, settings) in tiers.items():
        database[f"{tier}_type"] = kind
        database[f"{tier}_config"] = settings
    return {"database": database}


@pytest_asyncio.fixture
async def db(config: dict[str, Any]) -> AsyncIterator[DBInstance]:
    async with DBClientFactory(config).create_client() as client:
        yield client


def no_pool_waited(db: DBInstance) -> None:
    for name, stats in db.pool_stats().items():
        assert stats.acquire_timeouts == 0, name


# -------------------------------------------------------------------- health


@pytest.mark.asyncio
@pytest.mark.parametrize("tier", ["remote", "core"])
async def test_health_checks_answer_inside_a_transaction(db: DBInstance, tier: Tier) -> None:
    async with db.transaction(tier):
        if tier == "remote":
            await db.insert_or_update_hash({"path": "/h", "current_hash": "h"})
        else:
            await db.put_site_heartbeat("site-h")
        assert await db.health_check() == ALL_HEALTHY
        assert await db.pipeline_health_check() == {"pipeline_db": True}
        # Tasks started inside the block ask the same way.
        answers = await asyncio.gather(*(db.health_check() for _ in range(3)))
        assert answers == [ALL_HEALTHY] * 3
    no_pool_waited(db)
    assert await db.health_check() == ALL_HEALTHY


# --------------------------------------------------------------- other tiers


@pytest.mark.asyncio
async def test_a_write_on_another_tier_inside_a_transaction(db: DBInstance, backend: str) -> None:
    async with db.transaction():
        await db.insert_or_update_hash({"path": "/tx/1", "current_hash": "a"})
        if backend in SINGLE_WRITER:
            with pytest.raises(UsageError, match="after the transaction block"):
                await db.put_site_heartbeat("site-x")
            with pytest.raises(UsageError, match=r"one writer|only connection"):
                await db.get_sites()  # reads alike: the rule is per tier, not per statement
            # ...from tasks started inside the block too, and for the pipeline tier.
            with pytest.raises(UsageError):
                await asyncio.create_task(db.enqueue_pipeline_update("/p"))
        else:
            await db.put_site_heartbeat("site-x")  # outside the transaction, committed now
        await db.insert_or_update_hash({"path": "/tx/2", "current_hash": "b"})
    # The transaction went on and committed both writes; the refused calls did nothing.
    for path in ("/tx/1", "/tx/2"):
        assert await db.get_hash_record(path) is not None
    sites = [site.site_id for site in await db.get_sites()]
    assert sites == ([] if backend in SINGLE_WRITER else ["site-x"])
    no_pool_waited(db)


@pytest.mark.asyncio
async def test_a_transaction_rolls_back_after_a_refused_call(db: DBInstance, backend: str) -> None:
    with pytest.raises(ZeroDivisionError):
        async with db.transaction():
            await db.insert_or_update_hash({"path": "/rb", "current_hash": "a"})
            if backend in SINGLE_WRITER:
                with pytest.raises(UsageError):
                    await db.put_core_log({"summary_message": "refused"})
            1 / 0  # noqa: B018
    assert await db.get_hash_record("/rb") is None
    assert await db.health_check() == ALL_HEALTHY
    no_pool_waited(db)


@pytest.mark.asyncio
async def test_a_transaction_on_another_tier_of_one_sqlite_database_is_refused(
    db: DBInstance, backend: str
) -> None:
    async with db.transaction("remote"):
        if backend in SINGLE_WRITER:
            with pytest.raises(UsageError):
                async with db.transaction("core"):
                    pass
        else:
            async with db.transaction("core"):
                await db.put_site_heartbeat("site-n")
    no_pool_waited(db)


# ---------------------------------------------------------------- sync facade


@pytest.fixture
def sync_db(config: dict[str, Any], backend: str) -> Iterator[Any]:
    if backend == "mariadb":
        pytest.skip("the sync facade's transactions run the same code; SQLite shows the rule")
    with async_db_client.sync.DBClientFactory(config).create_client() as client:
        yield client


def test_the_sync_facade_keeps_the_same_rules(sync_db: Any, backend: str) -> None:
    with sync_db.transaction():
        assert sync_db.insert_or_update_hash({"path": "/s", "current_hash": "s"})
        assert sync_db.health_check() == ALL_HEALTHY
        assert sync_db.pipeline_health_check() == {"pipeline_db": True}
        if backend in SINGLE_WRITER:
            with pytest.raises(UsageError, match="after the transaction block"):
                sync_db.put_site_heartbeat("site-s")
        else:
            sync_db.put_site_heartbeat("site-s")
    assert sync_db.get_hash_record("/s") is not None
    assert sync_db.health_check() == ALL_HEALTHY
