"""The names every engine's schema shares: tables, and columns in parameter order.

Dialects build their statements from these (``schema.UPSERT_COLUMNS`` ...), so the order
of a statement's parameters is written once, here, for every engine. Identifiers in SQL
only ever come from this module and the whitelists of :mod:`async_db_client.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..validation import LOG_ORDER_COLUMNS

__all__ = [
    "HASH_COLUMNS",
    "HASH_RECORDS",
    "LOG_COLUMNS",
    "LOG_INSERT_COLUMNS",
    "LOG_ORDER_SQL",
    "LOG_TABLES",
    "RESTORE_COLUMNS",
    "TABLES",
    "UPSERT_COLUMNS",
    "VERSION",
    "VERSION_TABLE",
    "Column",
    "Table",
    "column_sql",
    "create_table",
    "indexes",
]

#: Columns of a hash record as selected, in HashRecord field order.
HASH_COLUMNS = (
    "path",
    "current_hash",
    "prev_hash",
    "current_dtg_first",
    "current_dtg_latest",
    "prev_dtg_latest",
    "dirs",
    "files",
    "links",
    "target_hash",
    "session_id",
)

# ------------------------------------------------------------------ declarations
# The tables, as the engines that build their DDL from a declaration (PostgreSQL, SQLite)
# create them, each naming the type of each kind of column; the column lists below, in
# parameter order, come from the same declarations.


class Column(NamedTuple):
    """One column: its name; its kind (``text``, ``time``, ``bigint``, ``integer``,
    ``json``, or ``id``: an identity primary key, which says neither NULL nor NOT NULL);
    NOT NULL or NULL; and what follows (a default)."""

    name: str
    kind: str
    required: bool = False
    default: str = ""


class Table(NamedTuple):
    """One table: its columns in order, its primary key (one column: a clause of that
    column; several: a table constraint), the column whose values are unique besides
    (the constraint ``uq_<table>_key``), and its indexes as (name suffix, columns)."""

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique: str = ""
    indexes: tuple[tuple[str, str], ...] = ()


HASH_RECORDS = Table(
    "hash_records",
    (
        Column("path_key", "text", True),
        Column("path", "text", True),
        Column("parent_key", "text"),
        Column("name", "text"),
        Column("current_hash", "text", True),
        Column("current_dtg_first", "bigint", True),
        Column("current_dtg_latest", "bigint", True),
        Column("prev_hash", "text"),
        Column("prev_dtg_latest", "bigint"),
        Column("dirs", "json", True),
        Column("files", "json", True),
        Column("links", "json", True),
        Column("target_hash", "text"),
        Column("session_id", "text"),
    ),
    primary_key=("path_key",),
    indexes=(("parent", "parent_key"), ("target", "target_hash")),
)


_LOG_COLUMNS = (
    Column("log_id", "id"),
    Column("log_key", "text", True),
    Column("site_id", "text"),
    Column("log_level", "text", True),
    Column("logged_at", "time", True),
    Column("session_id", "text"),
    Column("summary_message", "text", True),
    Column("detailed_message", "text"),
)


def _log_table(name: str) -> Table:
    return Table(
        name,
        _LOG_COLUMNS,
        unique="log_key",
        indexes=(
            ("time", "logged_at"),
            ("session", "session_id, logged_at"),
            ("level", "log_level, logged_at"),
        ),
    )


#: Columns written when restoring a complete record verbatim, in parameter order.
RESTORE_COLUMNS = tuple(column.name for column in HASH_RECORDS.columns)
#: Columns written by the upsert, in parameter order: all but the previous hash's.
UPSERT_COLUMNS = tuple(name for name in RESTORE_COLUMNS if not name.startswith("prev_"))
LOG_COLUMNS = tuple(column.name for column in _LOG_COLUMNS if column.name != "log_key")
LOG_INSERT_COLUMNS = tuple(column.name for column in _LOG_COLUMNS if column.kind != "id")
#: The log tables, by tier; the only table names that vary in statements.
LOG_TABLES = {"remote": "remote_logs", "core": "core_logs"}
#: get_logs field -> column (``timestamp`` is a reserved word in several engines).
LOG_ORDER_SQL = {name: ("logged_at" if name == "timestamp" else name) for name in LOG_ORDER_COLUMNS}
VERSION_TABLE = "async_db_client_schema"


#: Each tier's first schema step: (tier, version, description, tables in order).
TABLES: tuple[tuple[str, int, str, tuple[Table, ...]], ...] = (
    ("remote", 1, "hash records and remote logs", (HASH_RECORDS, _log_table("remote_logs"))),
    (
        "core",
        1,
        "sites, baselines and central logs",
        (
            Table(
                "core_sites",
                (
                    Column("site_id", "text", True),
                    Column("last_heartbeat", "time"),
                    Column("root_hash", "text"),
                    Column("root_hash_at", "time"),
                    Column("hash_record_count", "bigint", True, " DEFAULT 0"),
                ),
                primary_key=("site_id",),
            ),
            Table(
                "core_baselines",
                (
                    Column("baseline_id", "id"),
                    Column("baseline_hash", "text", True),
                    Column("created_at", "time", True),
                ),
                indexes=(("created", "created_at, baseline_id"),),
            ),
            _log_table("core_logs"),
        ),
    ),
    (
        "pipeline",
        1,
        "update requests, official sites, completions",
        (
            Table(
                "pipeline_updates",
                (
                    Column("update_id", "id"),
                    Column("site_id", "text"),
                    Column("path", "text", True),
                    Column("path_key", "text", True),
                    Column("requested_at", "time", True),
                    Column("hash_value", "text"),
                    Column("answered_at", "time"),
                ),
                indexes=(("path", "path_key, hash_value"), ("pending", "hash_value, requested_at")),
            ),
            Table(
                "pipeline_sites",
                (Column("site_id", "text", True), Column("registered_at", "time", True)),
                primary_key=("site_id",),
            ),
            Table(
                "pipeline_completions",
                (
                    Column("completion_id", "id"),
                    Column("site_id", "text", True),
                    Column("completed_at", "time", True),
                ),
                indexes=(("site", "site_id, completed_at"),),
            ),
        ),
    ),
)
#: The migrations' own table, :data:`VERSION_TABLE`.
VERSION = Table(
    VERSION_TABLE,
    (
        Column("tier", "text", True),
        Column("version", "integer", True),
        Column("description", "text", True),
        Column("applied_at", "time", True),
    ),
    primary_key=("tier", "version"),
)


def column_sql(column: Column, types: Mapping[str, str]) -> str:
    """``name type NOT NULL`` (or ``NULL``), then the default, with ``types`` by kind."""
    nulls = "" if column.kind == "id" else " NOT NULL" if column.required else " NULL"
    return f"{column.name} {types[column.kind]}{nulls}{column.default}"


def create_table(
    table: Table, types: Mapping[str, str], *, unique_constraint: bool
) -> tuple[str, ...]:
    """``CREATE TABLE`` for ``table`` with ``types`` by kind, then its indexes.
    ``unique_constraint``: the unique column as a named table constraint (PostgreSQL),
    not as a clause of the column (SQLite)."""
    key = table.primary_key[0] if len(table.primary_key) == 1 else ""
    parts = []
    for column in table.columns:
        part = column_sql(column, types)
        if column.name == key:
            part += " PRIMARY KEY"
        if column.name == table.unique and not unique_constraint:
            part += " UNIQUE"
        parts.append(part)
    if len(table.primary_key) > 1:
        parts.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
    if table.unique and unique_constraint:
        parts.append(f"CONSTRAINT uq_{table.name}_key UNIQUE ({table.unique})")
    return (
        f"CREATE TABLE IF NOT EXISTS {table.name} (" + ",".join(f" {p}" for p in parts) + ")",
        *indexes(table),
    )


def indexes(table: Table) -> tuple[str, ...]:
    """``CREATE INDEX`` for each of ``table``'s indexes."""
    return tuple(
        f"CREATE INDEX IF NOT EXISTS idx_{table.name}_{suffix} ON {table.name} ({columns})"
        for suffix, columns in table.indexes
    )
