"""The durable outbox: writes made while the server is dead arrive once, in order."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, FakeClock
from async_db_client.clock import epoch_seconds
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.reliability import report

pytestmark = [pytest.mark.live, pytest.mark.slow]


def config(port: int, outbox: Path) -> dict[str, Any]:
    return {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": port,
                "database": "hashdb",
                "user": "root",
                "pool": {
                    "acquire_timeout": 1.0,
                    "connect_timeout": 0.5,
                    "reconnect_backoff_max": 0.5,
                },
                "outbox": {"path": str(outbox)},
            },
        }
    }


@pytest.mark.asyncio
async def test_writes_during_an_outage_arrive_once_in_order(
    tmp_path: Path, clock: FakeClock, private_server: PrivateMariaDB
) -> None:
    outbox = tmp_path / "outbox.db"
    async with DBClientFactory(
        config(private_server.port, outbox), clock=clock
    ).create_client() as db:
        await db.migrate()
        assert await db.put_log({"summary_message": "before the outage"}) > 0
        start = epoch_seconds(clock.now())

        private_server.kill()
        began = time.monotonic()
        for version in range(5):  # 1,000 paths, five versions each: 5,000 writes
            for n in range(1000):
                record = {"path": f"/d/{n:04d}", "current_hash": f"v{version}"}
                assert await db.insert_or_update_hash(record) is True
            queued = await db.put_log({"summary_message": f"scan {version} done"})
            assert queued is not None and queued < 0  # queued: a negative id
            clock.advance(10)
        writing = time.monotonic() - began
        assert await db.outbox_pending() == 5005

        private_server.start()
        restarted = time.monotonic()
        assert await db.flush_outbox(timeout=120) == 0
        replay = time.monotonic() - restarted

        for n in (0, 500, 999):
            stored = await db.get_hash_record(f"/d/{n:04d}")
            assert stored is not None
            assert (stored.current_hash, stored.prev_hash) == ("v4", "v3")
            assert stored.current_dtg_first == start + 40  # the time it was written
            assert stored.prev_dtg_latest == start + 30
    with private_server.connect(database="hashdb") as conn, conn.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), COUNT(DISTINCT path) FROM hash_records")
        assert cursor.fetchone() == (1000, 1000)
        cursor.execute("SELECT summary_message, COUNT(*) FROM remote_logs GROUP BY summary_message")
        logs = dict(cursor.fetchall())
    assert logs == {"before the outage": 1, **{f"scan {v} done": 1 for v in range(5)}}
    report(
        "outbox: server killed, 5,000 writes, server restarted",
        writes=5005,
        lost=0,
        duplicated=0,
        out_of_order=0,
        writing_s=round(writing, 2),
        replay_s=round(replay, 2),
    )


@pytest.mark.asyncio
async def test_entries_left_at_close_are_replayed_by_the_next_client(
    tmp_path: Path, clock: FakeClock, private_server: PrivateMariaDB
) -> None:
    outbox = tmp_path / "outbox.db"
    settings = config(private_server.port, outbox)
    async with DBClientFactory(settings, clock=clock).create_client() as db:
        await db.migrate()
        private_server.kill()
        for n in range(100):
            assert await db.insert_or_update_hash({"path": f"/p/{n}", "current_hash": "h"})
        assert await db.outbox_pending() == 100
    private_server.start()  # the first client is gone; its entries are in the file
    async with DBClientFactory(settings, clock=clock).create_client() as db:
        assert await db.outbox_pending() == 100
        assert await db.flush_outbox(timeout=60) == 0
        assert await db.get_hash_record("/p/99") is not None
