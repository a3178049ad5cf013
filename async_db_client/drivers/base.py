"""The seam between the library and a database driver: what a driver must implement.

Everything above a driver (pool, executor, repositories) talks to it through
:class:`Driver` only, and never imports a driver package. A driver module in this package
adapts one async driver (aiomysql, aioodbc, aiosqlite) to this protocol; the registry in
:mod:`async_db_client.drivers` picks and imports it. The server drivers share
:class:`ServerDriver`, the part that their tier's config alone decides.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

from ..config import PoolSettings
from ..errors import AsyncDBClientError
from ..pool import Connector

__all__ = ["Driver", "ExecResult", "Params", "Row", "ServerDriver"]

C = TypeVar("C")
#: A result row: the columns in the order of the statement's select list.
Row = tuple[Any, ...]
#: A statement's parameters, one per ``?`` placeholder.
Params = Sequence[Any]


@dataclass(frozen=True)
class ExecResult:
    """What a write statement reports: affected rows and, if the driver knows, the new id."""

    rowcount: int
    lastrowid: int | None = None


class Driver(Connector[C], Protocol[C]):
    """A driver adapter: the pool's :class:`~async_db_client.pool.Connector` plus running
    statements. ``C`` is the driver's raw connection type.

    A driver class implements a ``from_config(config)`` classmethod, which builds it from
    its tier's config (see :mod:`async_db_client.drivers`), and:

    * ``description``: where it connects, for logs and errors (never a password);
    * ``transactions_lock_database``: True if an open transaction makes every other
      connection's writes wait (SQLite's single writer), so a call from inside a
      transaction must not use another connection of the same database;
    * ``pool_settings``: the settings its pool must use (the tier's ``pool``, or what the
      engine forces: SQLite's single writer, an in-memory database's one connection);
    * **connect** (``connect``): open a connection, in autocommit mode, within the
      timeout; raise this library's errors (:class:`~async_db_client.errors.DBConnectionError`,
      its message without the password) when it cannot;
    * **statements** (``execute``, ``fetchall``): run one statement with ``qmark`` style
      parameters (``?``; a driver wanting another style converts them) and read every
      row, so no cursor is left open on the connection;
    * **transactions** (``begin``, ``commit``, ``rollback``): an explicit transaction on
      the connection, autocommit again after it ends;
    * **health** (``ping``, ``needs_reset``/``reset``): ``ping`` raises if the connection
      is unusable; ``needs_reset`` says, without I/O, whether ``reset`` must roll back
      before the connection is reused;
    * **closing** (``close``, ``abort``, ``dispose``): ``close`` politely (may do I/O);
      ``abort`` at once and without I/O (it may cancel what runs and queue the closing,
      never await it); ``dispose`` frees
      what the driver itself holds (threads, an in-memory database) once its pool closed;
    * **classifying errors** (``translate``, ``is_retryable_connect_error``): statement
      methods raise the driver's own exceptions and ``translate`` maps them to this
      library's (ConnectionLostError for a dead connection, TransientQueryError for
      deadlocks and lock waits, IntegrityError, QueryTimeoutError, QueryError), which
      decide what the executor retries and what the pool discards;
      ``is_retryable_connect_error`` says whether a failed connect may succeed later.
    """

    transactions_lock_database: bool

    @property
    def pool_settings(self) -> PoolSettings:
        """The settings of this driver's pool (and of the executor's retries)."""
        ...

    async def execute(self, conn: C, sql: str, params: Params) -> ExecResult: ...

    async def fetchall(self, conn: C, sql: str, params: Params) -> list[Row]: ...

    async def begin(self, conn: C) -> None: ...

    async def commit(self, conn: C) -> None: ...

    async def rollback(self, conn: C) -> None: ...

    def translate(self, exc: Exception) -> AsyncDBClientError:
        """This library's exception for a driver exception (ConnectionLostError for a
        dead connection, TransientQueryError for deadlocks, IntegrityError, ...)."""
        ...


class ServerConfig(Protocol):
    """What :class:`ServerDriver` reads of a server tier's config."""

    @property
    def pool(self) -> PoolSettings: ...

    def describe(self) -> str: ...


ConfigT = TypeVar("ConfigT", bound=ServerConfig)


class ServerDriver(Generic[ConfigT]):
    """The part of a :class:`Driver` for a database server (asyncpg, aiomysql, asyncmy)
    that its tier's config alone decides: ``from_config``, ``description`` (never the
    password, nor in the repr), the tier's ``pool_settings`` unchanged, and the server's
    row locks. A subclass adds its TLS settings to ``__init__`` and the calls."""

    # Row locks: other connections wait only for the rows a transaction wrote.
    transactions_lock_database = False
    #: The server's version once a connection was made, for telemetry (``15.4``;
    #: ``10.11.6-MariaDB``, by which it tells MariaDB from MySQL).
    server_version: str | None = None

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.description = config.describe()
        self.pool_settings: PoolSettings = config.pool

    @classmethod
    def from_config(cls, config: ConfigT) -> Self:
        return cls(config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"  # never the password


def tls_failure(exc: BaseException) -> str | None:
    """The TLS error behind a failed connect, if one is (a handshake that failed for
    good: certificate, host name, protocol; not a connection cut during it), whatever
    the driver wrapped it in: such a failure is final, never retried."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLError) and not isinstance(
            error, ssl.SSLEOFError | ssl.SSLZeroReturnError | ssl.SSLSyscallError
        ):
            return str(error)
        error = error.__cause__ or error.__context__
    return None
