"""SQLite SQL (3.24+ for upserts, with the JSON functions, built in since 3.38).

What differs from MySQL, and why:

* Upserts are ``INSERT ... ON CONFLICT(key) DO UPDATE SET ... excluded.x``. Every SET
  expression sees the *old* row (MySQL's see columns already assigned), so the rotation
  below tests ``current_hash = excluded.current_hash`` on the old value throughout, in any
  order. Rows of one multi-row INSERT are applied one after another, so a path given
  twice in a batch rotates twice, in order, as on MySQL.
* Datetimes are TEXT in one fixed UTC format, ``YYYY-MM-DD HH:MM:SS.ffffff`` (always 26
  characters, microseconds kept), so that comparing and sorting the strings compares and
  sorts the instants. Every datetime parameter goes through :meth:`to_db_time`.
* Text columns compare with the ``BINARY`` collation (SQLite's default, spelled out):
  hashes, paths and names are exact, case and accents included.
* JSON arrays of child names are read with ``json_each``.
* There are no named locks: migrations run in one ``BEGIN IMMEDIATE`` transaction (DDL
  is transactional in SQLite), which holds the database's write lock, so two processes
  migrating at once apply each step once (the second waits, then sees the version).
* ``AUTOINCREMENT`` ids are never reused after deletes, like MySQL's AUTO_INCREMENT, so
  paging by id (exports) and idempotency lookups stay sound.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from . import schema
from .base import Dialect, Migration

__all__ = ["SQLiteDialect"]

_TEXT = "TEXT COLLATE BINARY"


def _log_table(table: str) -> tuple[str, ...]:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " log_id INTEGER PRIMARY KEY AUTOINCREMENT,"
        f" log_key {_TEXT} NOT NULL UNIQUE,"
        f" site_id {_TEXT} NULL,"
        f" log_level {_TEXT} NOT NULL,"
        f" logged_at {_TEXT} NOT NULL,"
        f" session_id {_TEXT} NULL,"
        f" summary_message {_TEXT} NOT NULL,"
        f" detailed_message {_TEXT} NULL"
        ")",
        f"CREATE INDEX IF NOT EXISTS idx_{table}_time ON {table} (logged_at)",
        f"CREATE INDEX IF NOT EXISTS idx_{table}_session ON {table} (session_id, logged_at)",
        f"CREATE INDEX IF NOT EXISTS idx_{table}_level ON {table} (log_level, logged_at)",
    )


REMOTE_MIGRATIONS = (
    Migration(
        "remote",
        1,
        "hash records and remote logs",
        (
            "CREATE TABLE IF NOT EXISTS hash_records ("
            f" path_key {_TEXT} NOT NULL PRIMARY KEY,"
            f" path {_TEXT} NOT NULL,"
            f" parent_key {_TEXT} NULL,"
            f" name {_TEXT} NULL,"
            f" current_hash {_TEXT} NOT NULL,"
            " current_dtg_first INTEGER NOT NULL,"
            " current_dtg_latest INTEGER NOT NULL,"
            f" prev_hash {_TEXT} NULL,"
            " prev_dtg_latest INTEGER NULL,"
            f" dirs {_TEXT} NOT NULL,"
            f" files {_TEXT} NOT NULL,"
            f" links {_TEXT} NOT NULL,"
            f" target_hash {_TEXT} NULL,"
            f" session_id {_TEXT} NULL"
            ")",
            "CREATE INDEX IF NOT EXISTS idx_hash_records_parent ON hash_records (parent_key)",
            "CREATE INDEX IF NOT EXISTS idx_hash_records_target ON hash_records (target_hash)",
            *_log_table("remote_logs"),
        ),
    ),
)

CORE_MIGRATIONS = (
    Migration(
        "core",
        1,
        "sites, baselines and central logs",
        (
            "CREATE TABLE IF NOT EXISTS core_sites ("
            f" site_id {_TEXT} NOT NULL PRIMARY KEY,"
            f" last_heartbeat {_TEXT} NULL,"
            f" root_hash {_TEXT} NULL,"
            f" root_hash_at {_TEXT} NULL,"
            " hash_record_count INTEGER NOT NULL DEFAULT 0"
            ")",
            "CREATE TABLE IF NOT EXISTS core_baselines ("
            " baseline_id INTEGER PRIMARY KEY AUTOINCREMENT,"
            f" baseline_hash {_TEXT} NOT NULL,"
            f" created_at {_TEXT} NOT NULL"
            ")",
            "CREATE INDEX IF NOT EXISTS idx_core_baselines_created"
            " ON core_baselines (created_at, baseline_id)",
            *_log_table("core_logs"),
        ),
    ),
)

PIPELINE_MIGRATIONS = (
    Migration(
        "pipeline",
        1,
        "update requests, official sites, completions",
        (
            "CREATE TABLE IF NOT EXISTS pipeline_updates ("
            " update_id INTEGER PRIMARY KEY AUTOINCREMENT,"
            f" site_id {_TEXT} NULL,"
            f" path {_TEXT} NOT NULL,"
            f" path_key {_TEXT} NOT NULL,"
            f" requested_at {_TEXT} NOT NULL,"
            f" hash_value {_TEXT} NULL,"
            f" answered_at {_TEXT} NULL"
            ")",
            "CREATE INDEX IF NOT EXISTS idx_pipeline_updates_path"
            " ON pipeline_updates (path_key, hash_value)",
            "CREATE INDEX IF NOT EXISTS idx_pipeline_updates_pending"
            " ON pipeline_updates (hash_value, requested_at)",
            "CREATE TABLE IF NOT EXISTS pipeline_sites ("
            f" site_id {_TEXT} NOT NULL PRIMARY KEY,"
            f" registered_at {_TEXT} NOT NULL"
            ")",
            "CREATE TABLE IF NOT EXISTS pipeline_completions ("
            " completion_id INTEGER PRIMARY KEY AUTOINCREMENT,"
            f" site_id {_TEXT} NOT NULL,"
            f" completed_at {_TEXT} NOT NULL"
            ")",
            "CREATE INDEX IF NOT EXISTS idx_pipeline_completions_site"
            " ON pipeline_completions (site_id, completed_at)",
        ),
    ),
)


def _rows(columns: int, rows: int) -> str:
    row = f"({', '.join('?' * columns)})"
    return ", ".join([row] * rows)


class SQLiteDialect(Dialect):
    """SQL for SQLite through any driver (aiosqlite here)."""

    name = "sqlite"
    migration_steps = REMOTE_MIGRATIONS + CORE_MIGRATIONS + PIPELINE_MIGRATIONS
    #: SQLITE_MAX_VARIABLE_NUMBER is 32,766 since SQLite 3.32 (999 before; builds of
    #: older versions are rare enough that 999-parameter batches are not worth it).
    max_params = 32_766
    #: SQLITE_MAX_SQL_LENGTH defaults to 1,000,000 bytes; bound values do not count.
    max_statement_bytes = 4_000_000
    last_insert_id_sql = "SELECT last_insert_rowid()"
    migration_lock = "transaction"

    # ---------------------------------------------------------------- conversions

    def to_db_time(self, value: datetime) -> Any:
        """``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC (isoformat pads the year to 4 digits)."""
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.isoformat(sep=" ", timespec="microseconds")

    # ------------------------------------------------------------ remote: records

    @functools.lru_cache(maxsize=64)  # noqa: B019 - dialects are few and long-lived
    def upsert_hashes(self, rows: int) -> str:
        same = "current_hash = excluded.current_hash"
        # Each expression below sees the old row, whatever its position in the list.
        return (
            f"INSERT INTO hash_records ({', '.join(schema.UPSERT_COLUMNS)}) VALUES "
            + _rows(len(schema.UPSERT_COLUMNS), rows)
            + " ON CONFLICT(path_key) DO UPDATE SET"
            f" prev_hash = CASE WHEN {same} THEN prev_hash ELSE current_hash END,"
            f" prev_dtg_latest = CASE WHEN {same} THEN prev_dtg_latest"
            " ELSE current_dtg_latest END,"
            f" current_dtg_first = CASE WHEN {same} THEN current_dtg_first"
            " ELSE excluded.current_dtg_first END,"
            " current_dtg_latest = excluded.current_dtg_latest,"
            " current_hash = excluded.current_hash,"
            " dirs = excluded.dirs, files = excluded.files, links = excluded.links,"
            " target_hash = COALESCE(excluded.target_hash, target_hash),"
            " session_id = COALESCE(excluded.session_id, session_id)"
        )

    def restore_hashes(self, rows: int) -> str:
        updates = ", ".join(f"{c} = excluded.{c}" for c in schema.RESTORE_COLUMNS[1:])
        return (
            f"INSERT INTO hash_records ({', '.join(schema.RESTORE_COLUMNS)}) VALUES "
            + _rows(len(schema.RESTORE_COLUMNS), rows)
            + f" ON CONFLICT(path_key) DO UPDATE SET {updates}"
        )

    def orphans(self) -> str:
        listed = "SELECT 1 FROM json_each(parent.{}) WHERE json_each.value = child.name"
        return (
            "SELECT child.path FROM hash_records child"
            " JOIN hash_records parent ON parent.path_key = child.parent_key"
            f" WHERE NOT EXISTS ({listed.format('dirs')})"
            f" AND NOT EXISTS ({listed.format('files')})"
            f" AND NOT EXISTS ({listed.format('links')})"
        )

    def untracked(self) -> str:
        return (
            "SELECT DISTINCT parent.path, listed.value"
            " FROM hash_records parent, json_each(parent.dirs) AS listed"
            " WHERE NOT EXISTS (SELECT 1 FROM hash_records child"
            " WHERE child.parent_key = parent.path_key AND child.name = listed.value)"
        )

    # --------------------------------------------------------------- logs (both)

    def insert_logs_ignoring_known_keys(self, tier: str, rows: int) -> str:
        return (
            f"INSERT INTO {schema.LOG_TABLES[tier]}"
            f" ({', '.join(schema.LOG_INSERT_COLUMNS)}) VALUES "
            + _rows(len(schema.LOG_INSERT_COLUMNS), rows)
            + " ON CONFLICT(log_key) DO NOTHING"
        )


    # ----------------------------------------------------------------------- core

    def upsert_heartbeat(self, *, with_count: bool) -> str:
        if with_count:
            return (
                "INSERT INTO core_sites (site_id, last_heartbeat, hash_record_count)"
                " VALUES (?, ?, ?)"
                " ON CONFLICT(site_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat,"
                " hash_record_count = excluded.hash_record_count"
            )
        return (
            "INSERT INTO core_sites (site_id, last_heartbeat) VALUES (?, ?)"
            " ON CONFLICT(site_id) DO UPDATE SET last_heartbeat = excluded.last_heartbeat"
        )

    def upsert_root_hash(self) -> str:
        return (
            "INSERT INTO core_sites (site_id, root_hash, root_hash_at) VALUES (?, ?, ?)"
            " ON CONFLICT(site_id) DO UPDATE SET root_hash = excluded.root_hash,"
            " root_hash_at = excluded.root_hash_at"
        )

    # ------------------------------------------------------------------ migrations

    def create_version_table(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {schema.VERSION_TABLE} ("
            f" tier {_TEXT} NOT NULL,"
            " version INTEGER NOT NULL,"
            f" description {_TEXT} NOT NULL,"
            f" applied_at {_TEXT} NOT NULL,"
            " PRIMARY KEY (tier, version)"
            ")"
        )
