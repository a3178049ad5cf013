"""The aioodbc driver adapter: SQL Server (and any ODBC source) on the shared pool.

:meth:`AioodbcDriver.from_config` serves SQL Server (an ``MSSQLConfig``) and MySQL/MariaDB
through its ODBC driver (a ``MySQLConfig`` with ``driver: odbc``). The connection string,
password included, is built by a callable at each connect and never kept.

pyodbc calls block, so aioodbc runs them in threads. Each pool gets its own
:class:`~concurrent.futures.ThreadPoolExecutor` of ``max_size + 1`` workers (one per
connection, plus a spare so a statement can be cancelled while its worker is busy),
shut down when the pool closes. A whole statement (execute, fetch, close the cursor) runs
in one worker call, so a cancelled task never leaves a half-read cursor behind.

Connections run in autocommit mode; an explicit transaction turns it off and back on.
The query timeout is set on the connection (``SQL_ATTR_QUERY_TIMEOUT``), so the driver
cancels a statement that runs too long on the server side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ..config import MSSQLConfig, MySQLConfig, PoolSettings
from ..errors import (
    AsyncDBClientError,
    ConnectionLostError,
    DBConnectionError,
    DriverNotInstalledError,
    IntegrityError,
    QueryError,
    QueryTimeoutError,
    TransientQueryError,
)
from .base import ExecResult, Row

__all__ = [
    "AioodbcDriver",
    "OdbcConnection",
    "mssql_connection_string",
    "mysql_connection_string",
    "odbc_connection_string",
    "odbc_value",
]

logger = logging.getLogger("async_db_client")

T = TypeVar("T")

# SQLSTATEs and native codes (SQL Server and MariaDB ODBC) meaning "connection gone".
DISCONNECT_STATES = frozenset({"08S01", "08001", "08003", "08004", "08007", "HYT01"})
DISCONNECT_CODES = frozenset({2006, 2013, 2055, 10053, 10054, 233, 64, 1927, 4031})
DISCONNECT_WORDS = ("communication link failure", "server has gone away", "lost connection")
TRANSIENT_CODES = frozenset({1205, 1213, 1222})  # deadlocks (both engines), lock timeout
CONNECT_RETRYABLE_STATES = frozenset({"08001", "08S01", "HYT00", "HYT01"})
_NATIVE = re.compile(r"\((\d{2,5})\)")


def odbc_value(value: str) -> str:
    """``value`` as an ODBC connection-string value, braced when it needs to be.

    Values with ``;``, ``{``, ``}``, ``=`` or surrounding spaces are wrapped in braces with
    ``}`` doubled, as the ODBC specification says.
    """
    if value and not any(c in value for c in ";{}=") and value == value.strip():
        return value
    return "{" + value.replace("}", "}}") + "}"


def odbc_connection_string(attributes: Mapping[str, str | None]) -> str:
    """``KEY=value;...`` from ``attributes`` (None values left out), each value escaped.

    ``DRIVER`` is always braced, as driver names usually hold spaces.
    """
    parts = []
    for key, value in attributes.items():
        if value is None:
            continue
        if key.upper() == "DRIVER":
            parts.append(f"{key}={{{value.replace('}', '}}')}}}")
        else:
            parts.append(f"{key}={odbc_value(value)}")
    return ";".join(parts)


def mssql_connection_string(config: MSSQLConfig) -> str:
    """The ODBC connection string for a SQL Server config (``odbc_connect`` verbatim)."""
    if config.odbc_connect is not None:
        return config.odbc_connect.get_secret_value()
    assert config.server is not None
    server = config.server if config.port is None else f"{config.server},{config.port}"
    encrypt = "strict" if config.encrypt == "strict" else ("yes" if config.encrypt else "no")
    return odbc_connection_string(
        {
            "DRIVER": config.driver,
            "SERVER": server,
            "DATABASE": config.database,
            "UID": config.username,
            "PWD": config.password.get_secret_value(),
            "Encrypt": encrypt,
            "TrustServerCertificate": "yes" if config.trust_server_certificate else "no",
            **config.odbc_attributes,
        }
    )


def mysql_connection_string(config: MySQLConfig) -> str:
    """The ODBC connection string for a MySQL/MariaDB config (``driver: odbc``)."""
    ((host, port),) = config.addresses  # one server: several need a MySQL driver
    return odbc_connection_string(
        {
            "DRIVER": config.odbc_driver,
            "SERVER": host,
            "PORT": str(port),
            "DATABASE": config.database,
            "UID": config.user,
            "PWD": config.password.get_secret_value(),
            "CHARSET": "utf8mb4",
        }
    )


def _import_pyodbc() -> Any:
    try:
        import aioodbc  # noqa: F401
        import pyodbc
    except ImportError as exc:
        if "libodbc" in str(exc):
            raise DriverNotInstalledError(
                "unixODBC (libodbc.so.2: apt-get install unixodbc)", "mssql"
            ) from None
        raise DriverNotInstalledError("aioodbc", "mssql") from None
    # The pool is ours: pyodbc's own connection pooling would hide closed connections.
    pyodbc.pooling = False
    return pyodbc


@dataclass(eq=False)
class OdbcConnection:
    """An aioodbc connection plus what the adapter tracks about it."""

    conn: Any  # aioodbc.Connection
    in_transaction: bool = False
    #: The pyodbc cursor of the statement running now, so it can be cancelled.
    running: Any = None
    closed: bool = field(default=False)
    #: Held while ``running`` changes and while it is cancelled: cancelling a cursor
    #: that another thread is closing crashes pyodbc (use after free).
    cursor_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Held by the worker thread while a statement runs (the cursor included): closing
    #: the connection under it would free the handles it uses.
    busy: threading.Lock = field(default_factory=threading.Lock)

    def cancel_running(self) -> None:
        """Cancel the running statement, if any (from a thread other than its own)."""
        with self.cursor_lock:
            if self.running is None:
                return
            try:
                self.running.cancel()
            except Exception as exc:  # best effort: the connection is being discarded
                logger.debug("cancelling an ODBC statement failed: %s", exc)


class AioodbcDriver:
    """Adapts aioodbc to :class:`~async_db_client.drivers.base.Driver`."""

    # Row locks: other connections wait only for the rows a transaction wrote.
    transactions_lock_database = False

    def __init__(
        self,
        connection_string: Callable[[], str],
        *,
        description: str,
        pool_settings: PoolSettings,
        utf8_text: bool = False,
        datetime_as_text: bool = False,
    ) -> None:
        """``utf8_text`` sends str parameters as UTF-8 (for MariaDB's driver) instead of
        UTF-16 (right for SQL Server's NVARCHAR); ``datetime_as_text`` sends datetimes
        as ISO text with microseconds (MariaDB's driver drops the fraction of a bound
        timestamp)."""
        self._datetime_as_text = datetime_as_text
        self._connection_string = connection_string  # a callable: the secret stays inside
        self.description = description
        self.pool_settings = pool_settings
        self._utf8_text = utf8_text
        self._max_size = pool_settings.max_size
        self._query_timeout = pool_settings.query_timeout
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    @classmethod
    def from_config(cls, config: MySQLConfig | MSSQLConfig) -> AioodbcDriver:
        """SQL Server, or MySQL/MariaDB through its ODBC driver (``driver: odbc``).

        The connection string is built by a callable at each connect: the password stays
        a ``SecretStr`` of the config inside it, never a plain attribute of the driver nor
        part of its repr."""
        if isinstance(config, MSSQLConfig):
            return cls(
                lambda: mssql_connection_string(config),
                description=config.describe(),
                pool_settings=config.pool,
            )
        return cls(
            lambda: mysql_connection_string(config),
            description=config.describe(),
            pool_settings=config.pool,
            utf8_text=True,
            datetime_as_text=True,
        )

    def __repr__(self) -> str:
        return f"AioodbcDriver({self.description})"

    def _threads(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._max_size + 1, thread_name_prefix="async_db_client-odbc"
            )
        return self._executor

    async def _in_thread(self, func: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads(), func, *args)

    # ------------------------------------------------------------------ connector

    async def connect(self, timeout: float) -> OdbcConnection:
        pyodbc = _import_pyodbc()
        import aioodbc

        try:
            conn = await aioodbc.connect(
                dsn=self._connection_string(),
                autocommit=True,
                timeout=max(1, math.ceil(timeout)),
                executor=self._threads(),
            )
        except pyodbc.Error as exc:
            raise self._connect_error(exc) from None
        wrapped = OdbcConnection(conn)
        try:
            await self._in_thread(self._configure, conn._conn)
        except BaseException:
            await conn.close()
            raise
        return wrapped

    def _configure(self, raw: Any) -> None:
        if self._query_timeout is not None:
            raw.timeout = max(1, math.ceil(self._query_timeout))
        if self._utf8_text:
            # MariaDB Connector/ODBC 3.1 corrupts (or refuses) str parameters longer than
            # 127 characters when they arrive as UTF-16, pyodbc's default; UTF-8 is exact.
            raw.setencoding(encoding="utf-8")

    def _connect_error(self, exc: Exception) -> DBConnectionError:
        state, message = _state_and_message(exc)
        if state == "IM002" or "can't open lib" in message.lower():
            return DBConnectionError.cannot_connect(
                self.description,
                "the ODBC driver is not installed or not registered with unixODBC "
                "(odbcinst -q -d lists the installed ones; for SQL Server install Microsoft's "
                f"msodbcsql18): [{state}] {message}",
            )
        return DBConnectionError.cannot_connect(self.description, f"[{state}] {message}")

    async def ping(self, conn: OdbcConnection) -> None:
        await self.fetchall(conn, "SELECT 1", ())

    def needs_reset(self, conn: OdbcConnection) -> bool:
        return conn.in_transaction or conn.closed

    async def reset(self, conn: OdbcConnection) -> None:
        if conn.closed:
            raise ConnectionLostError("connection closed")
        if conn.in_transaction:
            await self.rollback(conn)

    async def close(self, conn: OdbcConnection) -> None:
        conn.closed = True
        if conn.running is not None:
            # A statement is still running in a worker (its task was cancelled): cancel it
            # from the spare worker, or closing would wait for it to finish.
            await self._in_thread(conn.cancel_running)
        # Closing under a statement still running in a worker frees the handles that
        # worker is using (a segfault in the driver): wait for it to leave.
        await self._in_thread(_wait_idle, conn)
        await conn.conn.close()

    def abort(self, conn: OdbcConnection) -> None:
        conn.closed = True
        if self._executor is not None and conn.conn._conn is not None:
            if conn.running is not None:
                self._executor.submit(conn.cancel_running)
            self._executor.submit(_close_quietly, conn.conn._conn, conn.busy)

    async def dispose(self) -> None:
        """Stop the worker threads (the pool is closed)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown, True)

    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        text = str(exc)
        return any(f"[{state}]" in text for state in CONNECT_RETRYABLE_STATES) or (
            "timeout expired" in text.lower()
        )

    # ---------------------------------------------------------------- statements

    def _params(self, params: Sequence[Any]) -> Sequence[Any]:
        if not self._datetime_as_text:
            return params
        return [
            p.isoformat(sep=" ", timespec="microseconds") if isinstance(p, datetime) else p
            for p in params
        ]

    async def execute(self, conn: OdbcConnection, sql: str, params: Sequence[Any]) -> ExecResult:
        return await self._in_thread(self._run, conn, sql, self._params(params), False)

    async def fetchall(self, conn: OdbcConnection, sql: str, params: Sequence[Any]) -> list[Row]:
        return await self._in_thread(self._run, conn, sql, self._params(params), True)

    @staticmethod
    def _run(conn: OdbcConnection, sql: str, params: Sequence[Any], rows: bool) -> Any:
        # Runs in a worker thread: the whole statement, so the cursor is always closed.
        with conn.busy:
            return AioodbcDriver._run_locked(conn, sql, params, rows)

    @staticmethod
    def _run_locked(conn: OdbcConnection, sql: str, params: Sequence[Any], rows: bool) -> Any:
        cursor = conn.conn._conn.cursor()
        with conn.cursor_lock:
            conn.running = cursor
        try:
            cursor.execute(sql, *params) if params else cursor.execute(sql)
            if rows:
                # Skip the row counts of statements before the first result set.
                while cursor.description is None and cursor.nextset():
                    pass
                return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
            return ExecResult(rowcount=cursor.rowcount)
        finally:
            with conn.cursor_lock:
                conn.running = None
                cursor.close()

    async def begin(self, conn: OdbcConnection) -> None:
        await self._in_thread(setattr, conn.conn._conn, "autocommit", False)
        conn.in_transaction = True

    async def commit(self, conn: OdbcConnection) -> None:
        await self._in_thread(_finish, conn.conn._conn, True)
        conn.in_transaction = False

    async def rollback(self, conn: OdbcConnection) -> None:
        await self._in_thread(_finish, conn.conn._conn, False)
        conn.in_transaction = False

    def translate(self, exc: Exception) -> AsyncDBClientError:
        if isinstance(exc, AsyncDBClientError):
            return exc
        state, message = _state_and_message(exc)
        codes = {int(code) for code in _NATIVE.findall(message)}
        text = f"{self.description}: [{state}] {message}"
        lowered = message.lower()
        if (
            state in DISCONNECT_STATES
            or codes & DISCONNECT_CODES
            or any(word in lowered for word in DISCONNECT_WORDS)
            or ("closed" in lowered and "connection" in lowered)
        ):
            return ConnectionLostError(text)
        code = min(codes) if codes else state
        if state == "40001" or codes & TRANSIENT_CODES:
            return TransientQueryError(text, code=code)
        if state == "HYT00" or codes & {1969, 3024}:
            return QueryTimeoutError(text, code=code)
        if state.startswith("23"):
            return IntegrityError(text, code=code)
        return QueryError(text, code=code)


def _state_and_message(exc: BaseException) -> tuple[str, str]:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        return args[0], args[1]
    return "", str(exc) or type(exc).__name__


def _finish(raw: Any, commit: bool) -> None:
    try:
        raw.commit() if commit else raw.rollback()
    finally:
        raw.autocommit = True


def _wait_idle(conn: OdbcConnection) -> None:
    with conn.busy:
        pass


def _close_quietly(raw: Any, busy: threading.Lock) -> None:
    try:
        with busy:  # not under a statement still running in another worker
            raw.close()
    except Exception as exc:
        logger.debug("closing an ODBC connection failed: %s", exc)
