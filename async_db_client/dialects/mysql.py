"""MySQL / MariaDB SQL (MariaDB 10.6+ or MySQL 8.0+: JSON_TABLE is needed)."""

from __future__ import annotations

import functools
import re

from . import schema
from .base import Dialect, Migration

__all__ = ["MySQLDialect"]

_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin ROW_FORMAT=DYNAMIC"
_KEY = "CHAR(64) CHARACTER SET ascii COLLATE ascii_bin"
# A \u00XX escape (after any number of escaped backslashes) whose hex has a letter.
_LOWER_HEX_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u00([01][a-f])")


def _upper_hex(match: re.Match[str]) -> str:
    return f"{match.group(1)}\\u00{match.group(2).upper()}"


def _log_table(table: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " log_id BIGINT NOT NULL AUTO_INCREMENT,"
        " log_key VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
        " site_id VARCHAR(64) NULL,"
        " log_level VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
        " logged_at DATETIME(6) NOT NULL,"
        " session_id VARCHAR(64) NULL,"
        " summary_message TEXT NOT NULL,"
        " detailed_message MEDIUMTEXT NULL,"
        " PRIMARY KEY (log_id),"
        f" UNIQUE KEY uq_{table}_key (log_key),"
        f" KEY idx_{table}_time (logged_at),"
        f" KEY idx_{table}_session (session_id, logged_at),"
        f" KEY idx_{table}_level (log_level, logged_at)"
        f") {_TABLE_OPTIONS}"
    )


REMOTE_MIGRATIONS = (
    Migration(
        "remote",
        1,
        "hash records and remote logs",
        (
            "CREATE TABLE IF NOT EXISTS hash_records ("
            f" path_key {_KEY} NOT NULL,"
            " path VARCHAR(4096) NOT NULL,"
            f" parent_key {_KEY} NULL,"
            " name VARCHAR(4096) NULL,"
            " current_hash VARCHAR(128) NOT NULL,"
            " current_dtg_first BIGINT NOT NULL,"
            " current_dtg_latest BIGINT NOT NULL,"
            " prev_hash VARCHAR(128) NULL,"
            " prev_dtg_latest BIGINT NULL,"
            " dirs JSON NOT NULL,"
            " files JSON NOT NULL,"
            " links JSON NOT NULL,"
            " target_hash VARCHAR(128) NULL,"
            " session_id VARCHAR(64) NULL,"
            " PRIMARY KEY (path_key),"
            " KEY idx_hash_records_parent (parent_key),"
            " KEY idx_hash_records_target (target_hash)"
            f") {_TABLE_OPTIONS}",
            _log_table("remote_logs"),
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
            " site_id VARCHAR(64) NOT NULL,"
            " last_heartbeat DATETIME(6) NULL,"
            " root_hash VARCHAR(128) NULL,"
            " root_hash_at DATETIME(6) NULL,"
            " hash_record_count BIGINT NOT NULL DEFAULT 0,"
            " PRIMARY KEY (site_id)"
            f") {_TABLE_OPTIONS}",
            "CREATE TABLE IF NOT EXISTS core_baselines ("
            " baseline_id BIGINT NOT NULL AUTO_INCREMENT,"
            " baseline_hash VARCHAR(128) NOT NULL,"
            " created_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (baseline_id),"
            " KEY idx_core_baselines_created (created_at, baseline_id)"
            f") {_TABLE_OPTIONS}",
            _log_table("core_logs"),
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
            " update_id BIGINT NOT NULL AUTO_INCREMENT,"
            " site_id VARCHAR(64) NULL,"
            " path VARCHAR(4096) NOT NULL,"
            f" path_key {_KEY} NOT NULL,"
            " requested_at DATETIME(6) NOT NULL,"
            " hash_value VARCHAR(128) NULL,"
            " answered_at DATETIME(6) NULL,"
            " PRIMARY KEY (update_id),"
            " KEY idx_pipeline_updates_path (path_key, hash_value),"
            " KEY idx_pipeline_updates_pending (hash_value, requested_at)"
            f") {_TABLE_OPTIONS}",
            "CREATE TABLE IF NOT EXISTS pipeline_sites ("
            " site_id VARCHAR(64) NOT NULL,"
            " registered_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (site_id)"
            f") {_TABLE_OPTIONS}",
            "CREATE TABLE IF NOT EXISTS pipeline_completions ("
            " completion_id BIGINT NOT NULL AUTO_INCREMENT,"
            " site_id VARCHAR(64) NOT NULL,"
            " completed_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (completion_id),"
            " KEY idx_pipeline_completions_site (site_id, completed_at)"
            f") {_TABLE_OPTIONS}",
        ),
    ),
)


