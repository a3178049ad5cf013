"""Fixtures for testing code that uses async_db_client (a pytest plugin).

Installed with the package (the ``pytest11`` entry point ``async_db_client``); it only
adds fixtures and three options, and does nothing until a test asks for one of them.
Opt out with ``-p no:async_db_client`` (or ``addopts = "-p no:async_db_client"``).

* ``adb_clock``: the :class:`~async_db_client.FakeClock` the clients below use
  (2024-01-08 10:30 UTC until the test moves it).
* ``adb_client``: an async client over the in-memory fakes of all three tiers, fresh
  for each test and closed after it. It needs no event loop to be made or closed, so
  it works under pytest-asyncio (strict or auto) and anyio's plugin alike.
* ``adb_sync_client``: the same, through the blocking facade (``async_db_client.sync``).
* ``adb_sqlite_client``: an async client whose three tiers share an SQLite file in
  ``tmp_path``.
* ``adb_mysql_client``: the remote and core tiers on a MySQL/MariaDB server given by
  ``--adb-mysql-url mysql://user:password@host:3306/prefix`` (or the ``adb_mysql_url``
  ini option, or ``$ADB_MYSQL_URL``; skipped when none is given); the pipeline tier in
  memory (it is SQL Server's). Each xdist worker (or the one process) gets a database
  of its own, ``<prefix>_<worker>_<random>`` (prefix default ``adb_test``), created at
  the first use and dropped at the end; the library's tables are emptied before each
  test. The user needs CREATE and DROP on such databases.
* ``adb_postgresql_client``: all three tiers on a PostgreSQL server given by
  ``--adb-postgresql-url postgresql://user:password@host:5432/prefix`` (or the
  ``adb_postgresql_url`` ini option, or ``$ADB_POSTGRESQL_URL``; ``?sslmode=...`` is
  passed on; skipped when none is given), through asyncpg (the ``postgresql`` extra).
  One database per xdist worker as for MySQL (``adb_postgresql_database``), tables
  emptied before each test. The user needs CREATEDB.

The three SQL clients open their pools in the test's event loop and are closed in it:
under pytest-asyncio they are pytest-asyncio fixtures of function loop scope (the
default), under anyio (tests marked ``anyio``) anyio runs them, so use them from async
tests. ``adb_client`` and ``adb_sync_client`` work from any test.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

__all__ = [
    "adb_client",
    "adb_clock",
    "adb_mysql_client",
    "adb_mysql_database",
    "adb_postgresql_client",
    "adb_postgresql_database",
    "adb_sqlite_client",
    "adb_sync_client",
]

START = datetime(2024, 1, 8, 10, 30, tzinfo=UTC)
LOCAL = {"remote_type": "local", "core_type": "local", "pipeline_type": "local"}
URL_OPTIONS = {
    "mysql": ("--adb-mysql-url", "adb_mysql_url", "ADB_MYSQL_URL"),
    "postgresql": ("--adb-postgresql-url", "adb_postgresql_url", "ADB_POSTGRESQL_URL"),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("async_db_client", "async_db_client fixtures")
    for engine, (option, ini, env) in URL_OPTIONS.items():
        help_text = (
            f"{engine} server for the adb_{engine}_client fixture, as "
            f"{engine}://user:password@host:port/prefix (also ${env})"
        )
        group.addoption(option, dest=ini, default=None, metavar="URL", help=help_text)
        parser.addini(ini, help_text, default=None)


def _url(config: pytest.Config, engine: str) -> str | None:
    _, ini, env = URL_OPTIONS[engine]
    value = config.getoption(ini) or config.getini(ini) or os.environ.get(env)
    return str(value) if value else None


def _close(client: Any) -> None:
    """Close an in-memory client: it holds nothing bound to a loop, so any loop will do
    (a thread of its own if this one runs a loop)."""

    def close() -> None:
        asyncio.run(client.aclose())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        close()
        return
    thread = threading.Thread(target=close)
    thread.start()
    thread.join()


@pytest.fixture
def adb_clock() -> Any:
    """The fake clock of ``adb_client`` and ``adb_sync_client`` (and the SQL clients)."""
    from async_db_client import FakeClock

    return FakeClock(START)


def _in_memory(factory: Any, clock: Any, close: Callable[[Any], None]) -> Iterator[Any]:
    """A client of ``factory`` over the in-memory fakes of all three tiers, closed with
    ``close`` after the test."""
    client = factory({"database": LOCAL}, clock=clock).create_client()
    try:
        yield client
    finally:
        close(client)


@pytest.fixture
def adb_client(adb_clock: Any) -> Iterator[Any]:
    """An async client over the in-memory fakes of all three tiers, fresh per test."""
    from async_db_client import DBClientFactory

    yield from _in_memory(DBClientFactory, adb_clock, _close)


@pytest.fixture
def adb_sync_client(adb_clock: Any) -> Iterator[Any]:
    """The blocking facade over the in-memory fakes of all three tiers, fresh per test."""
    from async_db_client.sync import DBClientFactory

    yield from _in_memory(DBClientFactory, adb_clock, lambda client: client.close())


# ------------------------------------------------------------------ SQL clients


def _server(
    url: str, engine: str, schemes: tuple[str, ...], port: int, user: str
) -> tuple[dict[str, Any], str]:
    """The server settings of the ``--adb-<engine>-url`` ``url`` (one of ``schemes``;
    ``port`` and ``user`` by default), and its query string."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise pytest.UsageError(f"--adb-{engine}-url must start with {schemes[0]}:// ({url!r})")
    server = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or port,
        "user": unquote(parts.username or user),
        "password": unquote(parts.password or ""),
        "prefix": parts.path.strip("/") or "adb_test",
    }
    return server, parts.query


