"""A private MariaDB killed (-9) and started again: the client recovers by itself."""

from __future__ import annotations

import time

import pytest

from async_db_client import DBClientFactory, DBConnectionError, FakeClock
from async_db_client.backends.sql import SQLRemoteStore
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.waiting import SLACK, eventually

pytestmark = [pytest.mark.live, pytest.mark.slow]

ACQUIRE_TIMEOUT = 3


def config(port: int, **pool: object) -> dict[str, object]:
    return {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": port,
                "database": "hashdb",
                "user": "root",
                "password": "",
                "pool": {
                    "min_size": 2,
                    "max_size": 4,
                    "acquire_timeout": ACQUIRE_TIMEOUT,
                    "connect_timeout": 1,
                    "check_after_idle": 3600,  # let dead connections fail in use: the hard case
                    "reconnect_backoff_max": 0.5,
                    **pool,
                },
            },
        }
    }


@pytest.mark.asyncio
async def test_server_killed_and_restarted(
    clock: FakeClock, private_server: PrivateMariaDB
) -> None:
    async with DBClientFactory(config(private_server.port), clock=clock).create_client() as db:
        first = [{"path": f"/d/{i}", "current_hash": "v1"} for i in range(500)]
        assert (await db.insert_or_update_hashes(first)).stored == 500
        assert await db.put_log({"summary_message": "before"}) is not None
        assert isinstance(db.remote_db.store, SQLRemoteStore)
        pool = db.remote_db.store.executor.pool
        assert pool.get_stats().size >= 2

        private_server.kill()
        start = time.monotonic()
        with pytest.raises(DBConnectionError):
            await db.get_hash_record("/d/1")
        # Bounded by the acquire timeout, no hang: a try on a dead connection, then one
        # more attempt's deadline (and what a loaded machine adds).
        assert time.monotonic() - start < 2 * ACQUIRE_TIMEOUT + SLACK
        assert await db.health_check() == {"local_db": False}

        private_server.start()
        restarted = time.monotonic()
        clock.advance(60)
        second = [{"path": f"/d/{i}", "current_hash": "v2"} for i in range(500)]
        result = await db.insert_or_update_hashes(second)
        recovery = time.monotonic() - restarted
        assert result.stored == 500 and result.rejected == []
        # The server is up: a new connection within one acquire timeout, no backoff loop.
        assert recovery < ACQUIRE_TIMEOUT + SLACK

        for i in (0, 250, 499):
            record = await db.get_hash_record(f"/d/{i}")
            assert record is not None
            assert (record.current_hash, record.prev_hash) == ("v2", "v1")
            assert record.current_dtg_first == record.prev_dtg_latest + 60
        with private_server.connect(database="hashdb") as conn, conn.cursor() as cursor:
            cursor.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM hash_records")
            assert cursor.fetchone() == (500, 500)
        assert [e.summary_message for e in await db.get_logs()] == ["before"]

        stats = pool.get_stats()
        assert stats.connections_lost >= 1
        assert stats.connection_errors >= 1
        # The maintainer refills to min_size in the background.
        await eventually(lambda: pool.get_stats().size >= 2, what="the pool back at min_size")
        assert pool.get_stats().in_use == 0
