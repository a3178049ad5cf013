"""What the asyncmy adapter does beyond the aiomysql one, against the live MariaDB:
prepared statements for the statements with parameters (cached per connection, the
least recently used closed past the cache's size, the text protocol where the server
cannot or will not prepare; cancellation and the server's timeout on that path are in
test_pool_live.py), server warnings in the log.

Everything the two adapters share (the contract suites, faults, TLS, the pool's live
tests, secrets, hostile input) runs on both in the modules of its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance, QueryError
from tests.support.live import (
    client_config,
    empty_tables,
    executor_of,
    require_asyncmy,
)
from tests.support.mariadb_server import PrivateMariaDB

pytestmark = [pytest.mark.live, pytest.mark.asyncio]


@pytest.fixture(autouse=True)
def _asyncmy() -> None:
    require_asyncmy()


@contextlib.asynccontextmanager
async def one_connection(database: str, **pool: Any) -> AsyncIterator[DBInstance]:
    """A client on asyncmy whose pool holds one connection: every call uses it."""
    config = client_config(
        database, tiers=("remote",), driver="asyncmy", pool={"max_size": 1, **pool}
    )
    async with DBClientFactory(config).create_client() as db:
        await db.migrate()
        empty_tables(database, "remote")
        yield db


async def session_status(db: DBInstance, name: str) -> int:
    row = await executor_of(db).fetchone(f"SHOW SESSION STATUS LIKE '{name}'")
    assert row is not None
    return int(row[1])


async def the_connection(db: DBInstance) -> Any:
    """The raw asyncmy connection of a one-connection client."""
    async with executor_of(db).pool.connection() as conn:
        return conn.raw


async def test_a_statement_is_prepared_once_per_connection(mysql_database: str) -> None:
    async with one_connection(mysql_database) as db:
        assert await db.insert_or_update_hash({"path": "/p", "current_hash": "h"})
        assert (await db.get_hash_record("/p")) is not None
        prepared = await session_status(db, "Com_stmt_prepare")
        executed = await session_status(db, "Com_stmt_execute")
        for _ in range(20):
            record = await db.get_hash_record("/p")
            assert record is not None and record.current_hash == "h"
        assert await session_status(db, "Com_stmt_prepare") == prepared
        assert await session_status(db, "Com_stmt_execute") == executed + 20


async def test_the_cache_keeps_the_most_recently_used(mysql_database: str) -> None:
    from async_db_client.drivers.asyncmy import STATEMENT_CACHE

    async with one_connection(mysql_database) as db:
        executor = executor_of(db)
        hot = "SELECT ? + 0"
        closed = await session_status(db, "Com_stmt_close")
        cached = len((await the_connection(db)).statements)
        extra = 10
        for i in range(STATEMENT_CACHE + extra):
            assert await executor.fetchone(f"SELECT ? + {i + 1}", (1,)) == (i + 2,)
            assert await executor.fetchone(hot, (7,)) == (7,)
        conn = await the_connection(db)
        assert len(conn.statements) == STATEMENT_CACHE
        assert hot in conn.statements  # used all along, never the least recent
        # Every statement past the cache's size closed one on the server.
        evicted = cached + STATEMENT_CACHE + extra + 1 - STATEMENT_CACHE
        assert await session_status(db, "Com_stmt_close") == closed + evicted


async def test_what_the_server_cannot_prepare_runs_as_text(mysql_database: str) -> None:
    async with one_connection(mysql_database) as db:
        executor = executor_of(db)
        prepare = "PREPARE adc_stmt FROM ?"  # not in the prepared statement protocol
        for _ in range(2):
            await executor.execute(prepare, ("SELECT 41 + 1",))
            assert await executor.fetchone("EXECUTE adc_stmt") == (42,)
        conn = await the_connection(db)
        assert prepare in conn.unpreparable and prepare not in conn.statements
        # A placeholder where the grammar wants a literal parses only as text.
        assert await executor.fetchall("SHOW VARIABLES LIKE ?", ("max_statement_time",))
        # A missing table is the statement's own error, as with the text protocol.
        with pytest.raises(QueryError, match="1146"):
            await executor.fetchall("SELECT * FROM no_such_table WHERE x = ?", (1,))


async def test_a_server_out_of_prepared_statements_is_served_as_text() -> None:
    """The server's limit is shared by all its clients: reaching it slows this client
    down to the text protocol, never fails it."""
    with PrivateMariaDB(["--max-prepared-stmt-count=0"]) as server:
        server.execute("CREATE DATABASE hashdb CHARACTER SET utf8mb4")
        await served_as_text(server.port)


async def served_as_text(port: int) -> None:
    remote = {
        "host": "127.0.0.1",
        "port": port,
        "database": "hashdb",
        "user": "root",
        "password": "",
        "driver": "asyncmy",
        "pool": {"max_size": 1},
    }
    config = {"database": {"remote_type": "mysql", "remote_config": remote}}
    async with DBClientFactory(config).create_client() as db:
        await db.migrate()
        for i in range(3):
            assert await db.insert_or_update_hash({"path": f"/n/{i}", "current_hash": "h"})
            record = await db.get_hash_record(f"/n/{i}")
            assert record is not None and record.current_hash == "h"
        conn = await the_connection(db)
        assert conn.statements == {} and conn.unpreparable == set()


async def test_both_protocols_read_the_same_values(mysql_database: str) -> None:
    """Rows through a prepared statement (binary) equal the same rows as text."""
    async with one_connection(mysql_database) as db:
        executor = executor_of(db)
        await db.insert_or_update_hash(
            {"path": "/v", "current_hash": "é" * 64, "files": ["a", "ü"], "session_id": "s"}
        )
        log_id = await db.put_log({"summary_message": "m\\'\"%s?", "detailed_message": "d"})
        assert log_id is not None
        for table, key, value in (
            ("hash_records", "path", "/v"),
            ("remote_logs", "log_id", log_id),
        ):
            binary = await executor.fetchall(f"SELECT * FROM {table} WHERE {key} = ?", (value,))
            literal = value if isinstance(value, int) else f"'{value}'"
            text = await executor.fetchall(f"SELECT * FROM {table} WHERE {key} = {literal}")
            assert binary == text and len(binary) == 1


async def test_server_warnings_go_to_the_log(
    mysql_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with one_connection(mysql_database) as db:
        executor = executor_of(db)
        with caplog.at_level(logging.DEBUG, logger="async_db_client"):
            assert await executor.fetchone("SELECT CAST(? AS UNSIGNED)", ("12abc",)) == (12,)
            assert await executor.fetchone("SELECT CAST('7x' AS UNSIGNED)") == (7,)
            await executor.execute("DROP TABLE IF EXISTS adc_never_there")
    seen = [(r.levelno, r.getMessage()) for r in caplog.records if "server" in r.getMessage()]
    assert [level for level, message in seen if "1292" in message] == [logging.WARNING] * 2
    assert [level for level, message in seen if "1051" in message] == [logging.DEBUG]