def _mysql_server(url: str) -> dict[str, Any]:
    return _server(url, "mysql", ("mysql", "mariadb"), 3306, "root")[0]


def _admin(server: dict[str, Any], database: str | None = None) -> Any:
    import pymysql

    keys = ("host", "port", "user", "password")
    settings = {key: server[key] for key in keys}
    return pymysql.connect(**settings, database=database, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def adb_mysql_database(request: pytest.FixtureRequest) -> Iterator[tuple[dict[str, Any], str]]:
    """(server settings, database name): this worker's database, dropped at the end."""
    url = _url(request.config, "mysql")
    if url is None:
        pytest.skip(
            "no MySQL/MariaDB server given (--adb-mysql-url, adb_mysql_url, $ADB_MYSQL_URL)"
        )
    server = _mysql_server(url)
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    name = f"{server['prefix']}_{worker}_{secrets.token_hex(3)}"
    with contextlib.closing(_admin(server)) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    try:
        yield server, name
    finally:
        with contextlib.closing(_admin(server)) as conn, conn.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")


def _empty_tables(server: dict[str, Any], database: str) -> None:
    with contextlib.closing(_admin(server, database)) as conn, conn.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        for (table,) in cursor.fetchall():
            if table != "async_db_client_schema":
                cursor.execute(f"DELETE FROM `{table}`")


@pytest.fixture
def _adb_sqlite_config(tmp_path: Any) -> dict[str, Any]:
    tier = {"path": str(tmp_path / "adb.sqlite3")}
    return {
        f"{name}_{key}": value
        for name in ("remote", "core", "pipeline")
        for key, value in (("type", "sqlite"), ("config", tier))
    }


@pytest.fixture
def _adb_mysql_config(adb_mysql_database: tuple[dict[str, Any], str]) -> dict[str, Any]:
    server, database = adb_mysql_database
    _empty_tables(server, database)
    keys = ("host", "port", "user", "password")
    tier = {**{key: server[key] for key in keys}, "database": database}
    return {
        "remote_type": "mysql",
        "remote_config": tier,
        "core_type": "mysql",
        "core_config": tier,
        "pipeline_type": "local",
    }


async def _open_client(config: dict[str, Any], clock: Any) -> AsyncIterator[Any]:
    from async_db_client import DBClientFactory

    async with DBClientFactory({"database": config}, clock=clock).create_client() as client:
        yield client


def _async_fixtures(kind: str) -> None:
    """``_adb_<kind>_anyio`` (run by anyio) and ``_adb_<kind>_asyncio`` (by
    pytest-asyncio) for the ``adb_<kind>_client`` fixture to pick from."""

    def body() -> Any:  # one function object per plugin: each may mark its own
        async def run(request: pytest.FixtureRequest, adb_clock: Any) -> AsyncIterator[Any]:
            config = request.getfixturevalue(f"_adb_{kind}_config")
            async for client in _open_client(config, adb_clock):
                yield client

        return run

    globals()[f"_adb_{kind}_anyio"] = pytest.fixture(name=f"_adb_{kind}_anyio")(body())
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - pytest-asyncio is optional
        return
    globals()[f"_adb_{kind}_asyncio"] = pytest_asyncio.fixture(
        body(), name=f"_adb_{kind}_asyncio", loop_scope="function"
    )


def _postgresql_server(url: str) -> dict[str, Any]:
    server, query_text = _server(url, "postgresql", ("postgresql", "postgres"), 5432, "postgres")
    query = dict(part.partition("=")[::2] for part in query_text.split("&") if part)
    unknown = set(query) - {"sslmode"}
    if unknown:
        raise pytest.UsageError(f"--adb-postgresql-url: unknown parameter {sorted(unknown)[0]!r}")
    return {**server, "sslmode": query.get("sslmode")}


def _in_thread(work: Any) -> Any:
    """Run the coroutine function ``work`` in an event loop of a thread of its own (the
    fixtures below may be set up while the test's loop runs in this thread)."""
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(work()))
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0] if result else None


