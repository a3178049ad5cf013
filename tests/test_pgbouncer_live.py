"""``pgbouncer: true`` through a real PgBouncer in transaction pooling mode (Debian's
``pgbouncer``, a private one per test): many client connections share two server
connections transaction by transaction, and every tier works, migrations, COPY bulk
writes and transactions included (no named prepared statement, nothing kept in a
session)."""

from __future__ import annotations

import asyncio

import pytest

from async_db_client import DBClientFactory
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.models import HashRecord, LogEntry, LogLevel
from tests.support.pgbouncer import PrivatePgBouncer
from tests.support.postgres import admin_fetch, pg_client_config

pytestmark = [pytest.mark.live, pytest.mark.asyncio]


async def test_every_tier_through_pgbouncer_in_transaction_mode(
    own_postgres_database: str,
) -> None:
    with PrivatePgBouncer(own_postgres_database, server_pool_size=2) as bouncer:
        config = pg_client_config(
            own_postgres_database, port=bouncer.port, pgbouncer=True, pool={"max_size": 6}
        )
        async with DBClientFactory(config).create_client() as db:
            await db.migrate()
            store = db.remote_db.store
            assert isinstance(store, SQLRemoteStore)
            # No statement cache: nothing prepared by name on a server connection.
            assert store.executor.driver._connect_args(5)["statement_cache_size"] == 0

            async def writer(n: int) -> None:
                records = [HashRecord(path=f"/w{n}/{i}", current_hash=f"h{i}") for i in range(60)]
                records.append(HashRecord(path=f"/w{n}/0", current_hash="again"))
                await db.insert_or_update_hashes(records)  # COPY, two rounds
                async with db.remote_db.transaction() as tx:
                    await tx.set_target_hash(f"/w{n}/1", "t")
                    await tx.put_log(
                        LogEntry(log_level=LogLevel.INFO, summary_message=f"w{n}")
                    )
                assert (await db.get_hash_record(f"/w{n}/0")).prev_hash == "h0"

            # More concurrent clients than server connections: they must share them.
            await asyncio.gather(*(writer(n) for n in range(6)))
            await db.core_db.put_site_heartbeat("site-1")
            assert [site.site_id for site in await db.core_db.get_sites()] == ["site-1"]
            assert await db.pipeline_db.enqueue_pipeline_update("/w0/1") >= 1
            assert len(await db.remote_db.get_logs()) == 6
            assert await db.remote_db.find_orphaned_entries() == []
    rows = await admin_fetch(own_postgres_database, "SELECT COUNT(*) FROM hash_records")
    assert rows[0][0] == 6 * 60
