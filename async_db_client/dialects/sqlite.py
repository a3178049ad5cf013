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
from .on_conflict import OnConflictDialect

__all__ = ["SQLiteDialect"]

_TEXT = "TEXT COLLATE BINARY"
#: The type of each kind of column: datetimes and JSON are text.
_TYPES = {
    "text": _TEXT,
    "time": _TEXT,
    "bigint": "INTEGER",
    "integer": "INTEGER",
    "json": _TEXT,
    "id": "INTEGER PRIMARY KEY AUTOINCREMENT",
}


class SQLiteDialect(OnConflictDialect):
    """SQL for SQLite through any driver (aiosqlite here)."""

    name = "sqlite"
    on_conflict = "ON CONFLICT({})"
    excluded = "excluded"
    column_types = _TYPES
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
            self.insert_values("hash_records", schema.UPSERT_COLUMNS, rows)
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
