"""The aiomysql driver adapter: connections, statements and error mapping for MySQL/MariaDB.

Connections run in autocommit mode (a single statement is its own transaction, one
round trip); explicit transactions use BEGIN/COMMIT. Each connection sets the session
time zone to UTC and, on MariaDB, ``max_statement_time`` to the query timeout, so the
server itself aborts a statement that runs too long and the connection stays usable.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
from collections.abc import Sequence
from typing import Any

import aiomysql
import pymysql
from pymysql.constants.CLIENT import SSL as CLIENT_SSL
from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES

from ..config import MySQLConfig, PoolSettings, TLSConfig
from ..errors import (
    AsyncDBClientError,
    ConnectionLostError,
    DBConnectionError,
    IntegrityError,
    QueryError,
    QueryTimeoutError,
    TransientQueryError,
)
from .base import ExecResult, Row

__all__ = ["AiomysqlDriver", "mysql_error_class"]

logger = logging.getLogger("async_db_client")

# Client and server codes meaning "this connection is gone".
DISCONNECT_CODES = frozenset(
    {
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (extended)
        2014,  # commands out of sync: protocol state unknown
        4031,  # disconnected by the server because of inactivity (MySQL 8)
        1927,  # connection was killed (MariaDB)
        1053,  # server shutdown in progress
        1317,  # query execution was interrupted (KILL)
    }
)
TRANSIENT_CODES = frozenset({1213, 1205})  # deadlock; lock wait timeout
INTEGRITY_CODES = frozenset({1062, 1048, 1451, 1452, 1364, 4025})
TIMEOUT_CODES = frozenset({1969, 3024})  # MariaDB max_statement_time; MySQL max_execution_time
CONNECT_RETRYABLE_CODES = frozenset({2002, 2003, 2005, 2006, 2013, 1040, 1053, 1129})


def mysql_error_class(code: int | None) -> type[AsyncDBClientError]:
    """Which of this library's errors a MySQL error code means."""
    if code in DISCONNECT_CODES:
        return ConnectionLostError
    if code in TRANSIENT_CODES:
        return TransientQueryError
    if code in INTEGRITY_CODES:
        return IntegrityError
    if code in TIMEOUT_CODES:
        return QueryTimeoutError
    return QueryError


@functools.lru_cache(maxsize=512)
def to_format_style(sql: str) -> str:
    """``?`` placeholders to aiomysql's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


# The table PyMySQL escapes strings with (pymysql.converters.escape_string).
_ESCAPES = {0: "\\0", 10: "\\n", 13: "\\r", 26: "\\Z", 34: '\\"', 39: "\\'", 92: "\\\\"}
_ESCAPE_TABLE = [_ESCAPES.get(code, chr(code)) for code in range(128)]


def quote_params(conn: aiomysql.Connection, params: Sequence[Any]) -> tuple[str, ...]:
    """The SQL literal of each parameter, exactly as aiomysql's ``Connection.escape``
    renders it, in one tight loop.

    aiomysql binds parameters by quoting them into the statement on the client; its
    generic per-value dispatch is the largest client cost of bulk writes. str, int and
    None (nearly every value) are quoted here the same way; anything else goes to
    ``conn.escape``.
    """
    no_backslash = conn.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES
    table = _ESCAPE_TABLE
    out: list[str] = []
    append = out.append
    for value in params:
        kind = value.__class__
        if kind is str:
            if no_backslash:
                append("'" + value.replace("'", "''") + "'")
            else:
                append("'" + value.translate(table) + "'")
        elif kind is int:
            append(str(value))
        elif value is None:
            append("NULL")
        else:
            append(conn.escape(value))
    return tuple(out)


class _Cursor(aiomysql.Cursor):  # type: ignore[misc]
    """aiomysql's cursor, reporting server warnings to the log instead of ``warnings``."""

    async def _show_warnings(self, conn: aiomysql.Connection) -> None:
        if self._result and self._result.has_next:
            return
        for level, code, message in await conn.show_warnings() or ():
            logger.log(
                logging.DEBUG if level == "Note" else logging.WARNING,
                "server %s %s: %s",
                level,
                code,
                message,
            )


