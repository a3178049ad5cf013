"""Live MariaDB for the tests: reachability, a database per test session, configs.

With ``CI=true`` a live test that cannot reach the server fails; elsewhere it is
skipped with a reason saying how to start the server. The server is the one on
127.0.0.1:3306 (override with ``ADC_TEST_MYSQL_HOST`` / ``_PORT`` / ``_USER`` /
``_PASSWORD``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest

from tests.support.waiting import PATIENCE

MYSQL: dict[str, Any] = {
    "host": os.environ.get("ADC_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ADC_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("ADC_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("ADC_TEST_MYSQL_PASSWORD", ""),
}
HOW_TO_START = (
    "start MariaDB with tools/ensure_mariadb.sh (or: mkdir -p /run/mysqld && chown mysql "
    "/run/mysqld; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd "
    "-- --user=mysql)"
)
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(message: str) -> None:
    """Fail under CI, skip elsewhere: a live test is never silently skipped in CI."""
    if IN_CI:
        pytest.fail(f"{message} (CI=true: live tests must run)", pytrace=False)
    pytest.skip(message)


def connect(database: str | None = None, **overrides: Any) -> pymysql.connections.Connection:
    return pymysql.connect(
        **{**MYSQL, **overrides},
        database=database,
        connect_timeout=3,
        autocommit=True,
        charset="utf8mb4",
    )


def require_mysql() -> None:
    try:
        connect().close()
    except Exception as exc:
        unavailable(
            f"MariaDB not reachable at {MYSQL['host']}:{MYSQL['port']} ({exc}); {HOW_TO_START}"
        )


#: The MySQL drivers, for the live tests that run on each.
MYSQL_DRIVERS = ("aiomysql", "asyncmy")


def require_asyncmy() -> None:
    """asyncmy (the ``fast`` extra) must be installed."""
    try:
        import asyncmy  # noqa: F401
    except ImportError:
        unavailable("asyncmy is not installed: pip install 'async_db_client[fast]'")


def require_driver(driver: str) -> None:
    """The MySQL driver a live test runs on must be installed (aiomysql always is)."""
    if driver == "asyncmy":
        require_asyncmy()


def is_closed(raw: Any) -> bool:
    """Whether a raw MySQL connection, of either driver, is closed."""
    connected = getattr(raw, "connected", None)  # asyncmy's; aiomysql says ``closed``
    return not connected if connected is not None else bool(raw.closed)


def unique_name(prefix: str) -> str:
    """A name for something server-wide (a database, a user) that no other test run on the
    same server can hold: CI and developers may run the suite against one server at once."""
    return f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"


def create_database(prefix: str = "adc_test") -> str:
    name = unique_name(prefix)
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


def drop_database(name: str) -> None:
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture(scope="session")
def mysql_database() -> Iterator[str]:
    """A database of this test session's own, dropped at the end."""
    require_mysql()
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this test alone (for counting the server's connections to it)."""
    require_mysql()
    name = create_database("adc_own")
    try:
        yield name
    finally:
        drop_database(name)


def mysql_config(
    database: str, *, pool: dict[str, Any] | None = None, **tier: Any
) -> dict[str, Any]:
    """A ``remote_config``/``core_config`` dict for the live server."""
    return {
        "host": MYSQL["host"],
        "port": MYSQL["port"],
        "database": database,
        "user": MYSQL["user"],
        "password": MYSQL["password"],
        "pool": {"min_size": 1, "max_size": 8, "acquire_timeout": 10, **(pool or {})},
        **tier,
    }


def client_config(
    database: str, tiers: tuple[str, ...] = ("remote", "core"), **kw: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for tier in tiers:
        config[f"{tier}_type"] = "mysql"
        config[f"{tier}_config"] = mysql_config(database, **kw)
    return {"database": config}


TABLES = {
    "remote": ("hash_records", "remote_logs"),
    "core": ("core_sites", "core_baselines", "core_logs"),
    "pipeline": ("pipeline_updates", "pipeline_sites", "pipeline_completions"),
}


def empty_tables(database: str, tier: str) -> None:
    with connect(database) as conn, conn.cursor() as cursor:
        for table in TABLES[tier]:
            cursor.execute(f"DELETE FROM {table}")


@contextlib.asynccontextmanager
async def live_client(
    database: str, *, driver: str | None = None, **settings: Any
) -> AsyncIterator[Any]:
    """A client of the remote tier on ``database`` with these pool ``settings``, migrated,
    logged in and with empty tables.

    The migration runs first on a client of the default settings, and the test's pool
    makes its first connection under a generous deadline: a test's short timeouts are
    for what it tests, never for logging in or migrating (another run on the same server
    may hold the server-wide migration lock) on a loaded machine."""
    from async_db_client import DBClientFactory

    async with DBClientFactory(client_config(database, tiers=("remote",))).create_client() as admin:
        await admin.migrate()
    tier = {} if driver is None else {"driver": driver}
    config = client_config(database, tiers=("remote",), pool=settings, **tier)
    async with DBClientFactory(config).create_client() as db:
        pool = executor_of(db).pool
        await pool.release(await pool.acquire(timeout=PATIENCE))
        await db.migrate()  # only reads the version now: marks the tier ready
        empty_tables(database, "remote")
        yield db


def executor_of(db: Any) -> Any:
    """The executor behind a client's SQL remote tier (for statements of a test's own)."""
    from async_db_client.backends.sql import SQLRemoteStore

    assert isinstance(db.remote_db.store, SQLRemoteStore)
    return db.remote_db.store.executor


async def connection_id(executor: Any) -> int:
    """The server's id of the connection the executor hands out next."""
    row = await executor.fetchone("SELECT CONNECTION_ID()")
    assert row is not None
    return int(row[0])


def server_connections(database: str) -> int:
    """Connections the server has open to ``database`` (SHOW PROCESSLIST)."""
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("SHOW PROCESSLIST")
        return sum(1 for row in cursor.fetchall() if row[3] == database)


def running(database: str, text: str) -> list[int]:
    """Ids of the server's connections to ``database`` running a statement that contains
    ``text`` now: a statement seen from the server's side (started, not yet finished)."""
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            # Any command: ODBC's statements show as "Execute", aiomysql's as "Query".
            "SELECT id FROM information_schema.processlist WHERE db = %s AND LOCATE(%s, info) > 0",
            (database, text),
        )
        return [int(row[0]) for row in cursor.fetchall()]


def connection_gone(conn_id: int) -> bool:
    """True once the server no longer lists connection ``conn_id`` (killed or closed)."""
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE id = %s", (conn_id,)
        )
        (count,) = cursor.fetchone()
        return int(count) == 0


