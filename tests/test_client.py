"""The async client: factory, delegation, unconfigured tiers, transactions, lifecycle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from async_db_client import DBClientFactory, FakeClock, PoolClosedError

pytestmark = pytest.mark.asyncio

ALL_LOCAL = {"database": {"remote_type": "local", "core_type": "local", "pipeline_type": "local"}}


async def test_factory_builds_all_tiers_and_health_covers_them(clock: FakeClock) -> None:
    async with DBClientFactory(ALL_LOCAL, clock=clock).create_client() as db:
        assert await db.health_check() == {"local_db": True, "core_db": True, "pipeline_db": True}
        assert await db.pipeline_health_check() == {"pipeline_db": True}
        assert await db.migrate() == {"remote": 0, "core": 0, "pipeline": 0}
        assert db.pool_stats() == {}
        assert "remote=MemoryRemoteStore" in repr(db)


async def test_unconfigured_tier_raises_not_implemented() -> None:
    async with DBClientFactory({"database": {"remote_type": "local"}}).create_client() as db:
        assert await db.health_check() == {"local_db": True}
        with pytest.raises(NotImplementedError, match=r"core tier is not configured.*core_type"):
            await db.get_dashboard_content()
        with pytest.raises(NotImplementedError, match="pipeline_type"):
            await db.get_pipeline_updates()
    async with DBClientFactory().create_client() as empty:
        assert await empty.health_check() == {}
        with pytest.raises(NotImplementedError, match="remote_type"):
            await empty.get_hash_record("/a")


async def test_each_client_has_its_own_data() -> None:
    factory = DBClientFactory(ALL_LOCAL)
    async with factory.create_client() as one, factory.create_client() as two:
        await one.insert_or_update_hash({"path": "/a", "current_hash": "h"})
        assert await two.get_hash_record("/a") is None


async def test_close_is_idempotent_and_final() -> None:
    db = DBClientFactory(ALL_LOCAL).create_client()
    await db.aclose()
    await db.aclose()
    assert db.closed
    with pytest.raises(PoolClosedError):
        await db.get_hash_record("/a")


async def test_calls_on_the_client_join_an_open_transaction() -> None:
    async with DBClientFactory(ALL_LOCAL).create_client() as db:
        with pytest.raises(RuntimeError):
            async with db.transaction():
                await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})
                # tasks started inside the block join it too
                await asyncio.gather(*(db.put_log({"summary_message": f"m{i}"}) for i in range(5)))
                assert await db.get_hash_record("/a") is not None
                raise RuntimeError("roll back")
        assert await db.get_hash_record("/a") is None
        assert await db.get_logs() == []
        async with db.transaction() as tx:
            await tx.insert_or_update_hash({"path": "/b", "current_hash": "h"})
            await db.put_log({"summary_message": "joined"})
        assert await db.get_hash_record("/b") is not None
        assert len(await db.get_logs()) == 1


async def test_transactions_do_not_nest_and_other_tiers_stay_outside() -> None:
    async with DBClientFactory(ALL_LOCAL).create_client() as db:
        async with db.transaction("remote"):
            with pytest.raises(PoolClosedError, match="already open"):
                async with db.transaction("remote"):
                    pass
        with pytest.raises(RuntimeError):
            async with db.transaction("remote"):
                await db.put_site_heartbeat("site")  # core tier: not in the transaction
                raise RuntimeError
        assert [s.site_id for s in await db.get_sites()] == ["site"]
        with pytest.raises(ValueError, match="unknown tier"):
            async with db.transaction("bogus"):  # type: ignore[arg-type]
                pass


async def test_other_tasks_wait_for_a_transaction_and_see_committed_state() -> None:
    async with DBClientFactory(ALL_LOCAL).create_client() as db:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def in_tx() -> None:
            async with db.transaction() as tx:
                await tx.insert_or_update_hash({"path": "/x", "current_hash": "tx"})
                entered.set()
                await release.wait()

        task = asyncio.create_task(in_tx())
        await entered.wait()
        assert await db.get_hash_record("/x") is None  # uncommitted: invisible
        writer = asyncio.create_task(db.insert_or_update_hash({"path": "/x", "current_hash": "w"}))
        for _ in range(50):  # the memory store is pure asyncio: a free writer would be done
            await asyncio.sleep(0)
        assert not writer.done()  # waits for the transaction, like a row lock
        release.set()
        await task
        assert await writer is True
        record = await db.get_hash_record("/x")
        assert record is not None and (record.current_hash, record.prev_hash) == ("w", "tx")


async def test_a_missing_optional_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from async_db_client import DriverNotInstalledError

    monkeypatch.setitem(sys.modules, "aioodbc", None)  # as if not installed
    config = {
        "database": {
            "pipeline_type": "mssql",
            "pipeline_config": {"server": "127.0.0.1", "database": "d", "username": "u"},
        }
    }
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(DriverNotInstalledError, match=r"async_db_client\[mssql\]") as info:
            await db.get_pipeline_updates()
    assert isinstance(info.value, ImportError)


async def test_a_client_never_closed_says_where_it_was_made(tmp_path: Path) -> None:
    import gc

    sqlite = {"path": str(tmp_path / "a.db")}
    config = {"database": {"remote_type": "sqlite", "remote_config": sqlite}}
    db = DBClientFactory(config).create_client()
    await db.health_check()  # opens a pool
    pools = db.pools
    with pytest.warns(ResourceWarning, match=r"never closed \(created at .*test_client.py:\d+"):
        del db
        gc.collect()
    await pools.aclose()  # what the forgotten client held
    quiet = DBClientFactory(ALL_LOCAL).create_client()  # opened nothing: nothing to say
    del quiet
    gc.collect()
