"""The ``postgresql`` tier config: its keys, defaults and errors (no server needed)."""

from __future__ import annotations

from typing import Any

import pytest

from async_db_client.config import PostgreSQLConfig, parse_config
from async_db_client.errors import ConfigurationError

SECRET = "pg-S3cret'pw"


def _config(tier: str = "remote", **keys: Any) -> dict[str, Any]:
    base = {"host": "db.example", "database": "hashes", "user": "app", "password": SECRET}
    return {"database": {f"{tier}_type": "postgresql", f"{tier}_config": {**base, **keys}}}


@pytest.mark.parametrize("tier", ["remote", "core", "pipeline"])
def test_every_tier_accepts_postgresql(tier: str) -> None:
    config = parse_config(_config(tier)).database.tier(tier)
    assert isinstance(config, PostgreSQLConfig)
    assert config.port == 5432
    assert config.addresses == [("db.example", 5432)]
    assert config.pgbouncer is False and config.ssl is None and config.auto_migrate
    assert config.describe() == "postgresql://app@db.example:5432/hashes"
    assert SECRET not in repr(config) and SECRET not in config.describe()


def test_ssl_pool_pgbouncer_and_hosts() -> None:
    config = parse_config(
        _config(
            host=None,
            hosts=["a", "b:6432", "[::1]:5433"],
            ssl={"sslmode": "verify-ca", "ca": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"},
            pgbouncer=True,
            pool={"max_size": 3},
            auto_migrate=False,
        )
    ).database.remote_config
    assert isinstance(config, PostgreSQLConfig)
    assert config.addresses == [("a", 5432), ("b", 6432), ("::1", 5433)]
    assert config.ssl is not None and config.ssl.sslmode == "verify-ca"
    assert config.pgbouncer and config.pool.max_size == 3 and not config.auto_migrate
    assert config.describe() == "postgresql://app@a:5432,b:6432,[::1]:5433/hashes"
    assert parse_config(_config(ssl={})).database.remote_config.ssl.sslmode == "verify-full"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("keys", "key"),
    [
        ({"host": None}, "database.remote_config.host"),
        ({"hosts": []}, "database.remote_config.hosts"),
        ({"host": None, "hosts": ["a", "a:5432"]}, "database.remote_config.hosts.1"),
        ({"host": None, "hosts": ["a:99999"]}, "database.remote_config.hosts.0"),
        ({"hosts": ["b"]}, "database.remote_config.hosts"),
        ({"port": 0}, "database.remote_config.port"),
        ({"database": "d" * 64}, "database.remote_config.database"),
        ({"ssl": {"sslmode": "verify"}}, "database.remote_config.ssl.sslmode"),
        ({"ssl": {"cert": "/c.pem"}}, "database.remote_config.ssl.key"),
        ({"ssl": {"sslmode": "disable", "ca": "/ca.pem"}}, "database.remote_config.ssl.ca"),
        ({"pgbouncer": "sometimes"}, "database.remote_config.pgbouncer"),
        ({"driver": "psycopg"}, "database.remote_config.driver"),
        ({"pool": {"max_size": 0}}, "database.remote_config.pool.max_size"),
        ({"hosts": None, "ha_mode": "galera"}, "database.remote_config.ha_mode"),
        ({"read_consistency": "strong"}, "database.remote_config.read_consistency"),
        ({"max_replication_lag": 0}, "database.remote_config.max_replication_lag"),
    ],
)
def test_bad_keys_are_named_never_the_password(keys: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(_config(**keys))
    assert info.value.key == key
    assert SECRET not in str(info.value)


def test_same_server_and_credentials_share_a_pool_key() -> None:
    one = parse_config(_config()).database.remote_config
    two = parse_config(_config()).database.remote_config
    other = parse_config(_config(password="another")).database.remote_config
    bouncer = parse_config(_config(pgbouncer=True)).database.remote_config
    assert isinstance(one, PostgreSQLConfig) and isinstance(two, PostgreSQLConfig)
    assert isinstance(other, PostgreSQLConfig) and isinstance(bouncer, PostgreSQLConfig)
    assert one.pool_key() == two.pool_key()
    assert one.pool_key() != other.pool_key() != bouncer.pool_key()
    assert SECRET not in repr(one.pool_key())


def test_without_asyncpg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from async_db_client.drivers import make_driver
    from async_db_client.errors import DriverNotInstalledError

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "async_db_client.drivers.asyncpg", raising=False)
    config = PostgreSQLConfig(host="h", database="d", user="u")
    with pytest.raises(DriverNotInstalledError, match=r"async_db_client\[postgresql\]") as info:
        make_driver(config)
    assert info.value.extra == "postgresql"


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT a FROM t WHERE b = ? AND c = ?", "SELECT a FROM t WHERE b = $1 AND c = $2"),
        ("SELECT '?' , \"a?\" FROM t WHERE b = ?", "SELECT '?' , \"a?\" FROM t WHERE b = $1"),
        ("SELECT 'it''s ?' WHERE x = ?", "SELECT 'it''s ?' WHERE x = $1"),
        ("SELECT 1", "SELECT 1"),
    ],
)
def test_placeholders_become_numbered_outside_quotes(sql: str, expected: str) -> None:
    pytest.importorskip("asyncpg")
    from async_db_client.drivers.asyncpg import to_dollar_style

    assert to_dollar_style(sql) == expected


def test_sqlstates_map_into_the_hierarchy() -> None:
    pytest.importorskip("asyncpg")
    from async_db_client.drivers.asyncpg import pg_error_class
    from async_db_client.errors import (
        ConnectionLostError,
        IntegrityError,
        QueryError,
        QueryTimeoutError,
        ServerRoleError,
        TransientQueryError,
    )

    assert pg_error_class("40001") is TransientQueryError  # serialization_failure
    assert pg_error_class("40P01") is TransientQueryError  # deadlock_detected
    assert pg_error_class("55P03") is TransientQueryError  # lock_not_available
    assert pg_error_class("25006") is ServerRoleError  # read_only_sql_transaction
    assert pg_error_class("57014") is QueryTimeoutError  # query_canceled
    assert pg_error_class("57P01") is ConnectionLostError  # admin_shutdown
    assert pg_error_class("08006") is ConnectionLostError  # connection_failure
    assert pg_error_class("23505") is IntegrityError  # unique_violation
    assert pg_error_class("23502") is IntegrityError  # not_null_violation
    assert pg_error_class("42P01") is QueryError  # undefined_table
    assert pg_error_class(None) is QueryError


def test_several_hosts_are_routed_one_host_is_not() -> None:
    routed = parse_config(_config(host=None, hosts=["a", "b:5433"])).database.remote_config
    assert isinstance(routed, PostgreSQLConfig) and routed.routed
    assert routed.ha_mode == "replication" and routed.read_consistency == "read_your_writes"
    assert routed.max_replication_lag == 5.0
    one = routed.for_host("b", 5433)
    assert (one.hosts, one.addresses, one.routed) == (None, [("b", 5433)], False)
    single = parse_config(_config(host=None, hosts=["a"])).database.remote_config
    assert isinstance(single, PostgreSQLConfig) and not single.routed
    with pytest.raises(ConfigurationError) as info:
        parse_config(_config(host=None, hosts=["a", "b"], ha_mode="sequential"))
    assert "ha_mode" in str(info.value) and "'replication'" in str(info.value)
