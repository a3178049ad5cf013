"""Live PostgreSQL for the tests: reachability, a database per test session, configs.

The server is the one on 127.0.0.1:5432 (user ``postgres``, trust authentication;
override with ``ADC_TEST_PG_HOST`` / ``_PORT`` / ``_USER`` / ``_PASSWORD``); start it with
``tools/ensure_postgres.sh``. With ``CI=true`` a test that cannot reach it fails;
elsewhere it is skipped, saying how to start it. Every database and role made here has
a name of this run's own (:func:`tests.support.live.unique_name`) and is dropped after.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

import pytest

from tests.support.live import (
    LIBRARY_TABLES,
    TABLES,
    LeastPrivilegeDatabase,
    unavailable,
    unique_name,
)

T = TypeVar("T")

PG: dict[str, Any] = {
    "host": os.environ.get("ADC_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ADC_TEST_PG_PORT", "5432")),
    "user": os.environ.get("ADC_TEST_PG_USER", "postgres"),
    "password": os.environ.get("ADC_TEST_PG_PASSWORD", ""),
}
HOW_TO_START = "start PostgreSQL 15 with tools/ensure_postgres.sh"


def require_asyncpg() -> None:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        unavailable("asyncpg is not installed: pip install 'async_db_client[postgresql]'")


async def admin_connect(database: str = "postgres", **overrides: Any) -> Any:
    """A raw asyncpg connection as the admin user (the tests' own statements)."""
    import asyncpg

    return await asyncpg.connect(**{**PG, **overrides}, database=database, timeout=10)


async def admin_execute(database: str, *statements: str) -> None:
    conn = await admin_connect(database)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def admin_fetch(database: str, sql: str, *args: Any) -> list[Any]:
    conn = await admin_connect(database)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def run_admin(database: str, *statements: str) -> None:
    """:func:`admin_execute` from synchronous code, even with an event loop running in
    this thread (a session fixture first requested by an async test): in a thread."""
    in_thread(admin_execute(database, *statements))


def in_thread(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion in an event loop of a thread of its own."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def pg_row_counts(database: str, tables: Iterable[str]) -> dict[str, int]:
    """Rows per table, counted by the admin on a connection of its own, from any code
    (a thread of its own runs the event loop, so a running loop here does not matter)."""

    async def count() -> dict[str, int]:
        conn = await admin_connect(database)
        try:
            return {t: int(await conn.fetchval(f"SELECT COUNT(*) FROM {t}")) for t in tables}
        finally:
            await conn.close()

    return in_thread(count())


def require_postgres() -> None:
    require_asyncpg()
    try:
        run_admin("postgres", "SELECT 1")
    except Exception as exc:
        unavailable(
            f"PostgreSQL not reachable at {PG['host']}:{PG['port']} "
            f"({type(exc).__name__}: {exc}); {HOW_TO_START}"
        )


def create_database(prefix: str = "adc_pg") -> str:
    name = unique_name(prefix)
    # C collation and UTF-8 whatever the cluster's defaults: the library's columns are
    # COLLATE "C" anyway, so the database default must not matter (tests prove it).
    run_admin("postgres", f'CREATE DATABASE "{name}" ENCODING \'UTF8\' TEMPLATE template0')
    return name


def drop_database(name: str) -> None:
    run_admin("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    require_postgres()
    name = create_database()
    try:
        yield name
    finally:
        drop_database(name)


@pytest.fixture
def own_postgres_database() -> Iterator[str]:
    """A PostgreSQL database of this test alone."""
    require_postgres()
    name = create_database("adc_pg_own")
    try:
        yield name
    finally:
        drop_database(name)


def pg_config(database: str, *, pool: dict[str, Any] | None = None, **tier: Any) -> dict[str, Any]:
    """A ``*_config`` dict of a ``postgresql`` tier on the live server."""
    return {
        "host": PG["host"],
        "port": PG["port"],
        "database": database,
        "user": PG["user"],
        "password": PG["password"],
        "ssl": {"sslmode": "disable"},
        "pool": {"min_size": 1, "max_size": 8, "acquire_timeout": 10, **(pool or {})},
        **tier,
    }


def pg_client_config(
    database: str, tiers: tuple[str, ...] = ("remote", "core", "pipeline"), **kw: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for tier in tiers:
        config[f"{tier}_type"] = "postgresql"
        config[f"{tier}_config"] = pg_config(database, **kw)
    return {"database": config}


async def empty_pg_tables(database: str, tier: str) -> None:
    await admin_execute(database, *(f"DELETE FROM {table}" for table in TABLES[tier]))


async def migrate_pg(database: str) -> None:
    """Apply every tier's migrations as the admin user."""
    from async_db_client import DBClientFactory

    async with DBClientFactory(pg_client_config(database)).create_client() as client:
        await client.migrate()


#: What the runtime user is granted on each library table, and nothing else (TEMPORARY
#: on the database is PUBLIC's by default: the bulk path's staging table needs it).
PG_RUNTIME_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


@pytest.fixture(scope="session")
def postgres_least_privilege() -> Iterator[LeastPrivilegeDatabase]:
    """A database migrated by the admin, and a login role with DML on its tables only;
    both dropped at the end of the session."""
    require_postgres()
    database = create_database("adc_pg_lp")
    user = unique_name("adc_pg_lp")
    password = f"lp'P\\w\"d;%{{}}@{secrets.token_hex(4)}"
    quoted = password.replace("'", "''")
    try:
        in_thread(migrate_pg(database))
        run_admin(
            database,
            f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{quoted}'",
            f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC',
            f'GRANT CONNECT, TEMPORARY ON DATABASE "{database}" TO "{user}"',
            f'GRANT USAGE ON SCHEMA public TO "{user}"',
            *(
                f'GRANT {PG_RUNTIME_PRIVILEGES} ON {table} TO "{user}"'
                for table in LIBRARY_TABLES
            ),
        )
        yield LeastPrivilegeDatabase(database, user, password)
    finally:
        drop_database(database)
        run_admin("postgres", f'DROP ROLE IF EXISTS "{user}"')