async def _pg_admin(server: dict[str, Any], database: str, *statements: str) -> None:
    import asyncpg

    ssl = server["sslmode"] or "prefer"
    keys = ("host", "port", "user", "password")
    conn = await asyncpg.connect(
        **{key: server[key] for key in keys}, database=database, ssl=ssl, timeout=10
    )
    try:
        for statement in statements:
            await conn.execute(statement)
        if not statements:  # empty the library's tables
            tables = await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename <> 'async_db_client_schema'"
            )
            for (table,) in tables:
                await conn.execute(f'DELETE FROM "{table}"')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def adb_postgresql_database(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[dict[str, Any], str]]:
    """(server settings, database name): this worker's database, dropped at the end."""
    url = _url(request.config, "postgresql")
    if url is None:
        pytest.skip(
            "no PostgreSQL server given "
            "(--adb-postgresql-url, adb_postgresql_url, $ADB_POSTGRESQL_URL)"
        )
    server = _postgresql_server(url)
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    name = f"{server['prefix']}_{worker}_{secrets.token_hex(3)}"
    _in_thread(lambda: _pg_admin(server, "postgres", f'CREATE DATABASE "{name}"'))
    try:
        yield server, name
    finally:
        _in_thread(
            lambda: _pg_admin(server, "postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


@pytest.fixture
def _adb_postgresql_config(
    adb_postgresql_database: tuple[dict[str, Any], str],
) -> dict[str, Any]:
    server, database = adb_postgresql_database
    _in_thread(lambda: _pg_admin(server, database))
    keys = ("host", "port", "user", "password")
    tier: dict[str, Any] = {**{key: server[key] for key in keys}, "database": database}
    if server["sslmode"]:
        tier["ssl"] = {"sslmode": server["sslmode"]}
    return {f"{name}_{key}": value for name in ("remote", "core", "pipeline")
            for key, value in (("type", "postgresql"), ("config", tier))}  # fmt: skip


for _kind in ("sqlite", "mysql", "postgresql"):
    _async_fixtures(_kind)


def _sql_client(request: pytest.FixtureRequest, kind: str) -> Any:
    if "anyio_backend" in request.fixturenames:
        return request.getfixturevalue(f"_adb_{kind}_anyio")
    if request.config.pluginmanager.has_plugin("asyncio") and f"_adb_{kind}_asyncio" in globals():
        return request.getfixturevalue(f"_adb_{kind}_asyncio")
    raise pytest.UsageError(
        f"adb_{kind}_client opens pools in the test's event loop: use it from an async "
        "test run by pytest-asyncio or anyio (@pytest.mark.anyio)"
    )


@pytest.fixture
def adb_sqlite_client(request: pytest.FixtureRequest) -> Any:
    """An async client whose three tiers share an SQLite file in ``tmp_path``."""
    return _sql_client(request, "sqlite")


@pytest.fixture
def adb_mysql_client(request: pytest.FixtureRequest) -> Any:
    """Remote and core tiers on the given MySQL/MariaDB server (this worker's database,
    emptied before the test), the pipeline tier in memory; skipped without a server."""
    return _sql_client(request, "mysql")


@pytest.fixture
def adb_postgresql_client(request: pytest.FixtureRequest) -> Any:
    """All three tiers on the given PostgreSQL server (this worker's database, emptied
    before the test); skipped without a server."""
    return _sql_client(request, "postgresql")
