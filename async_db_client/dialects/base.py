"""SQL text, apart from running it.

A dialect renders every statement the repositories need, in ``qmark`` style (``?``
placeholders), plus the schema migrations and value conversions of one SQL engine. It
never touches a connection, so statements can be inspected, pinned by golden tests and
checked by a real parser on their own. Identifiers only ever come from whitelists
(:mod:`async_db_client.validation`); every value is a parameter.

Shared, standard SQL lives here; engine dialects override what differs (upserts,
paging, JSON queries, DDL, locks, how a new id is returned).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ..validation import LOG_ORDER_COLUMNS, SINGLE_FIELDS
from . import schema

__all__ = ["Dialect", "Migration"]

# One encoder, reused: json.dumps with options builds a new one per call (bulk hot path).
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_JSON_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class Migration:
    """One schema step of one tier: applied in order, recorded in the version table."""

    tier: str
    version: int
    description: str
    statements: tuple[str, ...]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class Dialect:
    """Statements shared by every engine. Subclasses fill in the engine-specific parts."""

    name = "sql"
    #: Most parameters one statement may carry (SQL Server: 2,100).
    max_params = 60_000
    #: Rough cap on one statement's size in bytes (kept well below packet limits).
    max_statement_bytes = 4_000_000
    #: True if INSERT statements return the new id as a result row (T-SQL OUTPUT).
    insert_returns_id = False
    #: Query returning the id of the last insert on this connection, if needed.
    last_insert_id_sql: str | None = None
    #: False if one upsert statement must not name the same key twice (SQL Server MERGE).
    upsert_accepts_repeated_keys = True
    #: How migrations exclude each other: ``"named"``, a database-wide named lock
    #: (:meth:`lock_migrations`); or ``"transaction"``, the whole run in one write
    #: transaction, for engines with transactional DDL and no named locks (SQLite).
    migration_lock: Literal["named", "transaction"] = "named"
    #: With ``migration_lock="transaction"``: also take :meth:`lock_migrations` first
    #: thing in that transaction, a lock its commit or rollback releases (PostgreSQL,
    #: whose transactions do not exclude each other by themselves; SQLite's do).
    lock_in_transaction = False
    #: True if bulk upserts load the rows by COPY into a staging table
    #: (:meth:`create_staging`) and move them with :meth:`merge_staged`, round by round.
    bulk_copy = False
    #: The staging table of :attr:`bulk_copy`, and its columns in COPY order: ``round``,
    #: then :data:`schema.UPSERT_COLUMNS`.
    staging_table = ""
    staging_columns: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---------------------------------------------------------------- conversions

    def to_db_time(self, value: datetime) -> Any:
        """A UTC datetime as the driver should send it (naive UTC by default)."""
        return value.astimezone(UTC).replace(tzinfo=None)

    def from_db_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def from_db_time_required(self, value: Any) -> datetime:
        """:meth:`from_db_time` for a NOT NULL column."""
        result = self.from_db_time(value)
        if result is None:
            raise TypeError("NULL in a NOT NULL datetime column")
        return result

    def to_db_names(self, names: list[str]) -> str:
        return _JSON.encode(names)

    def from_db_names(self, *values: Any) -> list[list[str]]:
        """The name lists held by ``values``, columns of JSON arrays of strings."""
        lists: list[list[str]] = []
        for value in values:
            if isinstance(value, bytes | bytearray):
                value = value.decode("utf-8")
            if not value or value == "[]":
                lists.append([])
                continue
            # raw_decode skips json.loads' two regex scans (this runs three times for
            # every record read). The column holds what to_db_names wrote (no space
            # around it), or the same array as the engine prints it.
            try:
                names, _ = _JSON_DECODER.raw_decode(value)
            except ValueError:
                names, _ = _JSON_DECODER.raw_decode(value.strip())
            try:
                if type(names) is not list:
                    raise TypeError
                "".join(names)  # refuses anything but strings, in C: cheaper than a loop
            except TypeError:
                raise TypeError(
                    "a child names column does not hold a JSON array of strings"
                ) from None
            lists.append(names)
        return lists

    # ------------------------------------------------------------ remote: records

    @functools.cached_property
    def select_record(self) -> str:
        return f"SELECT {', '.join(schema.HASH_COLUMNS)} FROM hash_records WHERE path_key = ?"

    def upsert_hashes(self, rows: int) -> str:
        """Insert-or-update ``rows`` records with prev-hash rotation, in row order."""
        raise NotImplementedError

    @property
    def upsert_params_per_row(self) -> int:
        return len(schema.UPSERT_COLUMNS)

    def select_field(self, field: str) -> str:
        if field not in SINGLE_FIELDS:  # a second guard: callers validated already
            raise ValueError(f"not a readable field: {field!r}")
        return f"SELECT {field} FROM hash_records WHERE path_key = ?"

    update_target = "UPDATE hash_records SET target_hash = ? WHERE path_key = ?"
    record_exists = "SELECT 1 FROM hash_records WHERE path_key = ?"
    priority_paths = (
        "SELECT path FROM hash_records "
        "WHERE target_hash IS NOT NULL AND target_hash <> current_hash"
    )

    def orphans(self) -> str:
        """Paths of records not listed by their parent's record (JSON is engine-specific)."""
        raise NotImplementedError

    def untracked(self) -> str:
        """``(parent path, name)`` for names in ``dirs`` with no record."""
        raise NotImplementedError

    def records_after(self) -> str:
        """Params: after key, limit. Path key first, then :data:`schema.HASH_COLUMNS`."""
        return (
            f"SELECT path_key, {', '.join(schema.HASH_COLUMNS)} FROM hash_records"
            " WHERE path_key > ? ORDER BY path_key LIMIT ?"
        )

    def restore_hashes(self, rows: int) -> str:
        """Insert or replace ``rows`` complete records (:data:`schema.RESTORE_COLUMNS`)."""
        raise NotImplementedError

    def create_staging(self) -> str:
        """Create the bulk upsert's staging table (only with :attr:`bulk_copy`)."""
        raise NotImplementedError

    def merge_staged(self) -> str:
        """Upsert one round of staged rows, rotating (only with :attr:`bulk_copy`).
        Params: the round."""
        raise NotImplementedError

    def drop_staging(self) -> str:
        """Drop the staging table once merged (only with :attr:`bulk_copy`)."""
        raise NotImplementedError

    # --------------------------------------------------------------- logs (both)

    def logs_after(self, tier: str) -> str:
        """Params: after id, limit."""
        return (
            f"SELECT {', '.join(schema.LOG_COLUMNS)} FROM {schema.LOG_TABLES[tier]}"
            " WHERE log_id > ? ORDER BY log_id LIMIT ?"
        )

    def insert_logs_ignoring_known_keys(self, tier: str, rows: int) -> str:
        """Insert ``rows`` log entries (:data:`schema.LOG_INSERT_COLUMNS`), skipping stored keys."""
        raise NotImplementedError

    def insert_log(self, tier: str) -> str:
        table = schema.LOG_TABLES[tier]
        return (
            f"INSERT INTO {table} ({', '.join(schema.LOG_INSERT_COLUMNS)}) "
            f"VALUES ({_marks(len(schema.LOG_INSERT_COLUMNS))})"
        )

    def log_id_by_key(self, tier: str) -> str:
        return f"SELECT log_id FROM {schema.LOG_TABLES[tier]} WHERE log_key = ?"

    def select_logs(
        self,
        tier: str,
        *,
        by_session: bool,
        older: bool,
        since: bool = False,
        level: bool = False,
        order_by: str = "timestamp",
        descending: bool = True,
        limit: bool = False,
        offset: bool = False,
    ) -> str:
        """Log entries filtered by the flagged conditions, ordered, paged.

        Parameters, in order: session_id, older-than cutoff, since cutoff, level,
        then the paging parameters of :meth:`paging`.
        """
        column = schema.LOG_ORDER_SQL[order_by]  # KeyError for anything not whitelisted
        conditions = []
        if by_session:
            conditions.append("session_id = ?")
        if older:
            conditions.append("logged_at < ?")
        if since:
            conditions.append("logged_at >= ?")
        if level:
            conditions.append("log_level = ?")
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        direction = "DESC" if descending else "ASC"
        order = (
            f"{column} {direction}"
            if column == "log_id"
            else (f"{self.order_term(column, direction)}, log_id {direction}")
        )
        columns = ", ".join(schema.LOG_COLUMNS)
        sql = f"SELECT {columns} FROM {schema.LOG_TABLES[tier]}{where} ORDER BY {order}"
        return sql + self.paging(limit=limit, offset=offset)

    def order_term(self, column: str, direction: str) -> str:
        """``column direction`` in an ORDER BY, NULL sorting first (as MySQL, SQLite
        and SQL Server do)."""
        return f"{column} {direction}"

    #: The LIMIT that means "no limit", for an OFFSET without one (SQLite: any negative).
    no_limit = "-1"

    def paging(self, *, limit: bool, offset: bool) -> str:
        """Clause after ORDER BY; parameters: limit, then offset (those flagged)."""
        if limit:
            return " LIMIT ? OFFSET ?" if offset else " LIMIT ?"
        return f" LIMIT {self.no_limit} OFFSET ?" if offset else ""

    def paging_params(self, limit: int | None, offset: int) -> list[int]:
        params = []
        if limit is not None:
            params.append(limit)
        if offset:
            params.append(offset)
        return params

    def existing_log_ids(self, tier: str, count: int) -> str:
        return f"SELECT log_id FROM {schema.LOG_TABLES[tier]} WHERE log_id IN ({_marks(count)})"

    def delete_logs(self, tier: str, count: int) -> str:
        return f"DELETE FROM {schema.LOG_TABLES[tier]} WHERE log_id IN ({_marks(count)})"

    def count_logs(self, tier: str) -> str:
        table = schema.LOG_TABLES[tier]
        return f"SELECT COUNT(*) FROM {table} WHERE log_level = ? AND logged_at >= ?"

    # ----------------------------------------------------------------------- core

    def upsert_heartbeat(self, *, with_count: bool) -> str:
        """Params: site_id, seen_at, and the record count ``with_count`` (else it is kept)."""
        raise NotImplementedError

    def upsert_root_hash(self) -> str:
        """Params: site_id, root_hash, computed_at."""
        raise NotImplementedError

    insert_baseline = "INSERT INTO core_baselines (baseline_hash, created_at) VALUES (?, ?)"

    def newest_baselines(self) -> str:
        """The two newest baseline hashes, newest first."""
        return (
            "SELECT baseline_hash FROM core_baselines"
            " ORDER BY created_at DESC, baseline_id DESC LIMIT 2"
        )

    #: Per (sync bucket, live bucket): site count and reported record count. Params:
    #: has_baseline (1/0), newest, second newest (a space if none), 24 h cutoff,
    #: 35 min cutoff, 24 h cutoff.
    #: Integer division (MySQL's ``/`` returns a decimal).
    int_div = "/"

    @property
    def count_sums(self) -> str:
        """The sum of ``hash_record_count`` as two sums that cannot overflow 64 bits
        (a count may be 2**63 - 1, so even two of them overflow a plain SUM on SQLite and
        SQL Server): of the high and the low 32 bits. The caller adds them exactly."""
        return (
            f"SUM(hash_record_count {self.int_div} 4294967296),"
            " SUM(hash_record_count % 4294967296)"
        )

    @property
    def dashboard_buckets(self) -> str:
        return (
            f"SELECT sync_bucket, live_bucket, COUNT(*), {self.count_sums} FROM ("
            "SELECT CASE"
            " WHEN root_hash IS NULL OR ? = 0 THEN 'sync_unknown'"
            " WHEN root_hash = ? THEN 'sync_current'"
            " WHEN root_hash = ? THEN 'sync_1_behind'"
            " WHEN root_hash_at >= ? THEN 'sync_l24_behind'"
            " ELSE 'sync_g24_behind' END AS sync_bucket,"
            " CASE"
            " WHEN last_heartbeat >= ? THEN 'live_current'"
            " WHEN last_heartbeat >= ? THEN 'live_1_behind'"
            " ELSE 'live_inactive' END AS live_bucket,"
            " hash_record_count"
            " FROM core_sites) buckets "
            "GROUP BY sync_bucket, live_bucket"
        )

    @property
    def record_count(self) -> str:
        return f"SELECT {self.count_sums} FROM core_sites"
    select_sites = (
        "SELECT site_id, last_heartbeat, root_hash, root_hash_at, hash_record_count "
        "FROM core_sites ORDER BY site_id"
    )

    # ------------------------------------------------------------------- pipeline

    pending_updates = (
        "SELECT update_id, site_id, path, requested_at, hash_value, answered_at "
        "FROM pipeline_updates WHERE hash_value IS NULL ORDER BY requested_at, update_id"
    )
    answer_updates = (
        "UPDATE pipeline_updates SET hash_value = ?, answered_at = ? "
        "WHERE path_key = ? AND hash_value IS NULL"
    )
    insert_update = (
        "INSERT INTO pipeline_updates (site_id, path, path_key, requested_at) VALUES (?, ?, ?, ?)"
    )
    official_sites = "SELECT site_id FROM pipeline_sites ORDER BY site_id"
    official_site_exists = "SELECT 1 FROM pipeline_sites WHERE site_id = ?"
    insert_site = "INSERT INTO pipeline_sites (site_id, registered_at) VALUES (?, ?)"
    insert_completion = "INSERT INTO pipeline_completions (site_id, completed_at) VALUES (?, ?)"

    def completions(self, *, one_site: bool) -> str:
        where = " WHERE site_id = ?" if one_site else ""
        return (
            "SELECT site_id, completed_at FROM pipeline_completions"
            f"{where} ORDER BY completed_at, completion_id"
        )

    # ------------------------------------------------------------------ migrations

    #: Every tier's schema steps, each tier's in version order (set by each engine).
    migration_steps: tuple[Migration, ...] = ()

    def migrations(self, tier: str) -> tuple[Migration, ...]:
        """Every schema step of ``tier``, in version order."""
        return tuple(step for step in self.migration_steps if step.tier == tier)

    def create_version_table(self) -> str:
        raise NotImplementedError

    current_version = f"SELECT MAX(version) FROM {schema.VERSION_TABLE} WHERE tier = ?"
    record_version = (
        f"INSERT INTO {schema.VERSION_TABLE} (tier, version, description, applied_at)"
        " VALUES (?, ?, ?, ?)"
    )

    def lock_migrations(self) -> str:
        """Take the migration lock (waits); returns one row whose first value is 1 on
        success. Params: lock name, timeout seconds. Only for ``migration_lock="named"``."""
        raise NotImplementedError

    def unlock_migrations(self) -> str:
        """Release the migration lock. Params: lock name."""
        raise NotImplementedError

    def all_statements(self) -> dict[str, str]:
        """Every statement this dialect can emit, by a descriptive name (for golden tests
        and parser checks)."""
        statements: dict[str, str] = {
            "select_record": self.select_record,
            "upsert_hashes_1": self.upsert_hashes(1),
            "upsert_hashes_3": self.upsert_hashes(3),
            "records_after": self.records_after(),
            "restore_hashes_2": self.restore_hashes(2),
            "update_target": self.update_target,
            "record_exists": self.record_exists,
            "priority_paths": self.priority_paths,
            "orphans": self.orphans(),
            "untracked": self.untracked(),
            "upsert_heartbeat": self.upsert_heartbeat(with_count=False),
            "upsert_heartbeat_count": self.upsert_heartbeat(with_count=True),
            "upsert_root_hash": self.upsert_root_hash(),
            "insert_baseline": self.insert_baseline,
            "newest_baselines": self.newest_baselines(),
            "dashboard_buckets": self.dashboard_buckets,
            "record_count": self.record_count,
            "select_sites": self.select_sites,
            "pending_updates": self.pending_updates,
            "answer_updates": self.answer_updates,
            "insert_update": self.insert_update,
            "official_sites": self.official_sites,
            "official_site_exists": self.official_site_exists,
            "insert_site": self.insert_site,
            "insert_completion": self.insert_completion,
            "completions_all": self.completions(one_site=False),
            "completions_site": self.completions(one_site=True),
            "create_version_table": self.create_version_table(),
            "current_version": self.current_version,
            "record_version": self.record_version,
        }
        if self.migration_lock == "named":
            statements["lock_migrations"] = self.lock_migrations()
            statements["unlock_migrations"] = self.unlock_migrations()
        elif self.lock_in_transaction:
            statements["lock_migrations"] = self.lock_migrations()
        if self.bulk_copy:
            statements["create_staging"] = self.create_staging()
            statements["merge_staged"] = self.merge_staged()
            statements["drop_staging"] = self.drop_staging()
        if self.last_insert_id_sql:
            statements["last_insert_id"] = self.last_insert_id_sql
        for field in SINGLE_FIELDS:
            statements[f"select_field_{field}"] = self.select_field(field)
        for tier in schema.LOG_TABLES:
            statements[f"insert_log_{tier}"] = self.insert_log(tier)
            statements[f"log_id_by_key_{tier}"] = self.log_id_by_key(tier)
            statements[f"existing_log_ids_{tier}"] = self.existing_log_ids(tier, 2)
            statements[f"delete_logs_{tier}"] = self.delete_logs(tier, 2)
            statements[f"count_logs_{tier}"] = self.count_logs(tier)
            statements[f"logs_after_{tier}"] = self.logs_after(tier)
            statements[f"insert_logs_ignoring_{tier}"] = self.insert_logs_ignoring_known_keys(
                tier, 2
            )
            for column in LOG_ORDER_COLUMNS:
                for descending in (False, True):
                    statements[f"select_logs_{tier}_{column}_{descending}"] = self.select_logs(
                        tier,
                        by_session=True,
                        older=True,
                        order_by=column,
                        descending=descending,
                        limit=True,
                        offset=True,
                    )
            statements[f"select_logs_{tier}_plain"] = self.select_logs(
                tier, by_session=False, older=False
            )
            statements[f"select_logs_{tier}_offset_only"] = self.select_logs(
                tier, by_session=False, older=False, offset=True
            )
            statements[f"select_logs_{tier}_since_level"] = self.select_logs(
                tier, by_session=False, older=False, since=True, level=True
            )
        for tier in ("remote", "core", "pipeline"):
            for migration in self.migrations(tier):
                for n, statement in enumerate(migration.statements):
                    statements[f"migration_{tier}_{migration.version}_{n}"] = statement
        return statements
