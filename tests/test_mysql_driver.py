"""The aiomysql adapter's own pieces: parameter quoting, error mapping, TLS options."""

from __future__ import annotations

import ssl
from typing import Any

import pymysql
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES

from async_db_client import (
    ConnectionLostError,
    IntegrityError,
    QueryError,
    QueryTimeoutError,
    TransientQueryError,
)
from async_db_client.config import MySQLConfig
from async_db_client.drivers.aiomysql import AiomysqlDriver, quote_params, to_format_style


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
        assert quote_params(conn, params) == tuple(conn.escape(v) for v in params)  # type: ignore[arg-type]


def test_placeholders_and_percent_signs() -> None:
    assert to_format_style("SELECT '100%' WHERE a = ? AND b = ?") == (
        "SELECT '100%%' WHERE a = %s AND b = %s"
    )


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
def test_error_codes_map_to_the_hierarchy(code: int, expected: type[Exception]) -> None:
    driver = AiomysqlDriver(MySQLConfig(host="h", database="d", user="u", password="pw"))
    error = driver.translate(pymysql.err.OperationalError(code, "message"))
    assert type(error) is expected
    assert "mysql://u@h:3306/d" in str(error) and "pw" not in str(error)


def test_tls_settings_reach_the_driver(tmp_path: Any) -> None:
    base = {"host": "h", "database": "d", "user": "u"}
    strict = AiomysqlDriver(MySQLConfig(**base, ssl={}))
    assert strict._ssl is not None
    assert strict._ssl.verify_mode == ssl.CERT_REQUIRED and strict._ssl.check_hostname
    relaxed = AiomysqlDriver(MySQLConfig(**base, ssl={"verify_identity": False}))
    assert relaxed._ssl is not None and not relaxed._ssl.check_hostname
    assert relaxed._ssl.verify_mode == ssl.CERT_REQUIRED
    unverified = AiomysqlDriver(MySQLConfig(**base, ssl={"verify_cert": False}))
    assert unverified._ssl is not None and unverified._ssl.verify_mode == ssl.CERT_NONE
    assert AiomysqlDriver(MySQLConfig(**base))._ssl is None
