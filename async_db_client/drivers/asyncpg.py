"""The asyncpg driver adapter: PostgreSQL connections, statements, COPY and error mapping.

**The library's pool drives single asyncpg connections; asyncpg's own pool is not used.**
Every guarantee users have on MySQL comes from :mod:`async_db_client.pool` (``pool_stats()``,
an absolute acquire deadline, ``max_lifetime`` with jitter, liveness checks after idling,
the connect retry budget, cancellation safety, the pool manager sharing one pool per
server and credentials), and asyncpg's pool has had exactly the failures those
guarantees exist for:

* asyncpg #467 "Leaked connections caused by timeout on pool.acquire": ``acquire(timeout=)``
  wraps the acquire in ``asyncio.wait_for``, whose cancellation of the inner task loses
  a connection that was being handed over; PR #1052 ("Fix: connection leak on
  TimeoutError in acquire", closed unmerged) shows the same race still open in 2023:
  the acquire future is done when the TimeoutError is raised, and the connection never
  goes back to the pool;
* asyncpg #547 "Pool never closes if acquire with timeout is cancelled": a cancelled
  acquire leaves the pool's bookkeeping so that ``Pool.close()`` waits forever (asyncpg
  only warns after 60 s that ``close()`` is slow; there is no close timeout);
* and ``Pool.acquire()`` without a timeout waits forever when every connection is out
  (its ``timeout=None`` branch awaits the queue unbounded).

Wrapping that pool would put a second pool, with those failure modes, under the one
whose counters and deadlines users see. So each library pool slot holds one
``asyncpg.connect()`` connection, and what the pool needs of it is here.

What each connection is:

* autocommit (asyncpg's default: each statement is its own transaction); explicit
  transactions are ``BEGIN`` ... ``COMMIT`` on the same connection;
* ``TimeZone`` UTC, ``application_name`` async_db_client, and the query timeout enforced
  by the server itself (``statement_timeout``): a statement that runs too long is
  cancelled by PostgreSQL (SQLSTATE 57014, :class:`~async_db_client.errors.QueryTimeoutError`)
  and the connection stays usable. The executor's watchdog, a little later, is the
  backstop; a statement cancelled on the client (the watchdog, or the caller's task
  cancelled) leaves the connection *busy*: the pool's close of it is then
  ``terminate()`` (the socket dropped, the server ends the backend and rolls back),
  never a reuse and never a polite close that would wait behind the statement;
* with ``pgbouncer: true`` (transaction pooling): ``statement_cache_size=0`` so no
  statement is prepared by name (only the unnamed statement of each call, which lives
  within its own exchange), and no session settings in the startup packet beyond the
  ones PgBouncer tracks (``TimeZone``, ``application_name``): the query timeout is then
  the executor's alone;
* ``?`` placeholders are rewritten to ``$1``, ``$2`` ... (outside quoted text), once per
  statement text.

Errors map by SQLSTATE into this library's hierarchy (:func:`pg_error_class`):
serialization failures (40001) and deadlocks (40P01) are
:class:`~async_db_client.errors.TransientQueryError` (retried as MySQL's deadlocks are),
a write refused by a read-only server (25006) is
:class:`~async_db_client.errors.ServerRoleError` (with a one-entry ``hosts`` the pool
then drops its connections and finds the primary again; with several, each server has a
driver of its own and :mod:`async_db_client.routing` rediscovers the roles), connection
failures (class 08, admin
shutdown 57P01-57P03, a dropped socket) are
:class:`~async_db_client.errors.ConnectionLostError`, class 23 is
:class:`~async_db_client.errors.IntegrityError`, the rest
:class:`~async_db_client.errors.QueryError` with the SQLSTATE as ``code``. No message
holds the password: connections are opened from keyword arguments (no DSN), and asyncpg's
server messages never quote it.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import asyncpg.exceptions as pgerr

from ..config import PGTLSConfig, PostgreSQLConfig
from ..errors import (
    AsyncDBClientError,
    ConnectionLostError,
    DBConnectionError,
    IntegrityError,
    QueryError,
    QueryTimeoutError,
    ServerRoleError,
    TransientQueryError,
)
from .base import ExecResult, Row, ServerDriver, tls_failure

__all__ = ["AsyncpgDriver", "pg_error_class", "to_dollar_style"]

#: Retried as MySQL's deadlocks: serialization_failure, deadlock_detected, and
#: lock_not_available (a lock_timeout).
TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03"})
#: read_only_sql_transaction: a standby, or a primary being demoted; nothing ran.
ROLE_STATES = frozenset({"25006"})
#: query_canceled: statement_timeout (or someone's pg_cancel_backend).
TIMEOUT_STATES = frozenset({"57014"})
#: The server ends the session: admin_shutdown, crash_shutdown, cannot_connect_now.
LOST_STATES = frozenset({"57P01", "57P02", "57P03"})
#: Connects that may succeed later: too_many_connections, cannot_connect_now.
CONNECT_RETRYABLE_STATES = frozenset({"53300", "57P03"})

#: Starts the message of a TLS failure (never retried: another attempt meets it again).
TLS_FAILED = "TLS failed"


def pg_error_class(sqlstate: str | None) -> type[AsyncDBClientError]:
    """Which of this library's errors a PostgreSQL SQLSTATE means."""
    if not sqlstate:
        return QueryError
    if sqlstate in ROLE_STATES:
        return ServerRoleError
    if sqlstate in TRANSIENT_STATES:
        return TransientQueryError
    if sqlstate in TIMEOUT_STATES:
        return QueryTimeoutError
    if sqlstate in LOST_STATES or sqlstate.startswith("08"):
        return ConnectionLostError
    if sqlstate.startswith("23"):
        return IntegrityError
    return QueryError


