"""What every SQL store shares: a dialect, a runner, the schema step, transactions, logs.

A SQL store turns a tier's primitives into statements of its dialect (SQL text only,
see :mod:`async_db_client.dialects`) and runs them through an executor (pooled
connections, retries of idempotent work; see :mod:`async_db_client.executor`), so one
store class per tier serves every engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar, Self

from ...dialects.base import Dialect
from ...errors import IntegrityError, UsageError
from ...executor import Executor, Runner, Session, TransactionRunner
from ...migrations import check_schema, migrate
from ...models import LogEntry, LogLevel
from ...telemetry.target import DBTarget
from ...tiers.base import Tier

__all__ = ["SQLStore", "insert_returning_id", "schema_step", "statement_chunks"]


def statement_chunks(
    rows: Sequence[tuple[Any, ...]], max_rows: int, max_bytes: int
) -> Iterator[Sequence[tuple[Any, ...]]]:
    """Consecutive runs of ``rows`` for multi-row statements: at most ``max_rows`` rows,
    and no more than ``max_bytes`` of SQL by a safe estimate (4 bytes a character, the
    most a character takes once encoded and escaped), unless one row alone is larger.
    A statement must fit the server's packet limit whatever the rows hold."""
    start, size = 0, 0
    for end, row in enumerate(rows):
        row_size = 200 + 4 * sum(len(value) for value in row if isinstance(value, str))
        if end > start and (end - start >= max_rows or size + row_size > max_bytes):
            yield rows[start:end]
            start, size = end, 0
        size += row_size
    if start < len(rows):
        yield rows[start:]


def schema_step(dialect: Dialect, tier: str, *, auto_migrate: bool) -> Any:
    """The executor's one-time preparation: migrate the tier, or check it is migrated."""

    async def prepare(session: Session) -> None:
        if auto_migrate:
            await migrate(session, dialect, tier)
        else:
            await check_schema(session, dialect, tier)

    return prepare


async def insert_returning_id(
    session: Session, dialect: Dialect, sql: str, params: Sequence[Any]
) -> int:
    """Run an INSERT and return the new row's id, however the engine reports it."""
    if dialect.insert_returns_id:
        row = await session.fetchone(sql, params)
        if row is None:
            raise IntegrityError("the insert returned no id")
        return int(row[0])
    result = await session.execute(sql, params)
    if result.lastrowid:
        return result.lastrowid
    assert dialect.last_insert_id_sql is not None
    row = await session.fetchone(dialect.last_insert_id_sql)
    if row is None or row[0] is None:
        raise IntegrityError("the database reported no id for the insert")
    return int(row[0])


class SQLStore:
    """Base of the SQL stores of every tier.

    ``executor`` is the tier's :class:`Executor` (retries, schema step); ``runner`` is
    what statements go through: the executor itself, or a transaction's runner.
    """

    tier: ClassVar[Tier]

    def __init__(
        self,
        dialect: Dialect,
        executor: Executor,
        *,
        runner: Runner | None = None,
        target: DBTarget | None = None,
    ) -> None:
        self.dialect = dialect
        self.executor = executor
        #: What telemetry reports of the database (system, namespace, server).
        self.target = target
        self._db: Runner = runner or executor
        self._in_transaction = runner is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dialect.name}, {self.executor.pool.name})"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        if self._in_transaction:
            raise UsageError("transactions do not nest")
        async with self.executor.transaction() as runner:
            yield type(self)(self.dialect, self.executor, runner=runner, target=self.target)

    @property
    def transaction_runner(self) -> TransactionRunner | None:
        """The transaction this store's calls run in; None outside one."""
        return self._db if isinstance(self._db, TransactionRunner) else None

    async def ping(self) -> None:
        # Through the runner: inside a transaction, over its connection (another one
        # might wait for it); the executor pings over a transaction the caller holds.
        await self._db.ping()

    async def migrate(self) -> int:
        """Apply this tier's pending migrations now; the schema version reached."""
        version = await self.executor.run(
            lambda s: migrate(s, self.dialect, self.tier), skip_prepare=True
        )
        self.executor.mark_prepared()
        return version

    async def aclose(self) -> None:
        return None  # the pools belong to the client's pool manager

    # The remote and core tiers keep logs; the same tables' shape and statements.
    async def insert_log(self, entry: LogEntry, key: str) -> int:
        d = self.dialect
        assert entry.timestamp is not None
        params = (
            key,
            entry.site_id,
            entry.log_level.value,
            d.to_db_time(entry.timestamp),
            entry.session_id,
            entry.summary_message,
            entry.detailed_message,
        )

        async def work(session: Session) -> int:
            try:
                return await insert_returning_id(session, d, d.insert_log(self.tier), params)
            except IntegrityError:
                # The key exists: an earlier attempt (whose reply was lost) stored it.
                row = await session.fetchone(d.log_id_by_key(self.tier), (key,))
                if row is None:
                    raise
                return int(row[0])

        return await self._db.run(work)

    async def restore_logs(self, entries: list[tuple[LogEntry, str]]) -> None:
        d = self.dialect
        rows = [
            (
                key,
                entry.site_id,
                entry.log_level.value,
                d.to_db_time(entry.timestamp) if entry.timestamp else None,
                entry.session_id,
                entry.summary_message,
                entry.detailed_message,
            )
            for entry, key in entries
        ]
        per_statement = max(1, min(500, d.max_params // 7))
        for chunk in statement_chunks(rows, per_statement, d.max_statement_bytes):
            await self._db.execute(
                d.insert_logs_ignoring_known_keys(self.tier, len(chunk)),
                [value for row in chunk for value in row],
            )

    def _log_entry(self, row: Sequence[Any]) -> LogEntry:
        return LogEntry.trusted(
            log_id=int(row[0]),
            site_id=row[1],
            log_level=LogLevel(row[2]),
            timestamp=self.dialect.from_db_time(row[3]),
            session_id=row[4],
            summary_message=row[5],
            detailed_message=row[6],
        )
