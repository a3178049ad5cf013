"""The durable outbox: writes made while the server is dead arrive once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBConnectionError, DBInstance, FakeClock
from async_db_client.clock import epoch_seconds
from tests.support.fault_proxy import FaultProxy
from tests.support.live import MYSQL, connect
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
                # Logins that must succeed get generous timeouts (a loaded machine); a
                # server that is down refuses at once and fails within the short budget.
                "pool": {
                    "acquire_timeout": 10.0,
                    "connect_timeout": 5.0,
                    "connect_retry_budget": 1.0,
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
    # The first client is gone; its entries are in the file. The next client opens it
    # while the server is still down (so nothing can be replayed yet).
    async with DBClientFactory(settings, clock=clock).create_client() as db:
        assert await db.outbox_pending() == 100
        private_server.start()
        assert await db.flush_outbox(timeout=60) == 0
        assert await db.get_hash_record("/p/99") is not None


# ------------------------------------------------ poison, transient errors, order, reopen


def proxied(database: str, port: int, outbox: Path, **settings: Any) -> dict[str, Any]:
    """The live server through a fault proxy, with an outbox; short pauses."""
    pool = {
        "acquire_timeout": 2.0,
        "connect_timeout": 1.0,
        "reconnect_backoff_initial": 0.05,
        "reconnect_backoff_max": 0.5,
        **settings.pop("pool", {}),
    }
    return {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": port,
                "database": database,
                "user": MYSQL["user"],
                "password": MYSQL["password"],
                "pool": pool,
                "outbox": {"path": str(outbox), **settings},
            },
        }
    }


@contextlib.asynccontextmanager
async def outage_client(
    database: str, tmp_path: Path, clock: FakeClock, **settings: Any
) -> AsyncIterator[tuple[DBInstance, FaultProxy]]:
    """A migrated client whose server, behind the proxy, refuses connections."""
    with FaultProxy(MYSQL["port"]) as proxy:
        config = proxied(database, proxy.port, tmp_path / "outbox.db", **settings)
        async with DBClientFactory(config, clock=clock).create_client() as db:
            await db.migrate()
            proxy.refuse(True)
            proxy.drop_all()
            yield db, proxy


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    """Wait until ``check()`` holds (polled), failing after a generous ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - state another thread updates
            await asyncio.sleep(0.05)
    assert await check(), what


def stored(database: str, path: str) -> tuple[str, str | None] | None:
    with connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_hash, prev_hash FROM hash_records WHERE path = %s", (path,))
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


@pytest.fixture
def refusing_trigger(own_database: str) -> Iterator[str]:
    """The server refuses, for good, every write of the path '/poison'."""
    yield "/poison"
    with connect(own_database) as conn, conn.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS refuse_poison")


def install_refusing_trigger(database: str) -> None:
    with connect(database) as conn, conn.cursor() as cursor:
        for event in ("INSERT", "UPDATE"):
            cursor.execute(
                f"CREATE TRIGGER refuse_poison{'' if event == 'INSERT' else '_u'} BEFORE {event}"
                " ON hash_records FOR EACH ROW BEGIN IF NEW.path = '/poison' THEN"
                " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by a trigger'; END IF; END"
            )


def drop_refusing_trigger(database: str) -> None:
    with connect(database) as conn, conn.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS refuse_poison")
        cursor.execute("DROP TRIGGER IF EXISTS refuse_poison_u")


