"""T-SQL for SQL Server 2016+ (OPENJSON needs database compatibility level 130 or later).

Notes that shape the statements:

* Text is ``NVARCHAR`` (paths ``NVARCHAR(MAX)``: 4,096 UTF-8 bytes can be 4,096
  characters, above the 4,000 of a sized NVARCHAR); records are keyed on the path's
  SHA-256. Hashes, keys and names use binary collations, so comparisons are exact
  (SQL Server's default collations ignore case).
* ``MERGE ... WITH (HOLDLOCK)`` makes each upsert atomic; in an UPDATE every right-hand
  side sees the old row, so the prev-hash rotation needs no particular order. A MERGE
  source must not repeat a key, which :attr:`TSQLDialect.upsert_accepts_repeated_keys`
  tells the bulk writer.
* A statement carries at most 2,100 parameters.
* New ids come back through ``OUTPUT INSERTED.<id>``; paging is ``OFFSET ... FETCH``.
"""

from __future__ import annotations

import functools

from . import schema
from .base import Dialect, Migration

__all__ = ["TSQLDialect"]

BIN = "COLLATE Latin1_General_100_BIN2"
#: SQL Server's = ignores trailing spaces, even under a binary collation: 'a' = 'a '.
SAME_LENGTH = "AND DATALENGTH(listed.[value]) = DATALENGTH(child.name)"
KEY = f"CHAR(64) {BIN}"


def _create(table: str, body: str) -> str:
    return f"IF OBJECT_ID(N'{table}', N'U') IS NULL CREATE TABLE {table} ({body})"


def _index(name: str, table: str, columns: str) -> str:
    return (
        f"IF NOT EXISTS (SELECT 1 FROM sys.indexes WHERE name = N'{name}')"
        f" CREATE INDEX {name} ON {table} ({columns})"
    )


def _log_table(table: str) -> tuple[str, ...]:
    return (
        _create(
            table,
            f"log_id BIGINT IDENTITY(1, 1) NOT NULL CONSTRAINT pk_{table} PRIMARY KEY,"
            f" log_key VARCHAR(64) {BIN} NOT NULL CONSTRAINT uq_{table}_key UNIQUE,"
            f" site_id NVARCHAR(64) {BIN} NULL,"
            f" log_level VARCHAR(8) {BIN} NOT NULL,"
            " logged_at DATETIME2(6) NOT NULL,"
            f" session_id NVARCHAR(64) {BIN} NULL,"
            " summary_message NVARCHAR(4000) NOT NULL,"
            " detailed_message NVARCHAR(MAX) NULL",
        ),
        _index(f"idx_{table}_time", table, "logged_at"),
        _index(f"idx_{table}_session", table, "session_id, logged_at"),
        _index(f"idx_{table}_level", table, "log_level, logged_at"),
    )


