"""What PostgreSQL and SQLite share: ``INSERT ... ON CONFLICT`` upserts over multi-row
``VALUES``, and DDL built from the declarations of :mod:`.schema`.

The two spell the same statements a little differently (``ON CONFLICT (key)`` and
``EXCLUDED`` on PostgreSQL, ``ON CONFLICT(key)`` and ``excluded`` on SQLite) and name
their column types each their own way; the statements themselves are written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import schema
from .base import Dialect, Migration

__all__ = ["OnConflictDialect"]


class OnConflictDialect(Dialect):
    """A dialect whose upserts are ``INSERT ... ON CONFLICT ... DO UPDATE``."""

    #: The conflict clause, formatted with the key column.
    on_conflict = "ON CONFLICT ({})"
    #: The name of the row proposed for insertion.
    excluded = "EXCLUDED"
    #: The engine's type of each kind of :class:`schema.Column`.
    column_types: Mapping[str, str] = {}
    #: The unique column as a named table constraint, not a column clause.
    unique_constraint = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.migration_steps = cls.build_migrations()

    @classmethod
    def build_migrations(cls) -> tuple[Migration, ...]:
        """Every tier's steps, from :data:`schema.TABLES`."""
        return tuple(
            Migration(
                tier,
                version,
                description,
                tuple(statement for table in tables for statement in cls.create_table(table)),
            )
            for tier, version, description, tables in schema.TABLES
        )

    @classmethod
    def create_table(cls, table: schema.Table) -> tuple[str, ...]:
        """``CREATE TABLE`` for ``table``, then its indexes."""
        return schema.create_table(table, cls.column_types, unique_constraint=cls.unique_constraint)

    def insert_values(self, table: str, columns: tuple[str, ...], rows: int) -> str:
        """``INSERT INTO table (columns) VALUES (?, ...), ...`` for ``rows`` rows."""
        row = f"({', '.join('?' * len(columns))})"
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * rows)

    def upsert(self, table: str, columns: tuple[str, ...], key: str, rows: int = 1) -> str:
        """Insert ``rows`` rows, or overwrite every other column of the row with ``key``."""
        updates = ", ".join(f"{c} = {self.excluded}.{c}" for c in columns if c != key)
        return (
            self.insert_values(table, columns, rows)
            + f" {self.on_conflict.format(key)} DO UPDATE SET {updates}"
        )

    def restore_hashes(self, rows: int) -> str:
        return self.upsert("hash_records", schema.RESTORE_COLUMNS, "path_key", rows)

    def insert_logs_ignoring_known_keys(self, tier: str, rows: int) -> str:
        return (
            self.insert_values(schema.LOG_TABLES[tier], schema.LOG_INSERT_COLUMNS, rows)
            + f" {self.on_conflict.format('log_key')} DO NOTHING"
        )

    def upsert_heartbeat(self, *, with_count: bool) -> str:
        count = ("hash_record_count",) if with_count else ()
        return self.upsert("core_sites", ("site_id", "last_heartbeat", *count), "site_id")

    def upsert_root_hash(self) -> str:
        return self.upsert("core_sites", ("site_id", "root_hash", "root_hash_at"), "site_id")

    def create_version_table(self) -> str:
        return self.create_table(schema.VERSION)[0]
