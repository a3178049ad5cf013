"""Secrets: with a known, distinctive password, a run through every failure a caller can
meet (bad configuration next to the password, connection refused, wrong password, pool
timeout, query errors and timeouts, health checks, the sync facade, MySQL through
aiomysql, asyncmy and ODBC, SQL Server through Microsoft's driver) and through the reprs
of everything a caller can print (configs, factories, clients, repositories, pools,
drivers, pool stats). Every log record
of every logger at DEBUG, and the text of every exception (str, repr, args, the formatted
traceback, and every chained exception, even a suppressed context) is scanned: the
password never appears, nor does a wrong password tried against the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pymysql
import pytest

import async_db_client.sync
from async_db_client import (
    ConfigurationError,
    DBClientFactory,
    DBConnectionError,
    IntegrityError,
    PoolTimeout,
    QueryError,
    QueryTimeoutError,
)
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.config import parse_config
from tests.support.backends import require_msodbc
from tests.support.live import MYSQL, MYSQL_DRIVERS, connect, require_driver, unique_name
from tests.support.mariadb_server import free_port
from tests.support.waiting import SLACK

#: What a leak would show: the random core appears in any quoting or escaping of them.
TOKEN = secrets.token_hex(8)
PASSWORD = f"Pw-{TOKEN}-s'3\"c;{{r}}=%s"
WRONG_TOKEN = secrets.token_hex(8)
WRONG = f"Wr-{WRONG_TOKEN}"
SECRETS = (TOKEN, WRONG_TOKEN)
#: A server-wide name: unique to this run, so two runs on one server never share the user
#: (one run's DROP USER would lock the other out: "Access denied").
USER = unique_name("adc_secret")


class Capture(logging.Handler):
    """Every record, fully formatted (message, arguments, exception and stack text)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.texts: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.texts.append(self.format(record))
        self.texts.append(repr(record.msg) + repr(record.args))
        if record.stack_info:
            self.texts.append(record.stack_info)


class Seen:
    """Texts the caller can see: exceptions (with every chained one) and reprs."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.errors: list[BaseException] = []

    def error(self, exc: BaseException) -> BaseException:
        self.errors.append(exc)
        self.texts.append("".join(traceback.format_exception(exc)))
        chain: BaseException | None = exc
        visited: set[int] = set()
        while chain is not None and id(chain) not in visited:
            visited.add(id(chain))
            self.texts += [str(chain), repr(chain), repr(chain.args)]
            self.texts += [repr(getattr(chain, name, None)) for name in ("key", "field")]
            chain = chain.__cause__ or chain.__context__
        return exc

    def show(self, *objects: Any) -> None:
        for obj in objects:
            self.texts += [repr(obj), str(obj)]

    @contextlib.contextmanager
    def expect(self, kind: type[BaseException] = Exception) -> Iterator[None]:
        """The block must raise ``kind``; the exception is kept for the scan."""
        try:
            yield
        except kind as exc:
            self.error(exc)
        else:
            pytest.fail(f"expected {kind.__name__}")

    @contextlib.asynccontextmanager
    async def expect_async(self, kind: type[BaseException] = Exception) -> AsyncIterator[None]:
        with self.expect(kind):
            yield


@pytest.fixture
def capture() -> Iterator[Capture]:
    root = logging.getLogger()
    handler = Capture()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    names = ("async_db_client", "aiomysql", "asyncmy", "asyncpg", "asyncio")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for lg, old in zip(loggers, levels, strict=True):
            lg.setLevel(old)


@pytest.fixture
def seen(capture: Capture) -> Iterator[Seen]:
    """After the test: nothing logged or seen holds a secret, and there was something to
    scan (a test that met no error and logged nothing would prove nothing)."""
    observed = Seen()
    yield observed
    leaks = [t for t in capture.texts + observed.texts if any(s in t for s in SECRETS)]
    assert not leaks, f"secret in: {leaks[0][:3000]}"
    assert observed.errors and capture.records


def mysql_tier(port: int, password: str, **extra: Any) -> dict[str, Any]:
    return {
        "host": MYSQL["host"],
        "port": port,
        "database": "secrets_db",
        "user": USER,
        "password": password,
        # Short: the refused connections here fail fast whatever the machine's load (a
        # refused connect is retried until this deadline); logins that must work get PATIENT.
        "pool": {"min_size": 0, "max_size": 2, "acquire_timeout": 0.5, "connect_timeout": 0.5},
        **extra,
    }


def remote(tier: dict[str, Any]) -> dict[str, Any]:
    return {"database": {"remote_type": "mysql", "remote_config": tier}}


# ------------------------------------------------------------------------ the scanner


def test_the_scan_finds_a_planted_leak(capture: Capture) -> None:
    """The detector itself: a password logged through any logger, or carried by an
    exception's suppressed context, is found."""
    logging.getLogger("some.other.library").debug("connecting with %s", PASSWORD)
    assert any(TOKEN in text for text in capture.texts)
    observed = Seen()
    try:
        try:
            raise ValueError(f"pwd={PASSWORD!r}")
        except ValueError:
            raise RuntimeError("clean message") from None
    except RuntimeError as exc:
        observed.error(exc)
    assert any(TOKEN in text for text in observed.texts)


