"""The aiosqlite driver adapter: connections, statements and error mapping for SQLite.

Each connection (an aiosqlite connection: one sqlite3 connection on a thread of its own)
runs in autocommit mode (``isolation_level=None``): a single statement is its own
transaction. Explicit transactions are ``BEGIN IMMEDIATE`` ... ``COMMIT``: taking the
write lock at BEGIN means a transaction never fails half-way for want of it (a deferred
transaction that reads, then writes, can hit SQLITE_BUSY with no way to wait).

File databases use WAL (readers never block the writer, nor it them) with
``synchronous=NORMAL`` (a committed transaction survives a crash of the process; a power
cut may lose the last ones, never corrupt the file) and wait up to ``busy_timeout`` for
another connection's write lock; a statement still locked out after that fails with
:class:`~async_db_client.errors.TransientQueryError`, which the executor retries.

``:memory:`` becomes a named shared-cache in-memory database of this driver's own, kept
alive by an idle anchor connection for the driver's lifetime, so a pooled connection may
be discarded (after a cancellation, say) without taking the data with it. The pool has
exactly one connection, so the shared cache's table locks are never contended.

The driver's :attr:`~AiosqliteDriver.pool_settings` are the tier's, with bulk writes on
one connection always (SQLite has one writer at a time), and for ``:memory:`` exactly one
connection that is never retired, whatever the tier's ``pool`` says.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Sequence
from typing import Any

import aiosqlite

from .. import errors
from ..config import PoolSettings, SQLiteConfig
from .base import ExecResult, Row

__all__ = ["AiosqliteDriver", "sqlite_error_class"]

# Primary result codes (the low byte of an extended code).
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_INTERRUPT = 9
SQLITE_CONSTRAINT = 19
TRANSIENT_CODES = frozenset({SQLITE_BUSY, SQLITE_LOCKED})
#: A memory database must never be retired with its only connection: "forever".
_FOREVER = 10 * 365 * 24 * 3600.0
#: How long a failed open waits for aiosqlite's thread to end.
_THREAD_EXIT_WAIT = 2.0


def sqlite_error_class(exc: BaseException) -> type[errors.AsyncDBClientError]:
    """Which of this library's errors a sqlite3 / aiosqlite exception means."""
    if isinstance(exc, sqlite3.IntegrityError):
        return errors.IntegrityError
    if isinstance(exc, ValueError) or (
        isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc).lower()
    ):
        # aiosqlite: "Connection closed"; sqlite3: closed database
        return errors.ConnectionLostError
    code = _code(exc)
    if code in TRANSIENT_CODES or "database is locked" in str(exc):
        return errors.TransientQueryError
    if code == SQLITE_INTERRUPT:
        return errors.QueryTimeoutError
    if code == SQLITE_CONSTRAINT:
        return errors.IntegrityError
    return errors.QueryError


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _message(exc: BaseException) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    text = str(exc) or type(exc).__name__
    return f"({name}) {text}" if name else text


def _pool_settings(config: SQLiteConfig) -> PoolSettings:
    """The tier's pool settings, with what SQLite forces."""
    # One writer at a time: a bulk write on several connections would only queue them
    # on the write lock, so bulk writes use one.
    forced: dict[str, object] = {"bulk_connections": 1}
    if config.in_memory:
        # The one connection of the shared in-memory database (see the module docstring).
        forced |= {"min_size": 1, "max_size": 1, "max_lifetime": _FOREVER, "max_idle": _FOREVER}
    return config.pool.model_copy(update=forced)


