"""What the MySQL/MariaDB drivers share (aiomysql, asyncmy): error mapping, parameter
quoting, TLS settings and failures, the session every connection starts with, and
:class:`MySQLDriverBase`, the part of an adapter that is the same for both (their
connections offer the same calls for pings, transactions and closing).

Nothing here imports a driver package: each adapter passes its own exception classes
and connections in, so one driver being absent never breaks the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .. import errors
from ..config import MySQLConfig, TLSConfig
from .base import ServerDriver, tls_failure

__all__ = [
    "CLIENT_SSL",
    "CONNECT_RETRYABLE_CODES",
    "CR_SSL_CONNECTION_ERROR",
    "DISCONNECT_CODES",
    "NO_TLS_OFFERED",
    "TLS_FAILED",
    "MySQLDriverBase",
    "connect_error",
    "error_code",
    "error_message",
    "is_retryable_connect_error",
    "log_server_warnings",
    "mysql_error_class",
    "quote_params",
    "session_setup",
    "ssl_context",
    "to_format_style",
    "translate_error",
]

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
# Deadlock (a Galera certification conflict too); lock wait timeout.
TRANSIENT_CODES = frozenset({1213, 1205})
# The server cannot take this statement in its current role: read-only (1290: a replica,
# or a primary being demoted) or a Galera node outside the primary component (1047).
# Refused before it ran, so running it elsewhere is safe whatever it was.
ROLE_CODES = frozenset({1290, 1047})
# A Galera node that left the primary component while a large transaction streamed its
# fragments answers 1180 (ER_ERROR_DURING_COMMIT) saying so: the transaction is rolled
# back there (no node outside the primary component commits), so it is the same refusal.
OUTSIDE_PRIMARY = (1180, "Not connected to Primary Component")
INTEGRITY_CODES = frozenset({1062, 1048, 1451, 1452, 1364, 4025})
TIMEOUT_CODES = frozenset({1969, 3024})  # MariaDB max_statement_time; MySQL max_execution_time
CONNECT_RETRYABLE_CODES = frozenset({2002, 2003, 2005, 2006, 2013, 1040, 1053, 1129})

# Protocol constants (the same in every driver: they are the wire format's).
CLIENT_SSL = 1 << 11  # capability flag: the server can switch to TLS
SERVER_STATUS_NO_BACKSLASH_ESCAPES = 512
CR_SSL_CONNECTION_ERROR = 2026

#: Starts the message of a TLS failure: a certificate or protocol mismatch, which another
#: attempt would meet again (never retried).
TLS_FAILED = "TLS failed"
#: Why a connect is refused before logging in when the server's greeting offers no TLS
#: (a server without TLS, or anyone in between who strips the flag): the drivers would
#: otherwise skip TLS silently and send the login and every statement in plaintext.
NO_TLS_OFFERED = f"{TLS_FAILED}: the server does not offer TLS, and ssl is configured"


def mysql_error_class(code: int | None, message: str = "") -> type[errors.AsyncDBClientError]:
    """Which of this library's errors a MySQL error (code, and message) means."""
    if code in DISCONNECT_CODES:
        return errors.ConnectionLostError
    if code in ROLE_CODES or (code == OUTSIDE_PRIMARY[0] and OUTSIDE_PRIMARY[1] in message):
        return errors.ServerRoleError
    if code in TRANSIENT_CODES:
        return errors.TransientQueryError
    if code in INTEGRITY_CODES:
        return errors.IntegrityError
    if code in TIMEOUT_CODES:
        return errors.QueryTimeoutError
    return errors.QueryError


@functools.lru_cache(maxsize=512)
def to_format_style(sql: str) -> str:
    """``?`` placeholders to the drivers' ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Escaper(Protocol):
    """What :func:`quote_params` needs of a driver connection."""

    server_status: int

    def escape(self, obj: Any) -> str: ...


# The table PyMySQL escapes strings with (pymysql.converters.escape_string).
_ESCAPES = {0: "\\0", 10: "\\n", 13: "\\r", 26: "\\Z", 34: '\\"', 39: "\\'", 92: "\\\\"}
_ESCAPE_TABLE = [_ESCAPES.get(code, chr(code)) for code in range(128)]


def quote_params(conn: Escaper, params: Sequence[Any]) -> tuple[str, ...]:
    """The SQL literal of each parameter, exactly as the driver's ``escape`` renders it,
    in one tight loop.

    The text protocol binds parameters by quoting them into the statement on the client;
    the drivers' generic per-value dispatch is the largest client cost of bulk writes.
    str, int and None (nearly every value) are quoted here the same way; anything else
    goes to ``conn.escape``.
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


