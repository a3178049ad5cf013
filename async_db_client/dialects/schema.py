"""The names every engine's schema shares: tables, and columns in parameter order.

Dialects build their statements from these (``schema.UPSERT_COLUMNS`` ...), so the order
of a statement's parameters is written once, here, for every engine. Identifiers in SQL
only ever come from this module and the whitelists of :mod:`async_db_client.validation`.
"""

from __future__ import annotations

from ..validation import LOG_ORDER_COLUMNS

__all__ = [
    "HASH_COLUMNS",
    "LOG_COLUMNS",
    "LOG_INSERT_COLUMNS",
    "LOG_ORDER_SQL",
    "LOG_TABLES",
    "RESTORE_COLUMNS",
    "UPSERT_COLUMNS",
    "VERSION_TABLE",
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
#: Columns written by the upsert, in parameter order.
UPSERT_COLUMNS = (
    "path_key",
    "path",
    "parent_key",
    "name",
    "current_hash",
    "current_dtg_first",
    "current_dtg_latest",
    "dirs",
    "files",
    "links",
    "target_hash",
    "session_id",
)
#: Columns written when restoring a complete record verbatim, in parameter order.
RESTORE_COLUMNS = (
    "path_key",
    "path",
    "parent_key",
    "name",
    "current_hash",
    "current_dtg_first",
    "current_dtg_latest",
    "prev_hash",
    "prev_dtg_latest",
    "dirs",
    "files",
    "links",
    "target_hash",
    "session_id",
)
LOG_COLUMNS = (
    "log_id",
    "site_id",
    "log_level",
    "logged_at",
    "session_id",
    "summary_message",
    "detailed_message",
)
LOG_INSERT_COLUMNS = (
    "log_key",
    "site_id",
    "log_level",
    "logged_at",
    "session_id",
    "summary_message",
    "detailed_message",
)
#: The log tables, by tier; the only table names that vary in statements.
LOG_TABLES = {"remote": "remote_logs", "core": "core_logs"}
#: get_logs field -> column (``timestamp`` is a reserved word in several engines).
LOG_ORDER_SQL = {name: ("logged_at" if name == "timestamp" else name) for name in LOG_ORDER_COLUMNS}
VERSION_TABLE = "async_db_client_schema"