@pytest.mark.asyncio
async def test_an_entry_the_server_refuses_is_dead_lettered_and_the_rest_delivered(
    own_database: str, tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with outage_client(own_database, tmp_path, clock, max_attempts=2) as (db, proxy):
        install_refusing_trigger(own_database)
        try:
            for n in range(30):
                path = "/poison" if n == 5 else f"/q/{n:02d}"
                assert await db.insert_or_update_hash({"path": path, "current_hash": "h"})
            assert await db.outbox_pending() == 30
            proxy.refuse(False)
            assert await db.flush_outbox() == 0  # no timeout: it must come back by itself
            stats = await db.outbox_stats()
            assert stats is not None
            assert (stats.pending, stats.dead, stats.delivered_total) == (0, 1, 29)
            # The last error is cleared once an entry got through after it.
            assert stats.dead_lettered_total == 1 and stats.last_error is None
            dead = await db.outbox_dead_entries()
            assert [(d.subject, d.attempts) for d in dead] == [("/poison", 2)]
            assert "refused by a trigger" in dead[0].error
            assert any(
                r.levelno == logging.ERROR and "gave up on entry" in r.getMessage()
                and "/poison" in r.getMessage()
                for r in caplog.records
            )
            for n in (0, 6, 29):
                assert stored(own_database, f"/q/{n:02d}") == ("h", None)
            # Writes go on, directly: nothing waits behind the dead entry.
            assert await db.insert_or_update_hash({"path": "/after", "current_hash": "h"})
            assert await db.outbox_pending() == 0 and stored(own_database, "/after") == ("h", None)
        finally:
            drop_refusing_trigger(own_database)
        # Once the cause is gone, the dead entry can be retried (or dropped).
        assert await db.outbox_retry_dead() == 1
        assert await db.flush_outbox(timeout=60) == 0
        assert stored(own_database, "/poison") == ("h", None)
        assert await db.outbox_dead_entries() == [] and await db.outbox_drop_dead() == 0


@pytest.mark.asyncio
async def test_statements_timing_out_behind_a_table_lock_are_retried_until_they_pass(
    own_database: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with outage_client(own_database, tmp_path, clock, pool={"query_timeout": 1.0}) as (
        db,
        proxy,
    ):
        for n in range(30):
            assert await db.insert_or_update_hash({"path": f"/l/{n:02d}", "current_hash": "h"})
        locker = connect(own_database)
        try:
            with locker.cursor() as cursor:
                cursor.execute("LOCK TABLES hash_records WRITE")
            proxy.refuse(False)

            async def retried_twice() -> bool:
                stats = await db.outbox_stats()
                return stats is not None and stats.retries_total >= 2

            await eventually(retried_twice, "the replayer retried behind the lock")
            stats = await db.outbox_stats()
            assert stats is not None and stats.pending == 30 and stats.dead == 0
            assert "QueryTimeoutError" in str(stats.last_error)
        finally:
            locker.close()  # releases the lock
        assert await db.flush_outbox() == 0  # no timeout: the replayer is alive
        assert await db.insert_or_update_hash({"path": "/later", "current_hash": "h"})
        stats = await db.outbox_stats()
        assert stats is not None and (stats.delivered_total, stats.dead) == (30, 0)
    for n in (0, 29):
        assert stored(own_database, f"/l/{n:02d}") == ("h", None)
    assert stored(own_database, "/later") == ("h", None)


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["bulk", "transaction", "target"])
async def test_a_write_made_while_older_ones_wait_in_the_outbox_lands_after_them(
    own_database: str, tmp_path: Path, clock: FakeClock, how: str
) -> None:
    async with outage_client(own_database, tmp_path, clock) as (db, proxy):
        assert await db.insert_or_update_hash({"path": "/o", "current_hash": "old"})
        assert await db.outbox_pending() == 1
        # The server is back, but answers the queued write of '/o' with a deadlock (an
        # error that may pass) until the trigger goes: the entry stays queued meanwhile.
        with connect(own_database) as conn, conn.cursor() as cursor:
            cursor.execute(
                "CREATE TRIGGER hold_old BEFORE INSERT ON hash_records FOR EACH ROW BEGIN"
                " IF NEW.current_hash = 'old' THEN SIGNAL SQLSTATE '40001'"
                " SET MESSAGE_TEXT = 'held', MYSQL_ERRNO = 1213; END IF; END"
            )
        proxy.refuse(False)
        clock.advance(5)

        async def newer_write() -> None:
            if how == "bulk":
                result = await db.insert_or_update_hashes([{"path": "/o", "current_hash": "new"}])
                assert result.stored == 1
            elif how == "transaction":
                async with db.transaction():
                    assert await db.insert_or_update_hash({"path": "/o", "current_hash": "new"})
            else:
                # The queued record exists by the time its target is set.
                assert await db.set_target_hash("/o", "target") is True
                assert await db.insert_or_update_hash({"path": "/o", "current_hash": "new"})

        task = asyncio.create_task(newer_write())

        async def waits_or_done() -> bool:
            stats = await db.outbox_stats()
            return task.done() or (stats is not None and stats.waiting > 0)

        await eventually(waits_or_done, "the newer write waits for the queue")
        with connect(own_database) as conn, conn.cursor() as cursor:
            cursor.execute("DROP TRIGGER hold_old")
        await task
        assert await db.flush_outbox(timeout=60) == 0
    assert stored(own_database, "/o") == ("new", "old")


@pytest.mark.asyncio
async def test_a_write_that_must_follow_the_queue_fails_clearly_while_it_cannot(
    own_database: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with outage_client(own_database, tmp_path, clock) as (db, _proxy):
        assert await db.insert_or_update_hash({"path": "/o", "current_hash": "old"})
        with pytest.raises(DBConnectionError, match="1 earlier write"):
            await db.insert_or_update_hashes([{"path": "/o", "current_hash": "new"}])
        assert await db.outbox_pending() == 1


@pytest.mark.asyncio
async def test_a_client_that_only_reads_replays_what_an_earlier_one_left(
    own_database: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with outage_client(own_database, tmp_path, clock) as (db, proxy):
        for n in range(10):
            assert await db.insert_or_update_hash({"path": f"/r/{n}", "current_hash": "h"})
        config = proxied(own_database, proxy.port, tmp_path / "outbox.db")
    # Gone with its entries in the file; the server answers again. A new client that
    # makes no call at all still delivers them.
    config["database"]["remote_config"]["port"] = MYSQL["port"]
    async with DBClientFactory(config, clock=clock).create_client() as reader:

        async def delivered() -> bool:
            return stored(own_database, "/r/9") is not None

        await eventually(delivered, "the leftover entries were replayed")
        assert await reader.flush_outbox(timeout=60) == 0
    assert all(stored(own_database, f"/r/{n}") == ("h", None) for n in range(10))


@pytest.mark.asyncio
async def test_closing_stops_the_outbox_threads_and_a_failing_tier_does_not_keep_pools_open(
    own_database: str, tmp_path: Path, clock: FakeClock
) -> None:
    async with outage_client(own_database, tmp_path, clock) as (db, _proxy):
        assert await db.insert_or_update_hash({"path": "/x", "current_hash": "h"})
        assert any(t.name.startswith("async_db_client-outbox") for t in threading.enumerate())
    assert not any(t.name.startswith("async_db_client-outbox") for t in threading.enumerate())
    assert all(stats.size == 0 for stats in db.pool_stats().values())

    # A tier whose close raises: the pools are closed all the same, and the error raised.
    config = {
        "database": {
            "remote_type": "sqlite",
            "remote_config": {"path": str(tmp_path / "a.db")},
            "core_type": "sqlite",
            "core_config": {"path": str(tmp_path / "b.db")},
        }
    }
    db = DBClientFactory(config).create_client()
    await db.health_check()
    assert db.core_db is not None

    async def broken_close() -> None:
        raise OSError("disk gone")

    db.core_db.store.aclose = broken_close  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk gone"):
        await db.aclose()
    assert db.pool_stats() and all(stats.size == 0 for stats in db.pool_stats().values())
