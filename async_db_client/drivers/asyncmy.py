"""The asyncmy driver adapter (``driver: asyncmy``, the ``fast`` extra) for MySQL/MariaDB.

asyncmy speaks the same protocol as aiomysql with its core in Cython, and offers
server-side prepared statements (the binary protocol). This adapter keeps every
guarantee of the aiomysql one (:mod:`async_db_client.drivers.aiomysql`), with the pieces
they share in :mod:`async_db_client.drivers.mysql_common`:

* **TLS never falls back to plaintext**: with ``ssl`` configured, a server whose
  greeting offers no TLS is refused before the login is sent; a certificate, host name
  or protocol failure is reported as "TLS failed" and never retried.
* **Session**: autocommit (explicit transactions use BEGIN/COMMIT), UTC, and on MariaDB
  ``max_statement_time`` set to the query timeout, so the server aborts a statement that
  runs too long and the connection stays usable.
* **Errors** map by code as :func:`~async_db_client.drivers.mysql_common.mysql_error_class`
  says; a dead stream, and a client-side protocol error (a packet out of sequence), are a
  lost connection, which the pool discards.
* **Cancel-safe**: asyncmy (0.2.12 and later) closes a connection whose read was
  cancelled, so a half-read result never reaches the next user; the executor also marks
  such a connection broken.
* **No password** in ``repr``, logs or errors: it is passed to asyncmy only.

Statements with parameters (up to :data:`MAX_PREPARED_PARAMS`) run as prepared
statements, cached per connection (the :data:`STATEMENT_CACHE` most recently used): the
server parses each once per connection, parameters go in binary without quoting, and
rows come back without text parsing, about twice the point reads of the text protocol.
Statements without parameters, and the large ones used once (bulk writes, long ``IN``
lists), run as text with parameters quoted on the client, as in the aiomysql adapter;
so does a statement the server will not prepare, or not now (its limit on prepared
statements, shared by all its clients, reached): never an error of its own.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from typing import Any

from asyncmy import errors
from asyncmy.connection import Connection, PreparedStatement

from ..errors import AsyncDBClientError
from .base import ExecResult, Row
from .mysql_common import (
    CLIENT_SSL,
    CR_SSL_CONNECTION_ERROR,
    NO_TLS_OFFERED,
    MySQLDriverBase,
    connect_error,
    error_code,
    log_server_warnings,
    quote_params,
    session_setup,
    to_format_style,
    translate_error,
)

__all__ = ["MAX_PREPARED_PARAMS", "STATEMENT_CACHE", "AsyncmyDriver"]

#: Prepared statements kept per connection. The server's ``max_prepared_stmt_count``
#: (16,382 by default) is shared by every client of the server, so each connection takes
#: few: the library's hot statements are far fewer.
STATEMENT_CACHE = 32
#: Statements with more parameters are multi-row writes and long lists, each run once or
#: rarely: preparing them would cost a round trip and a slot for nothing.
MAX_PREPARED_PARAMS = 64

ER_PARSE_ERROR = 1064
ER_UNSUPPORTED_PS = 1295  # "This command is not supported in the prepared statement protocol"
CLIENT_ERRORS = 2000  # codes from here on are the client's (CR_*): the connection failed

# The driver's exceptions meaning the stream is gone (OSError covers resets, broken
# pipes and socket timeouts).
_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    errors.InterfaceError,
    OSError,
    asyncio.IncompleteReadError,
)


class _Connection(Connection):
    """asyncmy's connection, with its prepared statements, refusing to log in without
    TLS when TLS is configured.

    asyncmy alone, given an ssl context, starts TLS whatever the server's greeting says:
    a server without TLS (or anyone in between who strips the flag) then fails the
    handshake with "wrong version number". Refused here first, the error says why.
    """

    # Declared for the type checker: asyncmy's stubs leave out its Cython base class's
    # attributes and the handshake methods.
    server_status: int
    server_capabilities: int
    _ssl_context: ssl.SSLContext | None
    _connect_timeout: float | None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        # Bounded by asyncio.timeout in AsyncmyDriver.connect instead: asyncmy bounds the
        # TCP connect with asyncio.wait_for, which on Python 3.11 can lose a cancellation
        # arriving as the connect completes (a closing pool would then wait it out).
        self._connect_timeout = None
        #: Prepared statements by SQL text, least recently used first.
        self.statements: dict[str, PreparedStatement] = {}
        #: Statements the server cannot prepare: run as text from then on.
        self.unpreparable: set[str] = set()

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & CLIENT_SSL:
            raise errors.OperationalError(CR_SSL_CONNECTION_ERROR, NO_TLS_OFFERED)
        await super()._request_authentication()  # type: ignore[misc]


class AsyncmyDriver(MySQLDriverBase):
    """Adapts asyncmy to :class:`~async_db_client.drivers.base.Driver`."""

    # ------------------------------------------------------------------ connector

    async def connect(self, timeout: float) -> _Connection:
        conn = _Connection(database=self.config.database, **self._connect_args())
        try:
            async with asyncio.timeout(timeout):
                await conn.connect()
                await self._configure(conn)
        except BaseException as exc:
            conn.close()  # asyncmy closes on its own failures, not on our timeout's
            if isinstance(exc, errors.MySQLError):
                raise connect_error(self.description, exc) from None
            raise
        return conn

    async def _configure(self, conn: _Connection) -> None:
        self.server_version = conn.get_server_info()
        setup = session_setup(self.server_version, self.config)
        await self._run(conn, setup, ())

    def _closed(self, conn: _Connection) -> bool:
        return not conn.connected

    # ---------------------------------------------------------------- statements

    async def _run(self, conn: _Connection, sql: str, params: Sequence[Any]) -> Any:
        """Run one statement; its result (``rows``, ``affected_rows``, ``insert_id``)."""
        result = await self._send(conn, sql, params)
        if result.warning_count:
            log_server_warnings(await conn.show_warnings() or ())
        return result

    async def _send(self, conn: _Connection, sql: str, params: Sequence[Any]) -> Any:
        if params and len(params) <= MAX_PREPARED_PARAMS:
            statements = conn.statements
            stmt = statements.pop(sql, None)
            if stmt is None:
                stmt = await self._prepare(conn, sql)
            if stmt is not None:
                statements[sql] = stmt  # (again) the most recently used
                # asyncmy binds a list or tuple; any other sequence would be one value.
                if not isinstance(params, list | tuple):
                    params = tuple(params)
                return await stmt.execute(params)
        if params:
            sql = to_format_style(sql) % quote_params(conn, params)
        await conn.query(sql)
        return conn._result  # type: ignore[attr-defined]

    async def _prepare(self, conn: _Connection, sql: str) -> PreparedStatement | None:
        """``sql`` prepared on ``conn`` and cached, or None to run it as text."""
        if sql in conn.unpreparable:
            return None
        try:
            stmt: PreparedStatement = await conn.prepare(sql)
        except errors.MySQLError as exc:
            code = error_code(exc)
            if code is None or code >= CLIENT_ERRORS:
                raise  # the connection failed, not the statement
            # The server refused to prepare it: the text protocol runs it, or fails with
            # the statement's own error (an error path only, one round trip more).
            # Statements it can never prepare (some commands; multiple statements, or a
            # placeholder where the grammar wants a literal, which parse only as text)
            # are not asked again; a missing table or the server's limit on prepared
            # statements (shared by all its clients) may pass.
            if code in (ER_UNSUPPORTED_PS, ER_PARSE_ERROR):
                conn.unpreparable.add(sql)
            return None
        statements = conn.statements
        if len(statements) >= STATEMENT_CACHE:
            await statements.pop(next(iter(statements))).close()
        return stmt

    async def execute(self, conn: _Connection, sql: str, params: Sequence[Any]) -> ExecResult:
        result = await self._run(conn, sql, params)
        return ExecResult(rowcount=result.affected_rows, lastrowid=result.insert_id or None)

    async def fetchall(self, conn: _Connection, sql: str, params: Sequence[Any]) -> list[Row]:
        rows = (await self._run(conn, sql, params)).rows
        return list(rows) if rows else []

    async def fetch_named(self, conn: _Connection, sql: str) -> list[dict[str, Any]]:
        result = await self._run(conn, sql, ())
        names = [column[0] for column in result.description or ()]
        return [dict(zip(names, row, strict=True)) for row in result.rows or ()]

    def translate(self, exc: Exception) -> AsyncDBClientError:
        lost = _STREAM_ERRORS
        if isinstance(exc, errors.InternalError) and error_code(exc) is None:
            # Raised by the client, not the server ("Packet sequence number wrong"): the
            # stream is out of step, so the connection is as good as lost.
            lost = (*_STREAM_ERRORS, errors.InternalError)
        return translate_error(self.description, exc, lost=lost, server=errors.MySQLError)