def open_transactions(database: str) -> int:
    """Transactions open on the server in connections to ``database``."""
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.innodb_trx trx"
            " JOIN information_schema.processlist p ON p.id = trx.trx_mysql_thread_id"
            " WHERE p.db = %s",
            (database,),
        )
        (count,) = cursor.fetchone()
        return int(count)


#: Every table the library creates (the version table included).
LIBRARY_TABLES = (
    *(table for tables in TABLES.values() for table in tables),
    "async_db_client_schema",
)
#: What a runtime user needs once an admin has applied the migrations: nothing more.
RUNTIME_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True)
class LeastPrivilegeDatabase:
    """A migrated database and a user holding only :data:`RUNTIME_PRIVILEGES` on its
    tables."""

    database: str
    user: str
    password: str


async def migrate_all_tiers(database: str) -> None:
    """Apply every tier's migrations as the admin (root) user."""
    from async_db_client import DBClientFactory
    from async_db_client.backends.registry import build_tier
    from async_db_client.config import MySQLConfig

    config = client_config(database, tiers=("remote", "core"))
    async with DBClientFactory(config).create_client() as client:
        await client.migrate()
        # The pipeline tier is SQL Server's in production; its MySQL SQL runs in the tests.
        pipeline = build_tier(
            "pipeline", MySQLConfig(**mysql_config(database)), client.pools, None
        )
        await pipeline.migrate()


def grant_runtime_user(database: str, user: str, password: str) -> None:
    """Create ``user`` with SELECT/INSERT/UPDATE/DELETE on the library's tables only."""
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
        for table in LIBRARY_TABLES:
            cursor.execute(
                f"GRANT {RUNTIME_PRIVILEGES} ON `{database}`.`{table}` TO %s@'%%'", (user,)
            )


def drop_user(user: str) -> None:
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))


@pytest.fixture(scope="session")
def mysql_least_privilege() -> Iterator[LeastPrivilegeDatabase]:
    """A database migrated by root, and a runtime user with DML rights on its tables only;
    both dropped at the end of the session."""
    require_mysql()
    database = create_database("adc_lp")
    user = unique_name("adc_lp")
    # Characters that need quoting in SQL, ODBC and URLs, so a leak or a quoting bug shows.
    password = f"lp'P\\w\"d;%{{}}@{secrets.token_hex(4)}"
    try:
        asyncio.run(migrate_all_tiers(database))
        grant_runtime_user(database, user, password)
        yield LeastPrivilegeDatabase(database, user, password)
    finally:
        drop_user(user)
        drop_database(database)