# ---------------------------------------------------------------- configuration


def test_configuration_errors_and_reprs(seen: Seen) -> None:
    good = remote(mysql_tier(3306, PASSWORD))
    odbc = f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=x;UID=u;PWD={PASSWORD}"
    bad_configs: list[Any] = [
        remote(mysql_tier("three", PASSWORD)),  # type: ignore[arg-type]
        remote(mysql_tier(3306, PASSWORD, pasword=PASSWORD)),  # a typo'd key holding it
        remote(mysql_tier(3306, [PASSWORD])),  # type: ignore[arg-type]
        remote(mysql_tier(3306, PASSWORD, ssl={"cert": "/c.pem"})),
        remote(mysql_tier(3306, PASSWORD, pool={"max_size": 0})),
        remote({**mysql_tier(3306, PASSWORD), "host": None}),
        {"database": {"remote_config": mysql_tier(3306, PASSWORD)}},  # no remote_type
        {"database": {"pipeline_type": "mssql", "pipeline_config": {"odbc_connect": 5}}},
        {"database": {"pipeline_type": "mssql", "pipeline_config": {"password": PASSWORD}}},
        {"database": {"pipeline_type": "mysql", "pipeline_config": {"odbc_connect": odbc}}},
        {"database": {"core_type": "mssql", "core_config": mysql_tier(3306, PASSWORD)}},
    ]
    for config in bad_configs:
        for build in (parse_config, DBClientFactory, async_db_client.sync.DBClientFactory):
            with seen.expect(ConfigurationError):
                build(config)
    parsed = parse_config(good)
    mssql = parse_config(
        {"database": {"pipeline_type": "mssql", "pipeline_config": {"odbc_connect": odbc}}}
    )
    seen.show(
        parsed,
        parsed.database,
        parsed.database.tier("remote"),
        mssql.database.tier("pipeline"),
        mssql.model_dump(),
        parsed.model_dump_json(),
        DBClientFactory(good),
        async_db_client.sync.DBClientFactory(good),
    )
    logging.getLogger("test").debug("configs: %r %s", parsed, mssql)


# -------------------------------------------------------------------- not reachable


@pytest.mark.asyncio
@pytest.mark.parametrize("driver", MYSQL_DRIVERS)
async def test_connection_refused_health_and_stats(seen: Seen, driver: str) -> None:
    require_driver(driver)
    port = free_port()  # nothing listens there
    config = remote(mysql_tier(port, PASSWORD, driver=driver))
    async with DBClientFactory(config).create_client() as db:
        async with seen.expect_async(DBConnectionError):
            await db.get_hash_record("/a")
        async with seen.expect_async(DBConnectionError):
            await db.insert_or_update_hashes([{"path": "/a", "current_hash": "h"}])
        assert await db.health_check() == {"local_db": False}
        seen.show(db, db.remote_db, db.pools, db.pool_stats(), *db.pool_stats().values())
        assert isinstance(db.remote_db.store, SQLRemoteStore)
        pool = db.remote_db.store.executor.pool
        seen.show(pool, pool.connector, pool.get_stats().as_dict())


def test_sync_facade_refused_and_closed(seen: Seen) -> None:
    factory = async_db_client.sync.DBClientFactory(remote(mysql_tier(free_port(), PASSWORD)))
    with factory.create_client() as db:
        with seen.expect(DBConnectionError):
            db.get_hash_record("/a")
        assert db.health_check() == {"local_db": False}
        seen.show(db, db.pool_stats())
    with seen.expect(Exception):
        db.get_hash_record("/a")  # closed
    seen.show(db, factory)


# ------------------------------------------------------------------------- live


@pytest.fixture
def secret_user(mysql_database: str) -> Iterator[str]:
    """A user whose password is PASSWORD, with every right on the session database."""
    user = USER
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
        cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, PASSWORD))
        cursor.execute(f"GRANT ALL ON `{mysql_database}`.* TO %s@'%%'", (user,))
    try:
        yield mysql_database
    finally:
        with connect() as conn, conn.cursor() as cursor:
            cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))


