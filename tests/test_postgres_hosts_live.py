"""``hosts`` on PostgreSQL: connections go to the primary, the first host that answers
and is not in recovery; a standby (a private server kept in recovery) and an address
nobody listens on are passed over."""

from __future__ import annotations

import asyncio

import pytest

from async_db_client import DBClientFactory
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.errors import DBConnectionError
from async_db_client.models import HashRecord
from tests.support.mariadb_server import free_port
from tests.support.postgres import PG, pg_config
from tests.support.postgres_server import PrivatePostgres

pytestmark = [pytest.mark.live, pytest.mark.asyncio]


async def admin_execute_on(port: int, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=port, user="postgres", database="postgres", ssl=False
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def hosts_config(database: str, hosts: list[str], **pool: float) -> dict[str, object]:
    tier = pg_config(database, pool={"connect_retry_budget": 2, **pool})
    del tier["host"]
    return {"database": {"remote_type": "postgresql", "remote_config": {**tier, "hosts": hosts}}}


async def test_writes_go_to_the_primary_past_a_standby_and_a_dead_host(
    own_postgres_database: str,
) -> None:
    with PrivatePostgres() as standby:
        # The same database on the standby, as a replica has it.
        await admin_execute_on(standby.port, f'CREATE DATABASE "{own_postgres_database}"')
        await asyncio.to_thread(standby.become_standby)
        hosts = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{standby.port}", f"127.0.0.1:{PG['port']}"]
        config = hosts_config(own_postgres_database, hosts)
        async with DBClientFactory(config).create_client() as db:
            await db.migrate()
            assert await db.insert_or_update_hash(HashRecord(path="/p", current_hash="h"))
            store = db.remote_db.store
            assert isinstance(store, SQLRemoteStore)
            row = await store.executor.fetchone("SELECT pg_is_in_recovery(), inet_server_port()")
            assert row == (False, PG["port"])


async def test_no_primary_among_the_hosts_is_a_clear_connection_error(
    own_postgres_database: str,
) -> None:
    with PrivatePostgres(standby=True) as standby:
        config = hosts_config("postgres", [f"127.0.0.1:{standby.port}"], connect_timeout=5)
        async with DBClientFactory(config).create_client() as db:
            with pytest.raises(DBConnectionError) as info:
                await db.remote_db.get_hash_record("/p")
    assert f"cannot connect to postgresql://postgres@127.0.0.1:{standby.port}/" in str(info.value)
