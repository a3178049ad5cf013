"""The MySQL adapters' own pieces (aiomysql, asyncmy): parameter quoting, error mapping,
TLS options."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES

from async_db_client import (
    ConnectionLostError,
    DriverNotInstalledError,
    IntegrityError,
    QueryError,
    QueryTimeoutError,
    ServerRoleError,
    TransientQueryError,
)
from async_db_client.config import MySQLConfig
from async_db_client.drivers import make_driver
from async_db_client.drivers.aiomysql import AiomysqlDriver, quote_params, to_format_style
from tests.support.live import mysql_config, require_asyncmy


class FakeConnection:
    """Only what quote_params reads: the status flags and aiomysql's own escape()."""

    def __init__(self, status: int = 0) -> None:
        self.server_status = status
        self._charset = "utf8mb4"

    def escape(self, obj: Any) -> str:
        import aiomysql.connection

        return aiomysql.connection.Connection.escape(self, obj)  # type: ignore[arg-type]

    def escape_string(self, value: str) -> str:
        import aiomysql.connection

        return aiomysql.connection.Connection.escape_string(self, value)  # type: ignore[arg-type]


values = st.one_of(
    st.text(),
    st.integers(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)


@given(st.lists(values, max_size=20))
def test_quoting_matches_the_driver_exactly(params: list[Any]) -> None:
    for status in (0, SERVER_STATUS_NO_BACKSLASH_ESCAPES):
        conn = FakeConnection(status)
        assert quote_params(conn, params) == tuple(conn.escape(v) for v in params)


@pytest.fixture(scope="module")
def asyncmy_connection() -> Iterator[Any]:
    """An asyncmy connection, never connected: its escape() needs no server."""
    require_asyncmy()
    from async_db_client.drivers.asyncmy import _Connection

    async def make() -> _Connection:  # asyncmy binds its connections to the running loop
        return _Connection(host="h", user="u", password="pw")

    with asyncio.Runner() as runner:
        yield runner.run(make())


@given(params=st.lists(values, max_size=20))
def test_quoting_matches_asyncmy_exactly(asyncmy_connection: Any, params: list[Any]) -> None:
    conn = asyncmy_connection
    for status in (0, SERVER_STATUS_NO_BACKSLASH_ESCAPES):
        conn.server_status = status
        assert quote_params(conn, params) == tuple(conn.escape(v) for v in params)


def test_placeholders_and_percent_signs() -> None:
    assert to_format_style("SELECT '100%' WHERE a = ? AND b = ?") == (
        "SELECT '100%%' WHERE a = %s AND b = %s"
    )


def drivers() -> list[Any]:
    """Each MySQL adapter with its package's OperationalError."""

    def asyncmy() -> tuple[Any, type[Exception]]:
        require_asyncmy()
        from asyncmy.errors import OperationalError

        from async_db_client.drivers.asyncmy import AsyncmyDriver

        return AsyncmyDriver, OperationalError

    return [
        pytest.param(lambda: (AiomysqlDriver, pymysql.err.OperationalError), id="aiomysql"),
        pytest.param(asyncmy, id="asyncmy"),
    ]


@pytest.mark.parametrize("driver", drivers())
@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (2006, ConnectionLostError),
        (2013, ConnectionLostError),
        (4031, ConnectionLostError),
        (1213, TransientQueryError),
        (1205, TransientQueryError),
        (1062, IntegrityError),
        (1969, QueryTimeoutError),
        (1064, QueryError),
    ],
)
def test_error_codes_map_to_the_hierarchy(
    driver: Any, code: int, expected: type[Exception]
) -> None:
    cls, operational_error = driver()
    adapter = cls(MySQLConfig(host="h", database="d", user="u", password="pw"))
    error = adapter.translate(operational_error(code, "message"))
    assert type(error) is expected
    assert "mysql://u@h:3306/d" in str(error) and "pw" not in str(error)
    assert "pw" not in repr(adapter)


@pytest.mark.parametrize("driver", drivers())
def test_a_galera_node_outside_the_primary_component_refuses_for_its_role(driver: Any) -> None:
    # What a node answered in CI when it lost the primary component while a bulk write
    # streamed its fragments: nothing committed there, so the call may run elsewhere.
    cls, operational_error = driver()
    adapter = cls(MySQLConfig(host="h", database="d", user="u", password="pw"))
    outside = operational_error(
        1180,
        "Error while appending streaming replication fragment"
        "(provider status: Not connected to Primary Component)",
    )
    assert type(adapter.translate(outside)) is ServerRoleError
    other = operational_error(1180, "Got error 149 during COMMIT")
    assert type(adapter.translate(other)) is QueryError