def log_server_warnings(warnings: Iterable[Sequence[Any]]) -> None:
    """Log the rows of ``SHOW WARNINGS`` (level, code, message): Notes (e.g. "table
    already exists" on every migration check) at DEBUG, the rest at WARNING."""
    for level, code, message in warnings:
        logger.log(
            logging.DEBUG if level == "Note" else logging.WARNING,
            "server %s %s: %s",
            level,
            code,
            message,
        )


def session_setup(server_info: str, config: MySQLConfig) -> str:
    """The statement every new connection runs first: UTC, on MariaDB the query timeout
    enforced by the server itself (the statement is aborted, the connection stays
    usable), and on a Galera cluster read with ``read_your_writes`` causal reads (a read
    waits until the node has applied every write the cluster committed before it). One
    statement, so one round trip."""
    assignments = ["time_zone = '+00:00'"]
    query_timeout = config.pool.query_timeout
    if query_timeout is not None and "mariadb" in server_info.lower():
        assignments.append(f"SESSION max_statement_time = {float(query_timeout):.3f}")
    if config.galera_causal_reads:
        assignments.append("SESSION wsrep_sync_wait = 1")
    return "SET " + ", ".join(assignments)


def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The client's TLS context: the CA (or the system's), the certificate and host name
    checks as configured, and a client certificate if given."""
    context = ssl.create_default_context(cafile=tls.ca)
    context.check_hostname = tls.verify_cert and tls.verify_identity
    context.verify_mode = ssl.CERT_REQUIRED if tls.verify_cert else ssl.CERT_NONE
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    return context


def error_code(exc: BaseException) -> int | None:
    """The MySQL error code of a driver exception (``args[0]``), if it has one."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def error_message(exc: BaseException) -> str:
    """``(code) message`` for a MySQL error, else the exception's type and text."""
    args: tuple[Any, ...] = getattr(exc, "args", ())
    if len(args) >= 2 and isinstance(args[0], int):
        return f"({args[0]}) {args[1]}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def connect_error(description: str, exc: BaseException) -> errors.DBConnectionError:
    """This library's error for a driver's failed connect; a TLS failure says so (and
    is then never retried, see :func:`is_retryable_connect_error`). No password: the
    drivers' messages never hold one and ``description`` does not."""
    tls = tls_failure(exc)
    reason = f"{TLS_FAILED}: {tls}" if tls else connect_reason(exc)
    return errors.DBConnectionError.cannot_connect(description, reason)


CR_CONN_HOST_ERROR = 2003


def connect_reason(exc: BaseException) -> str:
    """Why a connect failed, as the server or the OS said it.

    The drivers report every failed TCP connect as 2003 "Can't connect to MySQL server
    on 'host'" (the host is already in our message) and keep the OS's answer (refused,
    unreachable, timed out) in the cause: that answer is the reason.
    """
    cause = exc.__cause__
    if error_code(exc) != CR_CONN_HOST_ERROR or not isinstance(cause, OSError):
        return error_message(exc)
    if isinstance(cause, TimeoutError):
        said = "timed out"
    elif cause.errno is not None and cause.errno > 0:
        said = os.strerror(cause.errno)
    else:  # name resolution (gaierror), or several addresses that all failed
        said = cause.strerror or str(cause) or type(cause).__name__
    return f"({CR_CONN_HOST_ERROR}) {said}"


def is_retryable_connect_error(exc: BaseException) -> bool:
    """True if a failed connect may succeed later (refused, unreachable, timed out, too
    many connections); False for TLS failures and refused logins."""
    cause = exc.__cause__ or exc.__context__ or exc
    if isinstance(exc, errors.DBConnectionError):
        text = str(exc)
        if TLS_FAILED in text:
            return False
        return any(f"({code})" in text for code in CONNECT_RETRYABLE_CODES)
    if isinstance(cause, OSError | asyncio.TimeoutError):
        return True
    return error_code(cause) in CONNECT_RETRYABLE_CODES