@functools.lru_cache(maxsize=1024)
def to_dollar_style(sql: str) -> str:
    """``?`` placeholders to PostgreSQL's ``$1``, ``$2`` ...; a ``?`` inside single or
    double quotes (a literal, an identifier) is left alone."""
    if "?" not in sql:
        return sql
    out: list[str] = []
    n = 0
    quote: str | None = None
    for char in sql:
        if quote is not None:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(char)
    return "".join(out)


def _rowcount(status: str) -> int:
    """The row count of a command tag (``INSERT 0 5``, ``UPDATE 3``); 0 if none."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


def ssl_argument(tls: PGTLSConfig | None) -> ssl.SSLContext | str | bool:
    """asyncpg's ``ssl`` argument for the configured TLS (libpq's modes and meaning)."""
    if tls is None:
        return "prefer"  # libpq's default
    if tls.sslmode == "disable":
        return False
    if tls.sslmode == "prefer":
        return "prefer"
    # An SSLContext makes TLS mandatory in asyncpg: never a silent plaintext fallback.
    verify = tls.sslmode != "require" or tls.ca is not None  # libpq: require + CA = verify-ca
    context = ssl.create_default_context(cafile=tls.ca)
    context.check_hostname = tls.sslmode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    if tls.cert and tls.key:
        context.load_cert_chain(tls.cert, tls.key)
    return context


def _message(exc: BaseException) -> str:
    """``(SQLSTATE) message`` for a server error, else the exception's type and text."""
    sqlstate = getattr(exc, "sqlstate", None)
    text = str(exc) or type(exc).__name__
    if sqlstate and isinstance(exc, pgerr.PostgresError):
        return f"({sqlstate}) {text}"
    if isinstance(exc, OSError | TimeoutError):
        return f"{type(exc).__name__}: {text}" if str(exc) else type(exc).__name__
    return text


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """asyncpg's connection with what the adapter tracks of it (no I/O to read)."""

    #: True while a call runs; left True by a call that did not finish (cancelled,
    #: failed on the client): the connection is then terminated, never reused.
    adc_busy = False
    #: The driver's role epoch when the connection was opened (several hosts).
    adc_epoch = 0


