"""The SQL Server backend, unchanged, through Microsoft's ODBC Driver 18 and aioodbc,
against the recording TDS peer: what the driver really sends, and how the backend
handles rowcounts, OUTPUT values, server errors, transactions and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio

import async_db_client.executor
from async_db_client import (
    DBClientFactory,
    DBConnectionError,
    DBInstance,
    FakeClock,
    QueryError,
    QueryTimeoutError,
)
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.clock import epoch_seconds
from async_db_client.config import MSSQLConfig
from async_db_client.dialects.tsql import TSQLDialect
from async_db_client.drivers.odbc import mssql_connection_string, odbc_value
from async_db_client.paths import path_key
from tests.support.backends import mssql_peer_config, require_msodbc
from tests.support.tds_peer import Column, Reply, Request, ResultSet, ServerError, TDSPeer
from tests.support.waiting import PATIENCE, SLACK, event_set

D = TSQLDialect()
LOG_ROW_COLUMNS = [
    Column("log_id", "bigint"),
    Column("site_id", "nvarchar(64)"),
    Column("log_level", "varchar(8)"),
    Column("logged_at", "datetime2(6)"),
    Column("session_id", "nvarchar(64)"),
    Column("summary_message", "nvarchar(4000)"),
    Column("detailed_message", "nvarchar(max)"),
]


@pytest.fixture
def peer() -> Iterator[TDSPeer]:
    require_msodbc()
    with TDSPeer() as server:
        # A schema that is already up to date, so tests see only their own statements.
        server.on(lambda r: r.qmark_sql == D.lock_migrations(), Reply.rows([("ok", "int")], [(1,)]))
        server.on(lambda r: r.qmark_sql == D.current_version, Reply.rows([("v", "int")], [(1,)]))
        server.on(
            lambda r: r.qmark_sql == D.unlock_migrations(), Reply.rows([("r", "int")], [(0,)])
        )
        yield server


@contextlib.asynccontextmanager
async def client_for(peer: TDSPeer, clock: FakeClock, **pool: Any) -> AsyncIterator[DBInstance]:
    config = mssql_peer_config(peer.port)
    config["pool"] = {**config["pool"], **pool}
    settings = {"database": {"remote_type": "mssql", "remote_config": config}}
    async with DBClientFactory(settings, clock=clock).create_client() as db:
        yield db


@pytest_asyncio.fixture
async def db(peer: TDSPeer, clock: FakeClock) -> AsyncIterator[DBInstance]:
    async with client_for(peer, clock) as client:
        assert await client.health_check() == {"local_db": True}
        peer.clear()
        yield client


def executed(peer: TDSPeer, sql: str) -> list[Request]:
    return [r for r in peer.app_requests() if r.executes and r.qmark_sql == sql]


# ---------------------------------------------------------------- connecting


def test_connection_string_values_are_escaped() -> None:
    assert odbc_value("plain") == "plain"
    assert odbc_value("p;w") == "{p;w}"
    assert odbc_value("a}b") == "{a}}b}"
    assert odbc_value(" spaced ") == "{ spaced }"
    config = MSSQLConfig(server="db.local", port=1433, database="d", username="u", password="x;}")
    text = mssql_connection_string(config)
    assert "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db.local,1433;" in text
    assert "PWD={x;}}};" in text and "Encrypt=yes" in text
    assert "x;}" not in repr(config)


@pytest.mark.asyncio
async def test_login_carries_the_escaped_credentials(peer: TDSPeer, clock: FakeClock) -> None:
    async with client_for(peer, clock) as db:
        assert await db.health_check() == {"local_db": True}
    [login] = peer.logins()
    assert (login.user, login.database, login.password) == ("tester", "pipeline_db", "p;w{x}=1")
    assert not any(r.kind == "tm" for r in peer.requests)  # autocommit: no transactions


@pytest.mark.asyncio
async def test_first_use_runs_the_migrations_in_order(clock: FakeClock) -> None:
    require_msodbc()
    with TDSPeer() as peer:
        peer.on(lambda r: r.qmark_sql == D.lock_migrations(), Reply.rows([("ok", "int")], [(1,)]))
        peer.on(lambda r: r.qmark_sql == D.current_version, Reply.rows([("v", "int")], [(None,)]))
        async with client_for(peer, clock) as db:
            assert await db.get_hash_record("/a") is None
        sent = [r.qmark_sql for r in peer.app_requests() if r.executes]
    steps = [s for m in D.migrations("remote") for s in m.statements]
    assert sent == [
        D.current_version,  # read first: a current schema needs no lock and no DDL
        D.lock_migrations(),
        D.create_version_table(),
        D.current_version,
        *steps,
        D.record_version,
        D.unlock_migrations(),
        D.select_record,
    ]
    lock = next(r for r in peer.app_requests() if r.qmark_sql == D.lock_migrations())
    assert lock.values == ["async_db_client.migrate", 60]


@pytest.mark.asyncio
async def test_missing_odbc_driver_is_named(clock: FakeClock) -> None:
    require_msodbc()
    config = {
        "server": "127.0.0.1",
        "database": "d",
        "username": "u",
        "password": "pw-secret",
        "driver": "No Such Driver",
        "pool": {"acquire_timeout": 5},
    }
    settings = {"database": {"remote_type": "mssql", "remote_config": config}}
    async with DBClientFactory(settings, clock=clock).create_client() as db:
        with pytest.raises(DBConnectionError, match="not installed or not registered") as info:
            await db.get_hash_record("/a")
    assert "pw-secret" not in str(info.value)


# ------------------------------------------------------------------ statements


@pytest.mark.asyncio
async def test_upsert_is_one_merge_with_typed_parameters(
    db: DBInstance, peer: TDSPeer, clock: FakeClock
) -> None:
    peer.on(r"^MERGE INTO hash_records", 1)
    record = {
        "path": "/data/ünïcode",
        "current_hash": "abc",
        "dirs": ["d"],
        "files": ["f 1", "日本"],
        "session_id": "s1",
    }
    assert await db.insert_or_update_hash(record) is True
    [merge] = executed(peer, D.upsert_hashes(1))
    now = epoch_seconds(clock.now())
    assert merge.values == [
        path_key("/data/ünïcode"),
        "/data/ünïcode",
        path_key("/data"),
        "ünïcode",
        "abc",
        now,
        now,
        json.dumps(["d"]),
        json.dumps(["f 1", "日本"], ensure_ascii=False, separators=(",", ":")),
        "[]",
        None,
        "s1",
    ]
    declared = merge.type_decls
    assert declared[1].startswith("nvarchar") and declared[5] in ("int", "bigint")


@pytest.mark.asyncio
async def test_bulk_respects_the_parameter_limit_and_repeated_keys(
    db: DBInstance, peer: TDSPeer
) -> None:
    peer.on(r"^MERGE INTO hash_records", lambda r: len(r.params) // 12)
    records = [{"path": f"/bulk/{i}", "current_hash": "h"} for i in range(400)]
    assert (await db.insert_or_update_hashes(records)).stored == 400
    merges = [r for r in peer.app_requests() if r.executes and r.qmark_sql.startswith("MERGE")]
    assert len(merges) == math.ceil(400 / (D.max_params // 12))
    assert all(len(r.params) <= 2100 for r in merges)
    assert sorted(v for r in merges for v in r.values[1::12]) == sorted(
        f"/bulk/{i}" for i in range(400)
    )
    peer.clear()
    repeated = [{"path": "/same", "current_hash": f"h{i}"} for i in range(3)]
    assert (await db.insert_or_update_hashes(repeated)).stored == 3
    merges = [r for r in peer.app_requests() if r.executes and r.qmark_sql.startswith("MERGE")]
    assert [r.values[4] for r in merges] == ["h0", "h1", "h2"]  # one per statement, in order


@pytest.mark.asyncio
async def test_put_log_returns_the_output_id(
    db: DBInstance, peer: TDSPeer, clock: FakeClock
) -> None:
    peer.on(r"OUTPUT INSERTED\.log_id", ResultSet([Column("log_id", "bigint")], [(2**40,)]))
    when = clock.now() - timedelta(microseconds=654321)
    log_id = await db.put_log(
        {"summary_message": "m", "log_level": "warning", "timestamp": when, "site_id": "s"}
    )
    assert log_id == 2**40
    [insert] = executed(peer, D.insert_log("remote"))
    key, site, level, logged_at, session, summary, detail = insert.values
    assert (site, level, session, summary, detail) == ("s", "WARNING", None, "m", None)
    assert logged_at == when.replace(tzinfo=None)  # datetime2, microseconds kept
    assert len(key) == 32


@pytest.mark.asyncio
async def test_duplicate_log_key_returns_the_stored_id(db: DBInstance, peer: TDSPeer) -> None:
    peer.on(r"OUTPUT INSERTED\.log_id", ServerError(2627, "Violation of UNIQUE KEY", 1, 14))
    peer.on(
        r"^SELECT log_id FROM remote_logs WHERE log_key", Reply.rows([("log_id", "bigint")], [(7,)])
    )
    assert await db.put_log({"summary_message": "again"}, idempotency_key="k-1") == 7
    [lookup] = executed(peer, D.log_id_by_key("remote"))
    assert lookup.values == ["k-1"]


@pytest.mark.asyncio
async def test_deadlock_victim_is_retried(db: DBInstance, peer: TDSPeer) -> None:
    attempts: list[int] = []

    def merge(request: Request) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            return ServerError(1205, "Transaction was deadlocked; rerun it.", 51, 13)
        return 1

    peer.on(r"^MERGE INTO hash_records", merge)
    assert await db.insert_or_update_hash({"path": "/p", "current_hash": "h"}) is True
    assert len(attempts) == 2
    assert next(iter(db.pool_stats().values())).retries == 1


@pytest.mark.asyncio
async def test_other_server_errors_are_query_errors_not_retried(
    db: DBInstance, peer: TDSPeer
) -> None:
    peer.on(r"^SELECT path", ServerError(208, "Invalid object name 'hash_records'."))
    with pytest.raises(QueryError, match="Invalid object name") as info:
        await db.get_hash_record("/p")
    assert info.value.code == 208
    assert len(executed(peer, D.select_record)) == 1


@pytest.mark.asyncio
async def test_rowcounts_decide_set_target_hash(db: DBInstance, peer: TDSPeer) -> None:
    counts = iter([1, 0])
    peer.on(r"^UPDATE hash_records", lambda r: next(counts))
    peer.on(r"^SELECT 1 FROM hash_records", Reply.rows([("one", "int")], []))
    assert await db.set_target_hash("/p", "t") is True
    assert await db.set_target_hash("/p", "t") is False
    assert len(executed(peer, D.record_exists)) == 1


@pytest.mark.asyncio
async def test_log_pages_use_offset_fetch(db: DBInstance, peer: TDSPeer, clock: FakeClock) -> None:
    stamp = clock.now().replace(tzinfo=None, microsecond=5)
    peer.on(
        r"^SELECT log_id",
        ResultSet(LOG_ROW_COLUMNS, [(3, "site", "ERROR", stamp, "s", "sum", None)]),
    )
    [entry] = await db.get_logs(limit=5, offset=10, order_by="site_id", order_direction="asc")
    assert (entry.log_id, entry.log_level, entry.summary_message) == (3, "ERROR", "sum")
    assert entry.timestamp == stamp.replace(tzinfo=clock.now().tzinfo)
    [select] = [
        r for r in peer.app_requests() if r.executes and r.qmark_sql.startswith("SELECT log_id")
    ]
    assert select.qmark_sql.endswith(
        "ORDER BY site_id ASC, log_id ASC OFFSET ? ROWS FETCH NEXT ? ROWS ONLY"
    )
    assert select.values == [10, 5]


# ---------------------------------------------------------------- transactions


@pytest.mark.asyncio
async def test_transactions_begin_commit_and_roll_back(db: DBInstance, peer: TDSPeer) -> None:
    peer.on(r"^MERGE INTO hash_records", 1)
    async with db.transaction():
        await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})
    ops = peer.tm_ops()
    assert ops[0] == "begin" and "commit" in ops and "rollback" not in ops[: ops.index("commit")]
    [merge] = executed(peer, D.upsert_hashes(1))
    assert merge.transaction_descriptor != 0  # it ran inside the transaction
    peer.clear()
    with pytest.raises(RuntimeError):
        async with db.transaction():
            await db.insert_or_update_hash({"path": "/b", "current_hash": "h"})
            raise RuntimeError("undo")
    assert peer.tm_ops()[0] == "begin" and "rollback" in peer.tm_ops()
    assert "commit" not in peer.tm_ops()[: peer.tm_ops().index("rollback")]


# ---------------------------------------------------------- timeouts, cancel


def held(request: Request) -> Reply:
    """A statement that runs until the client sends an attention (a cancel or a timeout)."""
    return Reply.rows([("one", "int")], [(1,)]).until_attention(PATIENCE)


@pytest.mark.asyncio
async def test_cancelling_a_running_statement_sends_attention(
    db: DBInstance, peer: TDSPeer
) -> None:
    running = threading.Event()

    def started(request: Request) -> Reply:
        running.set()
        return held(request)

    peer.on(r"^SELECT path", started)
    task = asyncio.create_task(db.get_hash_record("/slow"))
    await event_set(running, what="the statement reached the peer")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Off the event loop: the discarded connection's close (which cancels) runs on it.
    await asyncio.to_thread(peer.wait_for, lambda r: r.kind == "attention")
    stats = next(iter(db.pool_stats().values()))
    assert stats.in_use == 0 and stats.connections_discarded >= 1


@pytest.mark.asyncio
async def test_query_timeout_is_enforced_by_the_driver(
    peer: TDSPeer, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client's own deadline (query timeout + a grace) is the fallback; moved out of
    # reach, so that on a loaded machine it never overtakes the driver's timeout.
    monkeypatch.setattr(async_db_client.executor, "CLIENT_TIMEOUT_GRACE", 4 * PATIENCE)
    async with client_for(peer, clock, query_timeout=1) as db:
        assert await db.health_check() == {"local_db": True}
        peer.on(r"^SELECT path", held)
        start = time.monotonic()
        with pytest.raises(QueryTimeoutError):
            await db.get_hash_record("/slow")
        # The driver sent an attention after 1 s; the peer answered the statement then.
        assert time.monotonic() - start < 1 + SLACK
        assert any(r.kind == "attention" for r in peer.requests)


@pytest.mark.asyncio
async def test_closing_the_client_stops_the_odbc_threads(peer: TDSPeer, clock: FakeClock) -> None:
    import threading

    async with client_for(peer, clock) as db:
        await db.health_check()
        assert isinstance(db.remote_db.store, SQLRemoteStore)
        assert any(t.name.startswith("async_db_client-odbc") for t in threading.enumerate())
    await asyncio.sleep(0)
    assert not any(t.name.startswith("async_db_client-odbc") for t in threading.enumerate())