#: Starts the message of a TLS failure: a certificate or protocol mismatch, which another
#: attempt would meet again (never retried).
TLS_FAILED = "TLS failed"
CR_SSL_CONNECTION_ERROR = 2026


class _Connection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection, refusing to log in without TLS when TLS is configured.

    aiomysql alone skips TLS, silently, when the server's greeting does not offer it (a
    server without TLS, or anyone in between who strips the flag), and then sends the
    login and every statement in plaintext.
    """

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & CLIENT_SSL:
            raise pymysql.err.OperationalError(
                CR_SSL_CONNECTION_ERROR,
                f"{TLS_FAILED}: the server does not offer TLS, and ssl is configured",
            )
        await super()._request_authentication()


def _tls_failure(exc: BaseException) -> str | None:
    """The TLS error behind a failed connect, if one is (a handshake that failed for
    good: certificate, host name, protocol; not a connection cut during it)."""
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


def _ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca)
    context.check_hostname = tls.verify_cert and tls.verify_identity
    context.verify_mode = ssl.CERT_REQUIRED if tls.verify_cert else ssl.CERT_NONE
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    return context


def _code(exc: BaseException) -> int | None:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _message(exc: BaseException) -> str:
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


CR_CONN_HOST_ERROR = 2003


def _connect_reason(exc: BaseException) -> str:
    """Why a connect failed, as the server or the OS said it.

    aiomysql reports every failed TCP connect as 2003 "Can't connect to MySQL server on
    'host'" (the host is already in our message) and keeps the OS's answer (refused,
    unreachable, timed out) in the cause: that answer is the reason.
    """
    cause = exc.__cause__
    if _code(exc) != CR_CONN_HOST_ERROR or not isinstance(cause, OSError):
        return _message(exc)
    if isinstance(cause, TimeoutError):
        said = "timed out"
    elif cause.errno is not None and cause.errno > 0:
        said = os.strerror(cause.errno)
    else:  # name resolution (gaierror), or several addresses that all failed
        said = cause.strerror or str(cause) or type(cause).__name__
    return f"({CR_CONN_HOST_ERROR}) {said}"


class AiomysqlDriver:
    """Adapts aiomysql to :class:`~async_db_client.drivers.base.Driver`."""

    # Row locks: other connections wait only for the rows a transaction wrote.
    transactions_lock_database = False
    #: The server's version string, once a connection was made (``10.11.6-MariaDB``).
    server_version: str | None = None

    def __init__(self, config: MySQLConfig) -> None:
        self.config = config
        self.description = config.describe()
        self.pool_settings: PoolSettings = config.pool
        self._ssl = _ssl_context(config.ssl) if config.ssl else None

    @classmethod
    def from_config(cls, config: MySQLConfig) -> AiomysqlDriver:
        return cls(config)

    def __repr__(self) -> str:
        return f"AiomysqlDriver({self.description})"

    # ------------------------------------------------------------------ connector

    async def connect(self, timeout: float) -> aiomysql.Connection:
        config = self.config
        conn = _Connection(
            host=config.host,
            port=config.port,
            user=config.user,
            password=config.password.get_secret_value(),
            db=config.database,
            charset="utf8mb4",
            autocommit=True,
            # None: aiomysql would bound the TCP connect with asyncio.wait_for, which on
            # Python 3.11 loses a cancellation arriving as the connect completes (a pool
            # closing then waited the whole timeout). asyncio.timeout below bounds it.
            connect_timeout=None,
            ssl=self._ssl,
            local_infile=False,
            program_name="async_db_client",
        )
        try:
            # aiomysql.connect() leaves the socket open if cancelled mid-handshake.
            async with asyncio.timeout(timeout):
                await conn._connect()
                await self._configure(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, pymysql.err.MySQLError):
                tls = _tls_failure(exc)
                reason = f"{TLS_FAILED}: {tls}" if tls else _connect_reason(exc)
                raise DBConnectionError.cannot_connect(self.description, reason) from None
            raise
        return conn

    async def _configure(self, conn: aiomysql.Connection) -> None:
        statements = ["SET time_zone = '+00:00'"]
        timeout = self.config.pool.query_timeout
        self.server_version = conn.get_server_info()  # telemetry tells MariaDB from MySQL
        if timeout is not None and "mariadb" in self.server_version.lower():
            statements.append(f"SET SESSION max_statement_time = {float(timeout):.3f}")
        async with conn.cursor(_Cursor) as cursor:
            for statement in statements:
                await cursor.execute(statement)

    async def ping(self, conn: aiomysql.Connection) -> None:
        await conn.ping(reconnect=False)

    def needs_reset(self, conn: aiomysql.Connection) -> bool:
        # The server reports an open transaction in every OK packet's status flags.
        return bool(conn.closed or conn.get_transaction_status())

    async def reset(self, conn: aiomysql.Connection) -> None:
        if conn.closed:
            raise ConnectionLostError("connection closed")
        if conn.get_transaction_status():
            await conn.rollback()

    async def close(self, conn: aiomysql.Connection) -> None:
        try:
            await conn.ensure_closed()
        except Exception:
            conn.close()

    def abort(self, conn: aiomysql.Connection) -> None:
        conn.close()

    async def dispose(self) -> None:
        return None  # aiomysql holds nothing beyond its connections

    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        cause = exc.__cause__ or exc.__context__ or exc
        if isinstance(exc, DBConnectionError):
            text = str(exc)
            if TLS_FAILED in text:
                return False
            return any(f"({code})" in text for code in CONNECT_RETRYABLE_CODES)
        if isinstance(cause, OSError | asyncio.TimeoutError):
            return True
        return _code(cause) in CONNECT_RETRYABLE_CODES

    # ---------------------------------------------------------------- statements

    def _statement(self, conn: aiomysql.Connection, sql: str, params: Sequence[Any]) -> str:
        if not params:
            return sql
        return to_format_style(sql) % quote_params(conn, params)

    async def execute(
        self, conn: aiomysql.Connection, sql: str, params: Sequence[Any]
    ) -> ExecResult:
        async with conn.cursor(_Cursor) as cursor:
            rowcount = await cursor.execute(self._statement(conn, sql, params))
            return ExecResult(rowcount=rowcount, lastrowid=cursor.lastrowid or None)

    async def fetchall(
        self, conn: aiomysql.Connection, sql: str, params: Sequence[Any]
    ) -> list[Row]:
        async with conn.cursor(_Cursor) as cursor:
            await cursor.execute(self._statement(conn, sql, params))
            rows: list[Row] = list(await cursor.fetchall())
            return rows

    async def begin(self, conn: aiomysql.Connection) -> None:
        await conn.begin()

    async def commit(self, conn: aiomysql.Connection) -> None:
        await conn.commit()

    async def rollback(self, conn: aiomysql.Connection) -> None:
        await conn.rollback()

    def translate(self, exc: Exception) -> AsyncDBClientError:
        if isinstance(exc, AsyncDBClientError):
            return exc
        code = _code(exc)
        if isinstance(
            # OSError covers resets, broken pipes and socket timeouts: the stream is gone.
            exc,
            pymysql.err.InterfaceError | OSError | asyncio.IncompleteReadError,
        ):
            return ConnectionLostError(f"{self.description}: connection lost: {_message(exc)}")
        if isinstance(exc, pymysql.err.MySQLError):
            error_class = mysql_error_class(code)
            message = f"{self.description}: {_message(exc)}"
            if error_class is ConnectionLostError:
                return ConnectionLostError(message)
            if issubclass(error_class, QueryError):
                return error_class(message, code=code)
            return error_class(message)
        return QueryError(f"{self.description}: {_message(exc)}")