def translate_error(
    description: str,
    exc: Exception,
    *,
    lost: tuple[type[BaseException], ...],
    server: type[BaseException],
) -> errors.AsyncDBClientError:
    """This library's exception for a driver exception.

    ``lost`` are the driver's exceptions meaning the stream is gone (its interface
    errors; OSError covers resets, broken pipes and socket timeouts); ``server`` is the
    base class of its MySQL errors, mapped by code (:func:`mysql_error_class`).
    """
    if isinstance(exc, errors.AsyncDBClientError):
        return exc
    if isinstance(exc, lost):
        return errors.ConnectionLostError(f"{description}: connection lost: {error_message(exc)}")
    message = f"{description}: {error_message(exc)}"
    if isinstance(exc, server):
        code = error_code(exc)
        error_class = mysql_error_class(code, message)
        if error_class is errors.ConnectionLostError:
            return errors.ConnectionLostError(message)
        if issubclass(error_class, errors.QueryError):
            return error_class(message, code=code)
        return error_class(message)
    return errors.QueryError(message)


class MySQLDriverBase(ServerDriver[MySQLConfig]):
    """The part of a MySQL adapter that does not depend on its driver package: its TLS
    context, the connection arguments both drivers take, and the
    :class:`~async_db_client.drivers.base.Driver` calls both drivers' connections answer
    alike (``ping``, ``begin`` ...). A subclass adds ``connect``, the statements,
    ``translate`` and :meth:`_closed`."""

    def __init__(self, config: MySQLConfig) -> None:
        super().__init__(config)
        self._ssl = ssl_context(config.ssl) if config.ssl else None

    def _connect_args(self) -> dict[str, Any]:
        """What both drivers' connections are built with (the database's keyword and the
        timeouts differ)."""
        config = self.config
        (host, port), *others = config.addresses
        assert not others, "a driver connects to one server (the router picks which)"
        return {
            "host": host,
            "port": port,
            "user": config.user,
            "password": config.password.get_secret_value(),
            "charset": "utf8mb4",
            "autocommit": True,
            "ssl": self._ssl,
            "local_infile": False,
            "program_name": "async_db_client",
        }

    def _closed(self, conn: Any) -> bool:
        """Whether the driver closed ``conn`` (without I/O)."""
        raise NotImplementedError

    async def fetch_named(self, conn: Any, sql: str) -> list[dict[str, Any]]:
        """Every row of ``sql`` (no parameters) by column name: for statements whose
        columns differ between servers and versions (``SHOW SLAVE STATUS``)."""
        raise NotImplementedError

    async def ping(self, conn: Any) -> None:
        await conn.ping(reconnect=False)

    def needs_reset(self, conn: Any) -> bool:
        # The server reports an open transaction in every OK packet's status flags.
        return bool(self._closed(conn) or conn.get_transaction_status())

    async def reset(self, conn: Any) -> None:
        if self._closed(conn):
            raise errors.ConnectionLostError("connection closed")
        if conn.get_transaction_status():
            await conn.rollback()

    async def close(self, conn: Any) -> None:
        writer = getattr(conn, "_writer", None)  # both drivers' stream (None once closed)
        try:
            await conn.ensure_closed()
        except Exception:
            conn.close()
        if writer is not None:
            # The drivers close a TLS connection by starting the TLS shutdown and return;
            # the socket closes when the shutdown is done. Waiting for it (bounded) keeps a
            # socket from outliving its event loop (a ResourceWarning at some later point).
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.pool_settings.close_timeout):
                    await writer.wait_closed()

    def abort(self, conn: Any) -> None:
        conn.close()  # closes the transport: no I/O awaited

    async def dispose(self) -> None:
        return None  # the drivers hold nothing beyond their connections

    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        return is_retryable_connect_error(exc)

    async def begin(self, conn: Any) -> None:
        await conn.begin()

    async def commit(self, conn: Any) -> None:
        await conn.commit()

    async def rollback(self, conn: Any) -> None:
        await conn.rollback()