def test_asyncmy_protocol_errors_are_a_lost_connection() -> None:
    """A packet out of sequence is raised by the client, without a server code: the
    stream is out of step, and the connection must not be reused."""
    require_asyncmy()
    from asyncmy import errors

    from async_db_client.drivers.asyncmy import AsyncmyDriver

    adapter = AsyncmyDriver(MySQLConfig(host="h", database="d", user="u", password="pw"))
    lost = errors.InternalError("Packet sequence number wrong - got 102 expected 1")
    assert type(adapter.translate(lost)) is ConnectionLostError
    assert type(adapter.translate(errors.InterfaceError(0, "Not connected"))) is (
        ConnectionLostError
    )
    # A server's InternalError carries its code and is mapped by it.
    assert type(adapter.translate(errors.InternalError(1062, "dup"))) is IntegrityError


@pytest.mark.parametrize("driver", drivers())
def test_tls_settings_reach_the_driver(driver: Any) -> None:
    cls, _ = driver()
    base = {"host": "h", "database": "d", "user": "u"}
    strict = cls(MySQLConfig(**base, ssl={}))
    assert strict._ssl is not None
    assert strict._ssl.verify_mode == ssl.CERT_REQUIRED and strict._ssl.check_hostname
    relaxed = cls(MySQLConfig(**base, ssl={"verify_identity": False}))
    assert relaxed._ssl is not None and not relaxed._ssl.check_hostname
    assert relaxed._ssl.verify_mode == ssl.CERT_REQUIRED
    unverified = cls(MySQLConfig(**base, ssl={"verify_cert": False}))
    assert unverified._ssl is not None and unverified._ssl.verify_mode == ssl.CERT_NONE
    assert cls(MySQLConfig(**base))._ssl is None


def test_without_asyncmy_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncmy", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "async_db_client.drivers.asyncmy", raising=False)
    config = MySQLConfig(host="h", database="d", user="u", driver="asyncmy")
    with pytest.raises(DriverNotInstalledError, match=r"async_db_client\[fast\]") as info:
        make_driver(config)
    assert info.value.extra == "fast"


@pytest.mark.asyncio
async def test_aiomysql_parses_each_column_description_once(
    mysql_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A description is parsed once, and results read alike with the cache: every column
    named and typed as the server described it, whatever was cached before; the cache
    stays within its bound."""
    import async_db_client.drivers.aiomysql as adapter

    parses: list[bytes] = []
    parse = pymysql.protocol.FieldDescriptorPacket._parse_field_descriptor

    def counted(packet: Any, encoding: str) -> None:
        parses.append(packet._data)
        parse(packet, encoding)

    monkeypatch.setattr(pymysql.protocol.FieldDescriptorPacket, "_parse_field_descriptor", counted)
    monkeypatch.setattr(adapter, "_FIELDS", {})
    driver = AiomysqlDriver(MySQLConfig.model_validate(mysql_config(mysql_database)))
    conn = await driver.connect(10)
    try:
        same = "SELECT 1 AS a, 'b' AS b, NOW() AS c"
        for _ in range(3):
            [row] = await driver.fetch_named(conn, same)
            assert list(row) == ["a", "b", "c"] and (row["a"], row["b"]) == (1, "b")
        assert len(parses) == 3, "three descriptions, each parsed on the first read only"

        monkeypatch.setattr(adapter, "FIELD_CACHE_SIZE", 8)
        for _ in range(2):
            for n in range(6):  # 18 distinct descriptions: the cache is emptied on the way
                sql = f"SELECT {n} AS n{n}, 'x{n}' AS s{n}, CAST({n} AS DECIMAL(5,2)) AS d{n}"
                rows = await driver.fetch_named(conn, sql)
                assert rows == [{f"n{n}": n, f"s{n}": f"x{n}", f"d{n}": Decimal(f"{n}.00")}]
                assert len(adapter._FIELDS) <= 8
        assert adapter._FIELDS, "descriptions were cached"
        # The connection still reads errors as errors (raised by aiomysql, never kept).
        with pytest.raises(pymysql.err.OperationalError, match="no_such_column"):
            await driver.fetchall(conn, "SELECT no_such_column FROM DUAL", ())
        assert all(not field.is_error_packet() for field in adapter._FIELDS.values())
    finally:
        conn.close()