REMOTE_MIGRATIONS = (
    Migration(
        "remote",
        1,
        "hash records and remote logs",
        (
            _create(
                "hash_records",
                f"path_key {KEY} NOT NULL CONSTRAINT pk_hash_records PRIMARY KEY,"
                f" path NVARCHAR(MAX) {BIN} NOT NULL,"
                f" parent_key {KEY} NULL,"
                f" name NVARCHAR(MAX) {BIN} NULL,"
                f" current_hash NVARCHAR(128) {BIN} NOT NULL,"
                " current_dtg_first BIGINT NOT NULL,"
                " current_dtg_latest BIGINT NOT NULL,"
                f" prev_hash NVARCHAR(128) {BIN} NULL,"
                " prev_dtg_latest BIGINT NULL,"
                " dirs NVARCHAR(MAX) NOT NULL,"
                " files NVARCHAR(MAX) NOT NULL,"
                " links NVARCHAR(MAX) NOT NULL,"
                f" target_hash NVARCHAR(128) {BIN} NULL,"
                f" session_id NVARCHAR(64) {BIN} NULL",
            ),
            _index("idx_hash_records_parent", "hash_records", "parent_key"),
            _index("idx_hash_records_target", "hash_records", "target_hash"),
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
            _create(
                "core_sites",
                f"site_id NVARCHAR(64) {BIN} NOT NULL CONSTRAINT pk_core_sites PRIMARY KEY,"
                " last_heartbeat DATETIME2(6) NULL,"
                f" root_hash NVARCHAR(128) {BIN} NULL,"
                " root_hash_at DATETIME2(6) NULL,"
                " hash_record_count BIGINT NOT NULL DEFAULT 0",
            ),
            _create(
                "core_baselines",
                "baseline_id BIGINT IDENTITY(1, 1) NOT NULL"
                " CONSTRAINT pk_core_baselines PRIMARY KEY,"
                f" baseline_hash NVARCHAR(128) {BIN} NOT NULL,"
                " created_at DATETIME2(6) NOT NULL",
            ),
            _index("idx_core_baselines_created", "core_baselines", "created_at, baseline_id"),
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
            _create(
                "pipeline_updates",
                "update_id BIGINT IDENTITY(1, 1) NOT NULL"
                " CONSTRAINT pk_pipeline_updates PRIMARY KEY,"
                f" site_id NVARCHAR(64) {BIN} NULL,"
                f" path NVARCHAR(MAX) {BIN} NOT NULL,"
                f" path_key {KEY} NOT NULL,"
                " requested_at DATETIME2(6) NOT NULL,"
                f" hash_value NVARCHAR(128) {BIN} NULL,"
                " answered_at DATETIME2(6) NULL",
            ),
            _index("idx_pipeline_updates_path", "pipeline_updates", "path_key, hash_value"),
            _index("idx_pipeline_updates_pending", "pipeline_updates", "hash_value, requested_at"),
            _create(
                "pipeline_sites",
                f"site_id NVARCHAR(64) {BIN} NOT NULL CONSTRAINT pk_pipeline_sites PRIMARY KEY,"
                " registered_at DATETIME2(6) NOT NULL",
            ),
            _create(
                "pipeline_completions",
                "completion_id BIGINT IDENTITY(1, 1) NOT NULL"
                " CONSTRAINT pk_pipeline_completions PRIMARY KEY,"
                f" site_id NVARCHAR(64) {BIN} NOT NULL,"
                " completed_at DATETIME2(6) NOT NULL",
            ),
            _index(
                "idx_pipeline_completions_site", "pipeline_completions", "site_id, completed_at"
            ),
        ),
    ),
)


def _merge_source(columns: tuple[str, ...], rows: int) -> str:
    row = f"({', '.join('?' * len(columns))})"
    return f"(VALUES {', '.join([row] * rows)}) AS source ({', '.join(columns)})"


def _insert_from_source(columns: tuple[str, ...]) -> str:
    return f"INSERT ({', '.join(columns)}) VALUES ({', '.join('source.' + c for c in columns)})"