class AiosqliteDriver:
    """Adapts aiosqlite to :class:`~async_db_client.drivers.base.Driver`."""

    # BEGIN IMMEDIATE takes the database's one write lock: other connections' writes
    # wait for the transaction to end.
    transactions_lock_database = True

    def __init__(self, config: SQLiteConfig) -> None:
        self.config = config
        self.description = config.describe()
        self.pool_settings = _pool_settings(config)
        self._memory = config.in_memory
        if self._memory:
            # A name of our own: two clients' ":memory:" databases stay apart.
            self._target = f"file:async_db_client-{uuid.uuid4().hex}?mode=memory&cache=shared"
        else:
            self._target = config.resolved_path()
        self._anchor: sqlite3.Connection | None = None

    @classmethod
    def from_config(cls, config: SQLiteConfig) -> AiosqliteDriver:
        return cls(config)

    def __repr__(self) -> str:
        return f"AiosqliteDriver({self.description})"

    # ------------------------------------------------------------------ connector

    def _keep_memory_alive(self) -> None:
        # A plain sqlite3 connection that never runs a statement: no thread, no I/O. The
        # shared in-memory database lives while it is open; it closes with the driver.
        if self._anchor is None:
            anchor = sqlite3.connect(self._target, uri=True, check_same_thread=False)
            self._anchor = anchor
            weakref.finalize(self, anchor.close)

    async def connect(self, timeout: float) -> aiosqlite.Connection:
        if self._memory:
            self._keep_memory_alive()
        conn = aiosqlite.connect(
            self._target,
            isolation_level=None,  # autocommit; transactions are explicit
            timeout=self.config.busy_timeout,  # sqlite3's busy timeout
            uri=self._memory,
        )
        thread = _worker_thread(conn)
        if thread is not None:
            # aiosqlite's thread is not a daemon: a client its program never closed would
            # hold up interpreter exit for good. Committed work is on disk either way.
            thread.daemon = True
        try:
            async with asyncio.timeout(timeout):
                await conn
                await self._configure(conn)
        except BaseException as exc:
            await _close_quietly(conn)
            if isinstance(exc, sqlite3.Error | OSError):
                reason = _message(exc)
                raise errors.DBConnectionError(
                    f"cannot open {self.description}: {reason}", reason=reason
                ) from exc
            raise
        return conn

    async def _configure(self, conn: aiosqlite.Connection) -> None:
        if self._memory:
            return
        # WAL is a property of the file: the first connection switches it, for good.
        await conn.execute_fetchall("PRAGMA journal_mode=WAL")
        await _run(conn, "PRAGMA synchronous=NORMAL")

    async def ping(self, conn: aiosqlite.Connection) -> None:
        await conn.execute_fetchall("SELECT 1")

    def needs_reset(self, conn: aiosqlite.Connection) -> bool:
        try:
            return bool(conn.in_transaction)
        except (ValueError, sqlite3.ProgrammingError):
            return True  # closed: reset() reports it and the pool drops the connection

    async def reset(self, conn: aiosqlite.Connection) -> None:
        try:
            in_transaction = conn.in_transaction
        except (ValueError, sqlite3.ProgrammingError):
            raise errors.ConnectionLostError("connection closed") from None
        if in_transaction:
            await _run(conn, "ROLLBACK")

    async def close(self, conn: aiosqlite.Connection) -> None:
        await conn.close()

    def abort(self, conn: aiosqlite.Connection) -> None:
        # Queues "close the connection, end the thread" behind whatever is running.
        conn.stop()

    async def dispose(self) -> None:
        """The pool is closed: let a ``:memory:`` database go with it."""
        if self._anchor is not None:
            anchor, self._anchor = self._anchor, None
            anchor.close()

    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        # A file locked by another process switching it to WAL; "cannot open" is final.
        cause = exc.__cause__ or exc
        return isinstance(cause, sqlite3.Error) and _code(cause) in TRANSIENT_CODES

    # ---------------------------------------------------------------- statements

    async def execute(
        self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any]
    ) -> ExecResult:
        async with conn.execute(sql, params) as cursor:
            return ExecResult(rowcount=max(cursor.rowcount, 0), lastrowid=cursor.lastrowid)

    async def fetchall(
        self, conn: aiosqlite.Connection, sql: str, params: Sequence[Any]
    ) -> list[Row]:
        return [tuple(row) for row in await conn.execute_fetchall(sql, params)]

    async def begin(self, conn: aiosqlite.Connection) -> None:
        await _run(conn, "BEGIN IMMEDIATE")

    async def commit(self, conn: aiosqlite.Connection) -> None:
        await _run(conn, "COMMIT")

    async def rollback(self, conn: aiosqlite.Connection) -> None:
        # Some errors (SQLITE_FULL, say) end the transaction themselves.
        if conn.in_transaction:
            await _run(conn, "ROLLBACK")

    def translate(self, exc: Exception) -> errors.AsyncDBClientError:
        if isinstance(exc, errors.AsyncDBClientError):
            return exc
        error_class = sqlite_error_class(exc)
        message = f"{self.description}: {_message(exc)}"
        if issubclass(error_class, errors.QueryError):
            return error_class(message, code=_code(exc))
        return error_class(message)


async def _run(conn: aiosqlite.Connection, sql: str) -> None:
    async with conn.execute(sql):
        pass


async def _close_quietly(conn: aiosqlite.Connection) -> None:
    """Close ``conn`` after a failed open, and wait until its thread has ended.

    When opening fails, aiosqlite queues the thread's shutdown itself without waiting
    for it; if the event loop closed first, the thread would die reporting to a closed
    loop (a traceback on stderr). So: wait for the thread, briefly.
    """
    try:
        await conn.close()
    except Exception:
        conn.stop()
    thread = _worker_thread(conn)
    if thread is not None and thread.is_alive():
        await asyncio.to_thread(thread.join, _THREAD_EXIT_WAIT)


def _worker_thread(conn: aiosqlite.Connection) -> threading.Thread | None:
    # aiosqlite 0.21+ keeps its thread in ``_thread``; 0.20's connection is the thread.
    thread = getattr(conn, "_thread", conn)
    return thread if isinstance(thread, threading.Thread) else None