class AsyncpgDriver(ServerDriver[PostgreSQLConfig]):
    """Adapts asyncpg to :class:`~async_db_client.drivers.base.Driver`."""

    def __init__(self, config: PostgreSQLConfig) -> None:
        super().__init__(config)
        self._ssl = ssl_argument(config.ssl)
        #: ``hosts`` given (even one): connect only to a primary, as configured.
        self._several = config.hosts is not None
        #: Bumped when a server refused a write for its role: connections opened before
        #: may point at a demoted primary, and are dropped (several hosts only).
        self._epoch = 0

    # ------------------------------------------------------------------ connector

    def _connect_args(self, timeout: float) -> dict[str, Any]:
        config = self.config
        addresses = config.addresses
        settings = {"application_name": "async_db_client", "TimeZone": "UTC"}
        query_timeout = config.pool.query_timeout
        if query_timeout is not None and not config.pgbouncer:
            settings["statement_timeout"] = str(max(1, round(query_timeout * 1000)))
        args: dict[str, Any] = {
            "host": [host for host, _ in addresses] if self._several else addresses[0][0],
            "port": [port for _, port in addresses] if self._several else addresses[0][1],
            "user": config.user,
            "password": config.password.get_secret_value(),
            "database": config.database,
            "ssl": self._ssl,
            "timeout": timeout,
            "command_timeout": None,  # the server's statement_timeout, then the executor's
            "server_settings": settings,
            "connection_class": _Connection,
        }
        if config.pgbouncer:
            args["statement_cache_size"] = 0
        if self._several:
            args["target_session_attrs"] = "primary"  # pg_is_in_recovery() is false
        return args

    async def connect(self, timeout: float) -> _Connection:
        epoch = self._epoch
        try:
            conn: _Connection = await asyncpg.connect(**self._connect_args(timeout))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise self._connect_error(exc) from exc
        except pgerr.InternalClientError as exc:  # no host matched target_session_attrs
            raise self._connect_error(exc) from exc
        conn.adc_epoch = epoch
        if self.server_version is None:
            version = conn.get_server_version()
            self.server_version = f"{version.major}.{version.minor}"
        return conn

    def _connect_error(self, exc: BaseException) -> DBConnectionError:
        if "rejected SSL upgrade" in str(exc):
            # TLS is required and the server (or anyone in between) said no: never a
            # plaintext fallback, never retried.
            reason = f"{TLS_FAILED}: the server does not offer TLS, and sslmode requires it"
            return DBConnectionError.cannot_connect(self.description, reason)
        tls = tls_failure(exc)
        reason = f"{TLS_FAILED}: {tls}" if tls else _message(exc)
        return DBConnectionError.cannot_connect(self.description, reason)

    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        """Refused, unreachable, timed out, too many connections, starting up, no primary
        yet: may succeed later. TLS failures, refused logins, a missing database: not."""
        if TLS_FAILED in str(exc):
            return False
        cause = exc.__cause__ if isinstance(exc, DBConnectionError) else exc
        if cause is None:
            return False
        if isinstance(cause, pgerr.PostgresError):
            sqlstate = getattr(cause, "sqlstate", None) or ""
            return sqlstate in CONNECT_RETRYABLE_STATES or sqlstate.startswith("08")
        if isinstance(cause, pgerr.TargetServerAttributeNotMatched):
            return True
        return isinstance(
            cause, OSError | TimeoutError | asyncpg.ConnectionDoesNotExistError
        ) or (isinstance(cause, asyncpg.InterfaceError) and "closed" in str(cause))

    async def ping(self, conn: _Connection) -> None:
        await self._run(conn, conn.execute, "SELECT 1")

    def needs_reset(self, conn: _Connection) -> bool:
        return (
            conn.adc_busy
            or conn.is_closed()
            or conn.is_in_transaction()
            or conn.adc_epoch != self._epoch
        )

    async def reset(self, conn: _Connection) -> None:
        if conn.adc_busy or conn.is_closed():
            raise ConnectionLostError("connection closed or interrupted mid-statement")
        if conn.adc_epoch != self._epoch:
            raise ConnectionLostError("the server's role changed since it was opened")
        if conn.is_in_transaction():
            await self._run(conn, conn.execute, "ROLLBACK")

    async def close(self, conn: _Connection) -> None:
        if conn.is_closed():
            return
        if conn.adc_busy:
            # A statement may still run on it: a polite close would wait behind it.
            conn.terminate()
            return
        try:
            await conn.close(timeout=self.pool_settings.close_timeout)
        except Exception:
            conn.terminate()

    def abort(self, conn: _Connection) -> None:
        conn.terminate()  # closes the transport: no I/O awaited

    async def dispose(self) -> None:
        return None  # nothing beyond the connections

    # ---------------------------------------------------------------- statements

    async def _run(self, conn: _Connection, method: Any, *args: Any) -> Any:
        """Run one asyncpg call, tracking whether it finished (see ``adc_busy``)."""
        if conn.adc_epoch != self._epoch:
            # Opened before a server refused a write for its role: never reused.
            raise asyncpg.ConnectionDoesNotExistError("the server's role changed")
        conn.adc_busy = True
        try:
            result = await method(*args)
        except pgerr.PostgresError as exc:
            conn.adc_busy = False  # the server answered: the protocol is in sync
            if self._several and exc.sqlstate in ROLE_STATES:
                self._epoch += 1
            raise
        except asyncpg.InterfaceError:
            if not conn.is_closed():
                conn.adc_busy = False  # refused on the client (an argument), nothing sent
            raise
        conn.adc_busy = False
        return result

    async def execute(self, conn: _Connection, sql: str, params: Sequence[Any]) -> ExecResult:
        if params:
            status = await self._run(conn, conn.execute, to_dollar_style(sql), *params)
        else:
            status = await self._run(conn, conn.execute, sql)
        return ExecResult(rowcount=_rowcount(status))

    async def fetchall(self, conn: _Connection, sql: str, params: Sequence[Any]) -> list[Row]:
        records = await self._run(conn, conn.fetch, to_dollar_style(sql), *params)
        return [tuple(record) for record in records]

    async def copy_rows(
        self,
        conn: _Connection,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
    ) -> int:
        """``COPY table (columns) FROM STDIN`` (binary) of ``rows``; the rows copied."""
        status = await self._run(conn, _copy, conn, table, list(columns), rows)
        return _rowcount(status)

    async def begin(self, conn: _Connection) -> None:
        await self._run(conn, conn.execute, "BEGIN")

    async def commit(self, conn: _Connection) -> None:
        await self._run(conn, conn.execute, "COMMIT")

    async def rollback(self, conn: _Connection) -> None:
        if conn.is_in_transaction():
            await self._run(conn, conn.execute, "ROLLBACK")

    def translate(self, exc: Exception) -> AsyncDBClientError:
        if isinstance(exc, AsyncDBClientError):
            return exc
        message = f"{self.description}: {_message(exc)}"
        if isinstance(exc, pgerr.PostgresError):
            sqlstate = exc.sqlstate
            error_class = pg_error_class(sqlstate)
            if issubclass(error_class, QueryError):
                return error_class(message, code=sqlstate)
            return error_class(message)
        if isinstance(
            exc,
            asyncpg.ConnectionDoesNotExistError
            | OSError
            | asyncio.IncompleteReadError
            # The protocol met a message it did not expect (e.g. the FATAL a terminated
            # backend sends while the connection sat idle): its state is unknown.
            | pgerr.InternalClientError,
        ) or (isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)):
            return ConnectionLostError(f"{self.description}: connection lost: {_message(exc)}")
        # Anything else left the call unfinished on the client (``adc_busy`` stays set):
        # the connection is not reused.
        return QueryError(message)


async def _copy(
    conn: _Connection, table: str, columns: list[str], rows: Iterable[Sequence[Any]]
) -> str:
    status: str = await conn.copy_records_to_table(table, records=rows, columns=columns)
    return status