class TSQLDialect(Dialect):
    """SQL for Microsoft SQL Server 2016+ through ODBC."""

    name = "tsql"
    migration_steps = REMOTE_MIGRATIONS + CORE_MIGRATIONS + PIPELINE_MIGRATIONS
    #: SQL Server allows 2,100 parameters per statement; keep a margin.
    max_params = 2000
    max_statement_bytes = 4_000_000
    insert_returns_id = True
    upsert_accepts_repeated_keys = False

    # ------------------------------------------------------------ remote: records

    @functools.lru_cache(maxsize=64)  # noqa: B019 - dialects are few and long-lived
    def upsert_hashes(self, rows: int) -> str:
        same = "target.current_hash = source.current_hash"
        return (
            "MERGE INTO hash_records WITH (HOLDLOCK) AS target"
            f" USING {_merge_source(schema.UPSERT_COLUMNS, rows)}"
            " ON target.path_key = source.path_key"
            " WHEN MATCHED THEN UPDATE SET"
            f" prev_hash = CASE WHEN {same} THEN target.prev_hash ELSE target.current_hash END,"
            f" prev_dtg_latest = CASE WHEN {same}"
            " THEN target.prev_dtg_latest ELSE target.current_dtg_latest END,"
            f" current_dtg_first = CASE WHEN {same}"
            " THEN target.current_dtg_first ELSE source.current_dtg_first END,"
            " current_dtg_latest = source.current_dtg_latest,"
            " current_hash = source.current_hash,"
            " dirs = source.dirs, files = source.files, links = source.links,"
            " target_hash = COALESCE(source.target_hash, target.target_hash),"
            " session_id = COALESCE(source.session_id, target.session_id)"
            f" WHEN NOT MATCHED THEN {_insert_from_source(schema.UPSERT_COLUMNS)};"
        )

    def restore_hashes(self, rows: int) -> str:
        updates = ", ".join(f"{c} = source.{c}" for c in schema.RESTORE_COLUMNS[1:])
        return (
            "MERGE INTO hash_records WITH (HOLDLOCK) AS target"
            f" USING {_merge_source(schema.RESTORE_COLUMNS, rows)}"
            " ON target.path_key = source.path_key"
            f" WHEN MATCHED THEN UPDATE SET {updates}"
            f" WHEN NOT MATCHED THEN {_insert_from_source(schema.RESTORE_COLUMNS)};"
        )

    def records_after(self) -> str:
        return (
            f"SELECT path_key, {', '.join(schema.HASH_COLUMNS)} FROM hash_records"
            " WHERE path_key > ? ORDER BY path_key OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
        )

    def orphans(self) -> str:
        def listed(column: str) -> str:
            return (
                f"EXISTS (SELECT 1 FROM OPENJSON(parent.{column}) AS listed"
                f" WHERE listed.[value] {BIN} = child.name {SAME_LENGTH})"
            )

        return (
            "SELECT child.path FROM hash_records AS child"
            " JOIN hash_records AS parent ON parent.path_key = child.parent_key"
            f" WHERE NOT {listed('dirs')} AND NOT {listed('files')} AND NOT {listed('links')}"
        )

    def untracked(self) -> str:
        return (
            # No DISTINCT: under the database's collation it would fold 'a' and 'A';
            # the repository drops exact duplicates.
            "SELECT parent.path, listed.[value] FROM hash_records AS parent"
            " CROSS APPLY OPENJSON(parent.dirs) AS listed"
            " WHERE NOT EXISTS (SELECT 1 FROM hash_records AS child"
            " WHERE child.parent_key = parent.path_key"
            f" AND child.name = listed.[value] {BIN} {SAME_LENGTH})"
        )

    # ------------------------------------------------------------------------ logs

    def insert_log(self, tier: str) -> str:
        return (
            f"INSERT INTO {schema.LOG_TABLES[tier]} ({', '.join(schema.LOG_INSERT_COLUMNS)})"
            f" OUTPUT INSERTED.log_id VALUES ({', '.join('?' * len(schema.LOG_INSERT_COLUMNS))})"
        )

    def logs_after(self, tier: str) -> str:
        return (
            f"SELECT {', '.join(schema.LOG_COLUMNS)} FROM {schema.LOG_TABLES[tier]}"
            " WHERE log_id > ? ORDER BY log_id OFFSET 0 ROWS FETCH NEXT ? ROWS ONLY"
        )

    def insert_logs_ignoring_known_keys(self, tier: str, rows: int) -> str:
        return (
            f"MERGE INTO {schema.LOG_TABLES[tier]} WITH (HOLDLOCK) AS target"
            f" USING {_merge_source(schema.LOG_INSERT_COLUMNS, rows)}"
            " ON target.log_key = source.log_key"
            f" WHEN NOT MATCHED THEN {_insert_from_source(schema.LOG_INSERT_COLUMNS)};"
        )

    def paging(self, *, limit: bool, offset: bool) -> str:
        if limit:
            return " OFFSET ? ROWS FETCH NEXT ? ROWS ONLY"
        if offset:
            return " OFFSET ? ROWS"
        return ""

    def paging_params(self, limit: int | None, offset: int) -> list[int]:
        if limit is not None:
            return [offset, limit]
        return [offset] if offset else []

    # ----------------------------------------------------------------------- core

    def upsert_heartbeat(self, *, with_count: bool) -> str:
        columns = ("site_id", "seen_at", "record_count") if with_count else ("site_id", "seen_at")
        count_update = ", hash_record_count = source.record_count" if with_count else ""
        count_insert = "source.record_count" if with_count else "0"
        return (
            "MERGE INTO core_sites WITH (HOLDLOCK) AS target"
            f" USING {_merge_source(columns, 1)}"
            " ON target.site_id = source.site_id"
            f" WHEN MATCHED THEN UPDATE SET last_heartbeat = source.seen_at{count_update}"
            " WHEN NOT MATCHED THEN INSERT (site_id, last_heartbeat, hash_record_count)"
            f" VALUES (source.site_id, source.seen_at, {count_insert});"
        )

    def upsert_root_hash(self) -> str:
        return (
            "MERGE INTO core_sites WITH (HOLDLOCK) AS target"
            " USING (VALUES (?, ?, ?)) AS source (site_id, root_hash, computed_at)"
            " ON target.site_id = source.site_id"
            " WHEN MATCHED THEN UPDATE SET root_hash = source.root_hash,"
            " root_hash_at = source.computed_at"
            " WHEN NOT MATCHED THEN INSERT (site_id, root_hash, root_hash_at)"
            " VALUES (source.site_id, source.root_hash, source.computed_at);"
        )

    insert_baseline = (
        "INSERT INTO core_baselines (baseline_hash, created_at)"
        " OUTPUT INSERTED.baseline_id VALUES (?, ?)"
    )

    def newest_baselines(self) -> str:
        return (
            "SELECT TOP (2) baseline_hash FROM core_baselines"
            " ORDER BY created_at DESC, baseline_id DESC"
        )

    # ------------------------------------------------------------------- pipeline

    insert_update = (
        "INSERT INTO pipeline_updates (site_id, path, path_key, requested_at)"
        " OUTPUT INSERTED.update_id VALUES (?, ?, ?, ?)"
    )

    # ------------------------------------------------------------------ migrations

    def create_version_table(self) -> str:
        return _create(
            schema.VERSION_TABLE,
            f"tier VARCHAR(16) {BIN} NOT NULL,"
            " version INT NOT NULL,"
            " description NVARCHAR(200) NOT NULL,"
            " applied_at DATETIME2(6) NOT NULL,"
            f" CONSTRAINT pk_{schema.VERSION_TABLE} PRIMARY KEY (tier, version)",
        )

    def lock_migrations(self) -> str:
        # sp_getapplock takes milliseconds; EXEC arguments must be variables or constants.
        return (
            "SET NOCOUNT ON;"
            " DECLARE @name NVARCHAR(255) = ?;"
            " DECLARE @ms INT = ? * 1000;"
            " DECLARE @result INT;"
            " EXEC @result = sp_getapplock @Resource = @name, @LockMode = 'Exclusive',"
            " @LockOwner = 'Session', @LockTimeout = @ms;"
            " SELECT CASE WHEN @result >= 0 THEN 1 ELSE 0 END"
        )

    def unlock_migrations(self) -> str:
        return (
            "SET NOCOUNT ON;"
            " DECLARE @name NVARCHAR(255) = ?;"
            " DECLARE @result INT;"
            " EXEC @result = sp_releaseapplock @Resource = @name, @LockOwner = 'Session';"
            " SELECT @result"
        )
