"""The SQLite backend beyond the contract suites: its SQL, time encoding, locking, error
mapping, :memory: semantics, migrations (also from several processes at once)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_db_client import (
    DBClientFactory,
    DBConnectionError,
    IntegrityError,
    MigrationError,
    QueryError,
    TransientQueryError,
)
from async_db_client.config import PoolSettings, SQLiteConfig, parse_config
from async_db_client.dialects.mysql import MySQLDialect
from async_db_client.dialects.sqlite import SQLiteDialect
from async_db_client.drivers.aiosqlite import AiosqliteDriver, sqlite_error_class
from async_db_client.errors import ConnectionLostError, DriverNotInstalledError
from async_db_client.migrations import latest_version
from tests.support.waiting import PATIENCE, event_set

ROOT = Path(__file__).resolve().parent.parent
DIALECT = SQLiteDialect()


def config(path: str | Path, tiers: tuple[str, ...] = ("remote",), **extra: Any) -> dict[str, Any]:
    database: dict[str, Any] = {}
    for tier in tiers:
        database[f"{tier}_type"] = "sqlite"
        database[f"{tier}_config"] = {"path": str(path), **extra}
    return {"database": database}


def versions(path: Path) -> list[tuple[str, int]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT tier, version FROM async_db_client_schema ORDER BY tier")
        return [(tier, int(version)) for tier, version in rows]
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows} - {"sqlite_sequence"}
    finally:
        conn.close()


# ------------------------------------------------------------------------ the SQL


def test_sqlite_compiles_every_statement(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "parse.db")
    try:
        conn.execute(DIALECT.create_version_table())
        for tier in ("remote", "core", "pipeline"):
            for migration in DIALECT.migrations(tier):
                for statement in migration.statements:
                    conn.execute(statement)
        statements = DIALECT.all_statements()
        assert "lock_migrations" not in statements  # SQLite migrates in a transaction
        for sql in statements.values():
            # EXPLAIN compiles without running; unbound parameters are NULL.
            conn.execute(f"EXPLAIN {sql}", [None] * sql.count("?")).fetchall()

        def shared(names: Iterable[str]) -> set[str]:
            return {n for n in names if not n.startswith(("migration_", "lock_", "unlock_"))}

        assert shared(statements) == shared(MySQLDialect().all_statements())
    finally:
        conn.close()


@given(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=st.just(UTC)),
)
def test_stored_times_sort_like_the_instants_and_round_trip(a: datetime, b: datetime) -> None:
    ta, tb = DIALECT.to_db_time(a), DIALECT.to_db_time(b)
    assert len(ta) == len(tb) == 26
    assert (ta < tb) == (a < b) and (ta == tb) == (a == b)
    assert DIALECT.from_db_time(ta) == a


def test_time_from_another_zone_is_stored_in_utc() -> None:
    zone = datetime(2024, 5, 1, 12, 0, 0, 5, tzinfo=UTC).astimezone()
    assert DIALECT.to_db_time(zone) == "2024-05-01 12:00:00.000005"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (sqlite3.IntegrityError("UNIQUE constraint failed"), IntegrityError),
        (sqlite3.OperationalError("database is locked"), TransientQueryError),
        (sqlite3.OperationalError("no such table: x"), QueryError),
        (sqlite3.ProgrammingError("Cannot operate on a closed database."), ConnectionLostError),
        (ValueError("Connection closed"), ConnectionLostError),
    ],
)
def test_error_mapping(exc: Exception, expected: type[Exception]) -> None:
    assert sqlite_error_class(exc) is expected


def test_busy_error_code_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as info:
            other.execute("BEGIN IMMEDIATE")
        assert sqlite_error_class(info.value) is TransientQueryError
    finally:
        holder.close()
        other.close()


# ------------------------------------------------------------------ the driver


@pytest.mark.asyncio
async def test_file_database_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    async with DBClientFactory(config(path)).create_client() as db:
        await db.put_log({"summary_message": "x"})
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_writers_wait_for_the_lock_then_fail_transiently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.db"
    pool = {"retry_attempts": 1, "reconnect_backoff_initial": 0.01}
    cfg = config(path, busy_timeout=0.3, pool=pool)
    async with DBClientFactory(cfg).create_client() as db:
        await db.migrate()
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            holder.execute("BEGIN IMMEDIATE")
            start = time.monotonic()
            with pytest.raises(TransientQueryError, match="database is locked"):
                await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})
            assert time.monotonic() - start >= 0.6  # waited busy_timeout, twice (one retry)
            [stats] = db.pool_stats().values()
            assert stats.retries == 1
        finally:
            holder.close()

    # A lock released while a writer waits: the writer goes through. The release comes
    # once SQLite has started the writer's statement (its trace callback says so), and
    # the busy timeout is generous, so however late a loaded machine makes the release,
    # the writer is still waiting for it.
    writing = threading.Event()

    def trace(sql: str) -> None:
        if sql.startswith("BEGIN") or "hash_records" in sql:
            writing.set()

    configure = AiosqliteDriver._configure

    async def traced(self: AiosqliteDriver, conn: Any) -> None:
        await configure(self, conn)
        await conn.set_trace_callback(trace)

    monkeypatch.setattr(AiosqliteDriver, "_configure", traced)
    async with DBClientFactory(config(path, busy_timeout=PATIENCE)).create_client() as db:
        await db.migrate()
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            holder.execute("BEGIN IMMEDIATE")
            writing.clear()
            writer = asyncio.create_task(
                db.insert_or_update_hash({"path": "/a", "current_hash": "h2"})
            )
            await event_set(writing, what="the writer's statement started")
            assert not writer.done()  # it cannot pass the lock
            await asyncio.to_thread(holder.execute, "COMMIT")
            assert await writer
        finally:
            holder.close()
        assert await db.get_single_field("/a", "current_hash") == "h2"


@pytest.mark.asyncio
async def test_readers_are_not_blocked_by_an_open_transaction(tmp_path: Path) -> None:
    async with DBClientFactory(config(tmp_path / "tx.db")).create_client() as db:
        await db.insert_or_update_hash({"path": "/a", "current_hash": "old"})
        async with db.transaction() as tx:
            await tx.insert_or_update_hash({"path": "/a", "current_hash": "new"})
            assert await tx.get_single_field("/a", "current_hash") == "new"
            # Another connection reads the last committed state (WAL), without waiting.
            remote = db.remote_db
            assert remote is not None
            # (a reader blocked by the writer would wait out the 30 s busy timeout)
            read = remote.get_single_field("/a", "current_hash")
            assert await asyncio.wait_for(read, PATIENCE / 2) == "old"
        assert await db.get_single_field("/a", "current_hash") == "new"


@pytest.mark.asyncio
async def test_unopenable_file_fails_at_once_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    async with DBClientFactory(config(missing)).create_client() as db:
        start = time.monotonic()
        with pytest.raises(DBConnectionError, match=f"cannot open sqlite://{missing}"):
            await db.get_logs()
        # Not retried until the acquire timeout (30 s by default).
        assert time.monotonic() - start < PoolSettings().acquire_timeout / 2
        assert await db.health_check() == {"local_db": False}


# ------------------------------------------------------------------------ :memory:


@pytest.mark.asyncio
async def test_memory_database_is_shared_within_a_client_only() -> None:
    both = config(":memory:", tiers=("remote", "core"))
    async with (
        DBClientFactory(both).create_client() as db,
        DBClientFactory(both).create_client() as other,
    ):
        await db.insert_or_update_hash({"path": "/m", "current_hash": "h"})
        await db.put_site_heartbeat("site", hash_record_count=3)
        assert await db.get_hash_record_count() == 3
        assert await other.get_hash_record("/m") is None
        [(name, stats)] = db.pool_stats().items()  # both tiers: one pool, one connection
        assert name == "sqlite://:memory:" and stats.max_size == 1


@pytest.mark.asyncio
async def test_memory_database_is_shared_whatever_the_tiers_pool_settings() -> None:
    cfg = {
        "database": {
            "remote_type": "sqlite",
            "remote_config": {"path": ":memory:", "pool": {"acquire_timeout": 3}},
            "core_type": "sqlite",
            "core_config": {"path": ":memory:", "busy_timeout": 1},
        }
    }
    async with DBClientFactory(cfg).create_client() as db:
        await db.migrate()
        assert len(db.pool_stats()) == 1


@pytest.mark.asyncio
async def test_memory_data_survives_a_discarded_connection() -> None:
    async with DBClientFactory(config(":memory:")).create_client() as db:
        await db.insert_or_update_hash({"path": "/kept", "current_hash": "h"})
        remote = db.remote_db
        assert remote is not None
        pool = remote.store.executor.pool  # type: ignore[attr-defined]
        async with pool.connection() as conn:
            conn.broken = True  # as after a cancellation mid-statement: closed, not reused
        assert await db.get_single_field("/kept", "current_hash") == "h"
        assert pool.get_stats().connections_opened == 2


def test_memory_forces_one_lasting_connection() -> None:
    parsed = parse_config(config(":memory:", pool={"max_size": 5, "min_size": 0}))
    tier = parsed.database.tier("remote")
    assert isinstance(tier, SQLiteConfig) and tier.in_memory
    from async_db_client.drivers.aiosqlite import AiosqliteDriver

    settings = AiosqliteDriver(tier).pool_settings
    assert (settings.min_size, settings.max_size, settings.bulk_connections) == (1, 1, 1)
    assert settings.max_idle > 3600 * 24 * 365


def test_config_paths_and_pool_sharing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    parsed = parse_config(config("rel/h.db", tiers=("remote", "core")))
    remote, core = parsed.database.tier("remote"), parsed.database.tier("core")
    assert isinstance(remote, SQLiteConfig) and isinstance(core, SQLiteConfig)
    assert remote.resolved_path() == str(tmp_path / "rel" / "h.db")
    assert remote.describe() == f"sqlite://{tmp_path / 'rel' / 'h.db'}"
    assert remote.pool_key() == core.pool_key()
    home = parse_config(config("~/x.db")).database.tier("remote")
    assert isinstance(home, SQLiteConfig) and home.resolved_path() == str(Path.home() / "x.db")


# ---------------------------------------------------------------------- migrations


@pytest.mark.asyncio
async def test_migrate_is_recorded_and_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    cfg = config(path, tiers=("remote", "core", "pipeline"))
    async with DBClientFactory(cfg).create_client() as db:
        assert await db.migrate() == {"remote": 1, "core": 1, "pipeline": 1}
        assert await db.migrate() == {"remote": 1, "core": 1, "pipeline": 1}
    assert versions(path) == [("core", 1), ("pipeline", 1), ("remote", 1)]
    assert tables(path) == {
        "async_db_client_schema",
        "hash_records",
        "remote_logs",
        "core_sites",
        "core_baselines",
        "core_logs",
        "pipeline_updates",
        "pipeline_sites",
        "pipeline_completions",
    }
    assert latest_version(DIALECT, "remote") == 1


@pytest.mark.asyncio
async def test_auto_migrate_off_needs_an_explicit_migrate(tmp_path: Path) -> None:
    path = tmp_path / "off.db"
    cfg = config(path, auto_migrate=False)
    async with DBClientFactory(cfg).create_client() as db:
        with pytest.raises(MigrationError, match="run `migrate`"):
            await db.get_hash_record("/a")
    assert tables(path) == set()
    async with DBClientFactory(cfg).create_client() as db:
        assert await db.migrate() == {"remote": 1}
        assert await db.insert_or_update_hash({"path": "/a", "current_hash": "h"})


@pytest.mark.asyncio
async def test_a_newer_schema_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with DBClientFactory(config(path)).create_client() as db:
        await db.migrate()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO async_db_client_schema VALUES ('remote', 99, 'future', 'x')")
    conn.commit()
    conn.close()
    async with DBClientFactory(config(path)).create_client() as db:
        with pytest.raises(MigrationError, match="newer than this library"):
            await db.get_hash_record("/a")
    assert versions(path) == [("remote", 1), ("remote", 99)]


def test_four_processes_migrating_a_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(ROOT)!r})
        from async_db_client import DBClientFactory
        from tests.test_sqlite_backend import config

        async def main():
            cfg = config({str(path)!r}, tiers=("remote", "core"))
            async with DBClientFactory(cfg).create_client() as db:
                print(await db.migrate())
                await db.put_log({{"summary_message": "hello"}})

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
    assert versions(path) == [("core", 1), ("remote", 1)]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT COUNT(*) FROM remote_logs").fetchone() == (4,)
    finally:
        conn.close()


# ------------------------------------------------------------------ installation


def test_missing_aiosqlite_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["aiosqlite"] = None  # as if not installed
        from async_db_client import DBClientFactory, DriverNotInstalledError
        try:
            DBClientFactory({"database": {"remote_type": "sqlite",
                                          "remote_config": {"path": ":memory:"}}}).create_client()
        except DriverNotInstalledError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "the 'aiosqlite' driver is not installed: pip install 'async_db_client[sqlite]'"
    )
    assert issubclass(DriverNotInstalledError, ImportError)


def test_time_window_arithmetic_is_exact_in_sql(tmp_path: Path) -> None:
    # Cutoffs computed in Python and compared as strings in SQL: a microsecond matters.
    conn = sqlite3.connect(tmp_path / "t.db")
    try:
        now = datetime(2024, 1, 1, tzinfo=UTC)
        older, newer = now - timedelta(microseconds=1), now
        row = conn.execute(
            "SELECT ? < ?, ? < ?",
            (
                DIALECT.to_db_time(older),
                DIALECT.to_db_time(now),
                DIALECT.to_db_time(newer),
                DIALECT.to_db_time(now),
            ),
        ).fetchone()
        assert row == (1, 0)
    finally:
        conn.close()
