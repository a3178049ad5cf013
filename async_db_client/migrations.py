"""Schema migrations: versioned steps per tier, applied in order, recorded, locked.

Each tier's steps (from its dialect) are applied in version order and recorded in the
``async_db_client_schema`` table. The whole run is exclusive, so two processes starting
at once apply each step exactly once. How is the dialect's choice
(:attr:`~async_db_client.dialects.base.Dialect.migration_lock`): a database-wide named
lock (MySQL's ``GET_LOCK``), or one write transaction around the whole run (SQLite, whose
DDL is transactional and which has no named locks: the second process waits for the
write lock, then finds the steps recorded; PostgreSQL, whose DDL is transactional too,
takes a transaction-scoped advisory lock first, ``pg_advisory_xact_lock`` keyed by the
database, bounded by ``lock_timeout``). Steps are written to be idempotent
(``IF NOT EXISTS``), so a run interrupted half-way can simply run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from .dialects.base import Dialect
from .errors import MigrationError, QueryError
from .executor import Session

__all__ = ["LOCK_TIMEOUT_S", "check_schema", "latest_version", "migrate"]

logger = logging.getLogger("async_db_client")

LOCK_TIMEOUT_S = 60
LOCK_NAME = "async_db_client.migrate"


def latest_version(dialect: Dialect, tier: str) -> int:
    """The newest schema version this library knows for ``tier``."""
    return max((m.version for m in dialect.migrations(tier)), default=0)


async def current_version(session: Session, dialect: Dialect, tier: str) -> int:
    row = await session.fetchone(dialect.current_version, (tier,))
    return int(row[0]) if row and row[0] is not None else 0


@contextlib.asynccontextmanager
async def _exclusive(session: Session, dialect: Dialect) -> AsyncIterator[None]:
    """Hold the migration lock of ``dialect``'s kind for the body."""
    if dialect.migration_lock == "transaction":
        await session.begin()
        try:
            if dialect.lock_in_transaction:
                row = await session.fetchone(
                    dialect.lock_migrations(), (LOCK_NAME, LOCK_TIMEOUT_S)
                )
                if not row or row[0] != 1:
                    raise MigrationError("could not take the migration lock")
            yield
        except BaseException:
            if not session.broken:
                with contextlib.suppress(Exception):
                    await asyncio.shield(session.rollback())
            raise
        await session.commit()
        return
    row = await session.fetchone(dialect.lock_migrations(), (LOCK_NAME, LOCK_TIMEOUT_S))
    if not row or row[0] != 1:
        raise MigrationError(
            f"could not take the migration lock within {LOCK_TIMEOUT_S}s "
            "(another process is migrating?)"
        )
    try:
        yield
    finally:
        if not session.broken:
            await session.fetchone(dialect.unlock_migrations(), (LOCK_NAME,))


async def migrate(session: Session, dialect: Dialect, tier: str) -> int:
    """Apply ``tier``'s pending migrations; return the schema version reached.

    A schema already at the latest version is only read: no lock and no DDL, so a
    runtime user with nothing but SELECT/INSERT/UPDATE/DELETE on the tables can keep
    ``auto_migrate`` on once an admin has migrated.
    """
    latest = latest_version(dialect, tier)
    try:
        if await current_version(session, dialect, tier) == latest:
            return latest
    except QueryError:
        pass  # no version table yet: create it below
    async with _exclusive(session, dialect):
        await session.execute(dialect.create_version_table())
        version = await current_version(session, dialect, tier)
        if version > latest:
            raise MigrationError(
                f"the {tier} schema is at version {version}, newer than this library knows "
                f"({latest}); upgrade async_db_client"
            )
        for step in dialect.migrations(tier):
            if step.version <= version:
                continue
            logger.info(
                "migrating %s schema to version %d: %s", tier, step.version, step.description
            )
            for statement in step.statements:
                await session.execute(statement)
            await session.execute(
                dialect.record_version,
                (tier, step.version, step.description, dialect.to_db_time(datetime.now(UTC))),
            )
            version = step.version
    return version


async def check_schema(session: Session, dialect: Dialect, tier: str) -> int:
    """Raise :class:`MigrationError` unless ``tier``'s schema is fully migrated."""
    latest = latest_version(dialect, tier)
    try:
        version = await current_version(session, dialect, tier)
    except QueryError as exc:
        raise MigrationError(
            f"the {tier} schema is missing (auto_migrate is off): run `migrate` as a user "
            f"allowed to create tables ({type(exc).__name__}: {exc})"
        ) from exc
    if version != latest:
        raise MigrationError(
            f"the {tier} schema is at version {version}, this library needs {latest}: "
            "run `migrate` (auto_migrate is off)"
        )
    return version