class MySQLDialect(Dialect):
    """SQL for MySQL 8 / MariaDB 10.6+, any driver (aiomysql, or ODBC)."""

    name = "mysql"
    migration_steps = REMOTE_MIGRATIONS + CORE_MIGRATIONS + PIPELINE_MIGRATIONS
    max_params = 60_000
    int_div = "DIV"
    no_limit = "18446744073709551615"
    last_insert_id_sql = "SELECT LAST_INSERT_ID()"

    def to_db_names(self, names: list[str]) -> str:
        # MariaDB stores JSON as text and JSON_CONTAINS compares escaped text: a name
        # must be escaped here exactly as JSON_QUOTE escapes it (\u001F, not \u001f),
        # or find_orphaned_entries would not see it listed. MySQL's binary JSON compares
        # values and accepts either.
        text = super().to_db_names(names)
        if "\\u00" in text:
            text = _LOWER_HEX_ESCAPE.sub(_upper_hex, text)
        return text

    @functools.lru_cache(maxsize=64)  # noqa: B019 - dialects are few and long-lived
    def upsert_hashes(self, rows: int) -> str:
        row = f"({', '.join('?' * len(schema.UPSERT_COLUMNS))})"
        # Assignments run left to right and see columns already assigned: rotate prev_*
        # from the old current_* before current_hash is overwritten.
        return (
            f"INSERT INTO hash_records ({', '.join(schema.UPSERT_COLUMNS)}) VALUES "
            + ", ".join([row] * rows)
            + " ON DUPLICATE KEY UPDATE"
            " prev_hash = IF(current_hash = VALUES(current_hash), prev_hash, current_hash),"
            " prev_dtg_latest = IF(current_hash = VALUES(current_hash),"
            " prev_dtg_latest, current_dtg_latest),"
            " current_dtg_first = IF(current_hash = VALUES(current_hash),"
            " current_dtg_first, VALUES(current_dtg_first)),"
            " current_dtg_latest = VALUES(current_dtg_latest),"
            " current_hash = VALUES(current_hash),"
            " dirs = VALUES(dirs), files = VALUES(files), links = VALUES(links),"
            " target_hash = COALESCE(VALUES(target_hash), target_hash),"
            " session_id = COALESCE(VALUES(session_id), session_id)"
        )

    def restore_hashes(self, rows: int) -> str:
        row = f"({', '.join('?' * len(schema.RESTORE_COLUMNS))})"
        updates = ", ".join(f"{c} = VALUES({c})" for c in schema.RESTORE_COLUMNS[1:])
        return (
            f"INSERT INTO hash_records ({', '.join(schema.RESTORE_COLUMNS)}) VALUES "
            + ", ".join([row] * rows)
            + f" ON DUPLICATE KEY UPDATE {updates}"
        )

    def insert_logs_ignoring_known_keys(self, tier: str, rows: int) -> str:
        row = f"({', '.join('?' * len(schema.LOG_INSERT_COLUMNS))})"
        return (
            f"INSERT INTO {schema.LOG_TABLES[tier]}"
            f" ({', '.join(schema.LOG_INSERT_COLUMNS)}) VALUES "
            + ", ".join([row] * rows)
            + " ON DUPLICATE KEY UPDATE log_key = log_key"
        )

    def orphans(self) -> str:
        return (
            "SELECT child.path FROM hash_records child"
            " JOIN hash_records parent ON parent.path_key = child.parent_key"
            " WHERE NOT JSON_CONTAINS(parent.dirs, JSON_QUOTE(child.name))"
            " AND NOT JSON_CONTAINS(parent.files, JSON_QUOTE(child.name))"
            " AND NOT JSON_CONTAINS(parent.links, JSON_QUOTE(child.name))"
        )

    def untracked(self) -> str:
        return (
            # No DISTINCT: it would fold 'a' and 'a ' (PAD SPACE); the repository drops
            # exact duplicates. The listed names: any length (a name has no limit of its
            # own), and a binary no-pad collation, or MariaDB's subquery cache, keyed by
            # the column's collation, answers for 'a' what it found for 'A' (_general_ci).
            "SELECT parent.path, listed.name FROM hash_records parent,"
            " JSON_TABLE(parent.dirs, '$[*]' COLUMNS ("
            "name LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin PATH '$')) AS listed"
            " WHERE NOT EXISTS (SELECT 1 FROM hash_records child"
            " WHERE child.parent_key = parent.path_key"
            # Byte-exact: utf8mb4_bin pads with spaces, so 'a' would equal 'a '.
            " AND CAST(child.name AS BINARY) = CAST(listed.name AS BINARY))"
        )

    def upsert_heartbeat(self, *, with_count: bool) -> str:
        if with_count:
            return (
                "INSERT INTO core_sites (site_id, last_heartbeat, hash_record_count)"
                " VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE"
                " last_heartbeat = VALUES(last_heartbeat),"
                " hash_record_count = VALUES(hash_record_count)"
            )
        return (
            "INSERT INTO core_sites (site_id, last_heartbeat) VALUES (?, ?)"
            " ON DUPLICATE KEY UPDATE last_heartbeat = VALUES(last_heartbeat)"
        )

    def upsert_root_hash(self) -> str:
        return (
            "INSERT INTO core_sites (site_id, root_hash, root_hash_at) VALUES (?, ?, ?)"
            " ON DUPLICATE KEY UPDATE root_hash = VALUES(root_hash),"
            " root_hash_at = VALUES(root_hash_at)"
        )

    def create_version_table(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {schema.VERSION_TABLE} ("
            " tier VARCHAR(16) NOT NULL,"
            " version INT NOT NULL,"
            " description VARCHAR(200) NOT NULL,"
            " applied_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (tier, version)"
            f") {_TABLE_OPTIONS}"
        )

    # GET_LOCK names are server-wide: the database's digest in the name keeps migrations
    # of unrelated databases on one server from waiting for each other (names are at most
    # 64 characters: the 23-character prefix and 32 hex digits).
    _LOCK = "CONCAT(?, MD5(DATABASE()))"

    def lock_migrations(self) -> str:
        return f"SELECT GET_LOCK({self._LOCK}, ?)"

    def unlock_migrations(self) -> str:
        return f"SELECT RELEASE_LOCK({self._LOCK})"