#: Pool settings for logins that must succeed: a loaded machine may take seconds to log in.
PATIENT = {"min_size": 1, "max_size": 1, "acquire_timeout": 30, "connect_timeout": 10}


def live(database: str, password: str, **extra: Any) -> dict[str, Any]:
    return remote({**mysql_tier(MYSQL["port"], password, **extra), "database": database})


@pytest.mark.live
@pytest.mark.asyncio
async def test_wrong_password_against_the_live_server(secret_user: str, seen: Seen) -> None:
    require_driver("asyncmy")
    for driver in (*MYSQL_DRIVERS, "odbc"):
        config = live(secret_user, WRONG, driver=driver)
        async with DBClientFactory(config).create_client() as db:
            async with seen.expect_async(DBConnectionError):
                await db.get_hash_record("/a")
            assert await db.health_check() == {"local_db": False}
            seen.show(db.pool_stats())
    with pytest.raises(pymysql.err.OperationalError) as raw:  # the server did refuse it
        connect(secret_user, user=USER, password=WRONG)
    assert raw.value.args[0] == 1045


@pytest.mark.live
@pytest.mark.asyncio
async def test_a_working_session_and_its_failures(secret_user: str, seen: Seen) -> None:
    """Logged in with the password, through aiomysql, asyncmy and ODBC: migrations,
    writes, reads, and each kind of failure a statement can meet."""
    require_driver("asyncmy")
    for driver in (*MYSQL_DRIVERS, "odbc"):
        config = live(secret_user, PASSWORD, driver=driver, pool=PATIENT)
        # A second client for the two timeouts: a statement over a short query timeout,
        # and a wait over a short acquire timeout. The first client's generous ones keep
        # its logins and migrations from timing out on a loaded machine.
        impatient = live(
            secret_user,
            PASSWORD,
            driver=driver,
            pool={**PATIENT, "min_size": 0, "acquire_timeout": 0.5, "query_timeout": 1},
        )
        async with (
            DBClientFactory(config).create_client() as db,
            DBClientFactory(impatient).create_client() as hurried,
        ):
            await db.migrate()
            assert await db.insert_or_update_hash({"path": f"/s/{driver}", "current_hash": "h"})
            assert await db.get_hash_record(f"/s/{driver}") is not None
            assert await db.put_log({"summary_message": "hello"}) is not None
            assert await db.health_check() == {"local_db": True}
            assert isinstance(db.remote_db.store, SQLRemoteStore)
            executor = db.remote_db.store.executor
            async with seen.expect_async(QueryError):
                await executor.fetchall("SELECT * FROM no_such_table")
            async with seen.expect_async(IntegrityError):
                await executor.execute(
                    "INSERT INTO async_db_client_schema VALUES ('remote', 1, 'x', NOW())"
                )
            assert isinstance(hurried.remote_db.store, SQLRemoteStore)
            short = hurried.remote_db.store.executor
            # Logged in within the generous timeout this acquire names: only the statement
            # and the wait below meet the short ones.
            await short.pool.release(await short.pool.acquire(timeout=PATIENT["acquire_timeout"]))
            async with seen.expect_async(QueryTimeoutError):
                await short.fetchall("SELECT SLEEP(60)")  # far over the timeout, on any machine
            # Its only connection is held:
            held = await short.pool.acquire(timeout=PATIENT["acquire_timeout"])
            try:
                async with seen.expect_async(PoolTimeout):
                    await hurried.get_hash_record("/held")
            finally:
                await short.pool.release(held)
            # A transaction that fails:
            async with seen.expect_async(ZeroDivisionError), db.transaction():
                await db.insert_or_update_hash({"path": "/tx", "current_hash": "h"})
                _ = 1 / 0
            assert await db.get_hash_record("/tx") is None
            seen.show(db, db.remote_db, executor, executor.pool, executor.pool.connector)
            seen.show(db.pool_stats(), DBClientFactory(config))
            seen.show(hurried, short.pool, hurried.pool_stats(), DBClientFactory(impatient))


@pytest.mark.live
def test_the_sync_facade_with_the_password(secret_user: str, seen: Seen) -> None:
    config = live(secret_user, PASSWORD, pool=PATIENT)
    with async_db_client.sync.DBClientFactory(config).create_client() as db:
        assert db.insert_or_update_hash({"path": "/sync", "current_hash": "h"})
        assert db.get_single_field("/sync", "current_hash") == "h"
        assert db.health_check() == {"local_db": True}
        with seen.expect(ValueError):
            db.get_single_field("/sync", "password")
        seen.show(db, db.pool_stats(), db.async_client)

    async def inside_a_loop() -> None:
        with seen.expect(Exception):
            db.get_hash_record("/sync")

    asyncio.run(inside_a_loop())


