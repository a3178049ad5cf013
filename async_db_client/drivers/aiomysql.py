"""The aiomysql driver adapter: connections, statements and error mapping for MySQL/MariaDB.

Connections run in autocommit mode (a single statement is its own transaction, one
round trip); explicit transactions use BEGIN/COMMIT. Each connection sets the session
time zone to UTC and, on MariaDB, ``max_statement_time`` to the query timeout, so the
server itself aborts a statement that runs too long and the connection stays usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import aiomysql
import pymysql
from pymysql.protocol import FieldDescriptorPacket, MysqlPacket

from ..errors import AsyncDBClientError
from .base import ExecResult, Row
from .mysql_common import (
    CLIENT_SSL,
    CR_SSL_CONNECTION_ERROR,
    NO_TLS_OFFERED,
    MySQLDriverBase,
    connect_error,
    log_server_warnings,
    mysql_error_class,
    quote_params,
    session_setup,
    to_format_style,
    translate_error,
)

__all__ = ["AiomysqlDriver", "mysql_error_class", "quote_params", "to_format_style"]


class _Cursor(aiomysql.Cursor):  # type: ignore[misc]
    """aiomysql's cursor, reporting server warnings to the log instead of ``warnings``."""

    async def _show_warnings(self, conn: aiomysql.Connection) -> None:
        if self._result and self._result.has_next:
            return
        log_server_warnings(await conn.show_warnings() or ())


#: Parsed column descriptions by the packet's bytes and the connection's encoding (the
#: parse is a function of those alone). The library sends a fixed set of statements, so
#: this stays small; the bound only guards against a caller's ad-hoc queries.
_FIELDS: dict[tuple[bytes, str], FieldDescriptorPacket] = {}
FIELD_CACHE_SIZE = 4096


def _field(data: bytes, encoding: str) -> FieldDescriptorPacket:
    """The column description of ``data``, parsed once per distinct packet.

    Every text-protocol result repeats its columns' descriptions (11 packets for a hash
    record), and PyMySQL parses each into an object field by field: on a point read that
    was a quarter of the client's CPU. A parsed packet is only read afterwards (name,
    type, charset, flags), never advanced, so one instance serves every result. Error
    packets are never kept: aiomysql raises them as they arrive.
    """
    key = (data, encoding)
    field = _FIELDS.get(key)
    if field is None:
        field = FieldDescriptorPacket(data, encoding)
        if not field.is_error_packet():
            if len(_FIELDS) >= FIELD_CACHE_SIZE:
                _FIELDS.clear()
            _FIELDS[key] = field
    return field


class _Connection(aiomysql.Connection):  # type: ignore[misc]
    """aiomysql's connection, refusing to log in without TLS when TLS is configured, and
    parsing a result's column descriptions once per distinct description (:func:`_field`).

    aiomysql alone skips TLS, silently, when the server's greeting does not offer it (a
    server without TLS, or anyone in between who strips the flag), and then sends the
    login and every statement in plaintext.
    """

    async def _request_authentication(self) -> None:
        if self._ssl_context is not None and not self.server_capabilities & CLIENT_SSL:
            raise pymysql.err.OperationalError(CR_SSL_CONNECTION_ERROR, NO_TLS_OFFERED)
        await super()._request_authentication()

    # A plain function returning aiomysql's coroutine: no extra frame per packet.
    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        if packet_type is FieldDescriptorPacket:
            packet_type = _field
        return super()._read_packet(packet_type)


class AiomysqlDriver(MySQLDriverBase):
    """Adapts aiomysql to :class:`~async_db_client.drivers.base.Driver`."""

    # ------------------------------------------------------------------ connector

    async def connect(self, timeout: float) -> aiomysql.Connection:
        conn = _Connection(
            db=self.config.database,
            # None: aiomysql would bound the TCP connect with asyncio.wait_for, which on
            # Python 3.11 loses a cancellation arriving as the connect completes (a pool
            # closing then waited the whole timeout). asyncio.timeout below bounds it.
            connect_timeout=None,
            **self._connect_args(),
        )
        try:
            # aiomysql.connect() leaves the socket open if cancelled mid-handshake.
            async with asyncio.timeout(timeout):
                await conn._connect()
                await self._configure(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, pymysql.err.MySQLError):
                raise connect_error(self.description, exc) from None
            raise
        return conn

    async def _configure(self, conn: aiomysql.Connection) -> None:
        self.server_version = conn.get_server_info()
        setup = session_setup(self.server_version, self.config)
        async with conn.cursor(_Cursor) as cursor:
            await cursor.execute(setup)

    def _closed(self, conn: aiomysql.Connection) -> bool:
        return bool(conn.closed)

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

    async def fetch_named(self, conn: aiomysql.Connection, sql: str) -> list[dict[str, Any]]:
        async with conn.cursor(_Cursor) as cursor:
            await cursor.execute(sql)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]

    def translate(self, exc: Exception) -> AsyncDBClientError:
        return translate_error(
            self.description,
            exc,
            lost=(pymysql.err.InterfaceError, OSError, asyncio.IncompleteReadError),
            server=pymysql.err.MySQLError,
        )