# --------------------------------------------------------------------- SQL Server


@pytest.mark.asyncio
async def test_sql_server_connection_refused(seen: Seen) -> None:
    require_msodbc()
    port = free_port()
    odbc = (
        "DRIVER={ODBC Driver 18 for SQL Server};"
        f"SERVER=127.0.0.1,{port};UID=u;PWD={{{PASSWORD.replace('}', '}}')}}};Encrypt=no;"
        "ConnectRetryCount=0"
    )
    tiers = [
        {"server": "127.0.0.1", "port": port, "database": "d", "username": "u",
         "password": PASSWORD, "encrypt": False,
         "odbc_attributes": {"ConnectRetryCount": "0"}},
        {"odbc_connect": odbc},
    ]  # fmt: skip
    for tier in tiers:
        tier["pool"] = {"min_size": 0, "acquire_timeout": 1, "connect_timeout": 1}
        config = {"database": {"pipeline_type": "mssql", "pipeline_config": tier}}
        start = time.monotonic()
        async with DBClientFactory(config).create_client() as db:
            async with seen.expect_async(DBConnectionError):
                await db.get_pipeline_updates()
            assert await db.pipeline_health_check() == {"pipeline_db": False}
            seen.show(db, db.pipeline_db, db.pool_stats())
        # Refused: no hang past the deadlines (the call's, then the health check's).
        assert time.monotonic() - start < 2 * tier["pool"]["acquire_timeout"] + SLACK


# -------------------------------------------------------------------------- PostgreSQL


@pytest.mark.live
@pytest.mark.asyncio
async def test_postgresql_password_never_shows(seen: Seen) -> None:
    """A private PostgreSQL that checks passwords (scram-sha-256): a wrong one refused, the
    right one used for migrations, writes and each kind of statement failure, through
    asyncpg; no text the caller or the logs see holds either password."""
    from tests.support.postgres_server import PrivatePostgres

    with PrivatePostgres(password=PASSWORD) as server:

        def tier(password: str, **pool: Any) -> dict[str, Any]:
            base = {"min_size": 0, "max_size": 2, "acquire_timeout": 10, "connect_timeout": 10}
            return {
                "database": {
                    "remote_type": "postgresql",
                    "remote_config": {
                        "host": "127.0.0.1",
                        "port": server.port,
                        "database": "postgres",
                        "user": "postgres",
                        "password": password,
                        "ssl": {"sslmode": "disable"},
                        "pool": {**base, **pool},
                    },
                }
            }

        async with DBClientFactory(tier(WRONG)).create_client() as db:
            async with seen.expect_async(DBConnectionError):
                await db.get_hash_record("/a")
            assert await db.health_check() == {"local_db": False}
            seen.show(db, db.pool_stats(), db.remote_db.store.executor.driver)
        hurried_pool = {"min_size": 0, "max_size": 1, "acquire_timeout": 0.5, "query_timeout": 1}
        async with (
            DBClientFactory(tier(PASSWORD)).create_client() as db,
            DBClientFactory(tier(PASSWORD, **hurried_pool)).create_client() as hurried,
        ):
            await db.migrate()
            assert await db.insert_or_update_hash({"path": "/s", "current_hash": "h"})
            assert await db.put_log({"summary_message": "hello"}) is not None
            assert isinstance(db.remote_db.store, SQLRemoteStore)
            executor = db.remote_db.store.executor
            async with seen.expect_async(QueryError):
                await executor.fetchall("SELECT * FROM no_such_table")
            async with seen.expect_async(IntegrityError):
                await executor.execute(
                    "INSERT INTO async_db_client_schema VALUES ('remote', 1, 'x', NOW())"
                )
            assert isinstance(hurried.remote_db.store, SQLRemoteStore)
            short = hurried.remote_db.store.executor
            await short.pool.release(await short.pool.acquire(timeout=10))
            async with seen.expect_async(QueryTimeoutError):
                await short.fetchall("SELECT pg_sleep(60)")
            held = await short.pool.acquire(timeout=10)
            try:
                async with seen.expect_async(PoolTimeout):
                    await hurried.get_hash_record("/held")
            finally:
                await short.pool.release(held)
            seen.show(db, db.pools, db.pool_stats(), executor.driver, executor.pool)
