"""The backends the contract suites run against; a new engine is one more entry here.

Each backend hands out fresh, empty repositories on a given clock. Live backends
register themselves in later modules (``tests/support/live.py``) and are skipped or failed,
according to ``CI``, when their server is unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance, FakeClock
from async_db_client.backends.memory import MemoryCoreStore, MemoryPipelineStore, MemoryRemoteStore
from async_db_client.tiers import CoreRepository, PipelineRepository, RemoteRepository
from tests.support.live import (
    TABLES,
    LeastPrivilegeDatabase,
    empty_tables,
    mysql_config,
    require_asyncmy,
    unavailable,
)


class Backend:
    """Makes empty repositories of one engine. Subclasses override what they support."""

    name = "?"
    tiers: tuple[str, ...] = ()
    marks: tuple[Any, ...] = ()

    def setup(self, request: pytest.FixtureRequest) -> None:
        """Called before each test that uses this backend (live ones request fixtures)."""

    def remote(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[RemoteRepository]:
        raise NotImplementedError

    def core(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[CoreRepository]:
        raise NotImplementedError

    def pipeline(
        self, clock: FakeClock
    ) -> contextlib.AbstractAsyncContextManager[PipelineRepository]:
        raise NotImplementedError


class MemoryBackend(Backend):
    name = "memory"
    tiers = ("remote", "core", "pipeline")

    @contextlib.asynccontextmanager
    async def remote(self, clock: FakeClock) -> AsyncIterator[RemoteRepository]:
        yield RemoteRepository(MemoryRemoteStore(), clock=clock)

    @contextlib.asynccontextmanager
    async def core(self, clock: FakeClock) -> AsyncIterator[CoreRepository]:
        yield CoreRepository(MemoryCoreStore(), clock=clock)

    @contextlib.asynccontextmanager
    async def pipeline(self, clock: FakeClock) -> AsyncIterator[PipelineRepository]:
        yield PipelineRepository(MemoryPipelineStore(), clock=clock)


class ClientBackend(Backend):
    """A backend whose tiers come from a client it makes per test (``_client``)."""

    def _client(
        self, tier: str, clock: FakeClock
    ) -> contextlib.AbstractAsyncContextManager[DBInstance]:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def remote(self, clock: FakeClock) -> AsyncIterator[RemoteRepository]:
        async with self._client("remote", clock) as client:
            assert client.remote_db is not None
            yield client.remote_db

    @contextlib.asynccontextmanager
    async def core(self, clock: FakeClock) -> AsyncIterator[CoreRepository]:
        async with self._client("core", clock) as client:
            assert client.core_db is not None
            yield client.core_db

    @contextlib.asynccontextmanager
    async def pipeline(self, clock: FakeClock) -> AsyncIterator[PipelineRepository]:
        async with self._client("pipeline", clock) as client:
            assert client.pipeline_db is not None
            yield client.pipeline_db


class MySQLBackend(ClientBackend):
    """The live MariaDB through aiomysql: a client per test on the session's database."""

    name = "mysql"
    tiers = ("remote", "core", "pipeline")
    marks = (pytest.mark.live,)
    database = ""
    driver = "aiomysql"

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.database = request.getfixturevalue("mysql_database")

    def tier_config(self) -> dict[str, Any]:
        return mysql_config(self.database, driver=self.driver)

    def empty(self, tier: str) -> None:
        empty_tables(self.database, tier)

    @contextlib.asynccontextmanager
    async def _client(self, tier: str, clock: FakeClock) -> AsyncIterator[DBInstance]:
        tier_config = self.tier_config()
        config = {"database": {f"{tier}_type": "mysql", f"{tier}_config": tier_config}}
        if tier == "pipeline":  # the pipeline is SQL Server's in production; MySQL SQL here
            config = {"database": {}}
        async with DBClientFactory(config, clock=clock).create_client() as client:
            if tier == "pipeline":
                client.pipeline_db = _mysql_pipeline(tier_config, client, clock)
            repo = getattr(client, f"{tier}_db")
            await repo.migrate()
            self.empty(tier)
            yield client


class MySQLOdbcBackend(MySQLBackend):
    """The live MariaDB through aioodbc, unixODBC and MariaDB's ODBC driver."""

    name = "mysql-odbc"
    driver = "odbc"


class MySQLAsyncmyBackend(MySQLBackend):
    """The live MariaDB through asyncmy (the ``fast`` extra): prepared statements for
    the statements with parameters, the text protocol for the rest."""

    name = "mysql-asyncmy"
    driver = "asyncmy"

    def setup(self, request: pytest.FixtureRequest) -> None:
        require_asyncmy()
        super().setup(request)


class MySQLLeastPrivilegeBackend(MySQLBackend):
    """The live MariaDB through aiomysql as a runtime user that may only SELECT, INSERT,
    UPDATE and DELETE rows of the library's tables: an admin (root) applied the migrations
    once per session, and the repositories run with ``auto_migrate: false``."""

    name = "mysql-least-privilege"
    grant = LeastPrivilegeDatabase("", "", "")

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.grant = request.getfixturevalue("mysql_least_privilege")
        self.database = self.grant.database

    @contextlib.asynccontextmanager
    async def _client(self, tier: str, clock: FakeClock) -> AsyncIterator[DBInstance]:
        tier_config = {
            **mysql_config(self.database, auto_migrate=False),
            "user": self.grant.user,
            "password": self.grant.password,
        }
        config = {"database": {f"{tier}_type": "mysql", f"{tier}_config": tier_config}}
        if tier == "pipeline":
            config = {"database": {}}
        empty_tables(self.database, tier)  # as root: the runtime user may not, by design
        async with DBClientFactory(config, clock=clock).create_client() as client:
            if tier == "pipeline":
                client.pipeline_db = _mysql_pipeline(tier_config, client, clock)
            yield client


def _mysql_pipeline(
    tier_config: dict[str, Any], client: DBInstance, clock: FakeClock
) -> PipelineRepository:
    """The SQL pipeline repository on MariaDB (config allows only mssql/local for it)."""
    from async_db_client.backends.registry import build_tier
    from async_db_client.config import MySQLConfig

    repo = build_tier("pipeline", MySQLConfig(**tier_config), client.pools, clock)
    assert isinstance(repo, PipelineRepository)
    return repo


class PostgreSQLBackend(ClientBackend):
    """The live PostgreSQL 15 through asyncpg: every tier, a client per test on the
    session's database (emptied before each test)."""

    name = "postgresql"
    tiers = ("remote", "core", "pipeline")
    marks = (pytest.mark.live,)
    database = ""

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.database = request.getfixturevalue("postgres_database")

    def tier_config(self) -> dict[str, Any]:
        from tests.support.postgres import pg_config

        return pg_config(self.database)

    async def prepare(self, tier: str, repo: Any) -> None:
        from tests.support.postgres import empty_pg_tables

        await repo.migrate()
        await empty_pg_tables(self.database, tier)

    @contextlib.asynccontextmanager
    async def _client(self, tier: str, clock: FakeClock) -> AsyncIterator[DBInstance]:
        config = {"database": {f"{tier}_type": "postgresql", f"{tier}_config": self.tier_config()}}
        async with DBClientFactory(config, clock=clock).create_client() as client:
            await self.prepare(tier, getattr(client, f"{tier}_db"))
            yield client


class PostgreSQLLeastPrivilegeBackend(PostgreSQLBackend):
    """The live PostgreSQL as a login role that may only SELECT, INSERT, UPDATE and
    DELETE rows of the library's tables (and make temporary tables, PUBLIC's by
    default): the admin migrated once per session; ``auto_migrate: false``."""

    name = "postgresql-least-privilege"
    grant = LeastPrivilegeDatabase("", "", "")

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.grant = request.getfixturevalue("postgres_least_privilege")
        self.database = self.grant.database

    def tier_config(self) -> dict[str, Any]:
        return {
            **super().tier_config(),
            "auto_migrate": False,
            "user": self.grant.user,
            "password": self.grant.password,
        }

    async def prepare(self, tier: str, repo: Any) -> None:
        from tests.support.postgres import empty_pg_tables

        await empty_pg_tables(self.database, tier)  # as the admin: the runtime user may not


class PostgreSQLReplicationBackend(PostgreSQLBackend):
    """A PostgreSQL primary and two streaming standbys (tests/support/postgres_topology.py),
    listed standbys first: the router must find the primary, and read_your_writes (the
    default) must make every read see the write before it, as on one server."""

    name = "postgresql-replication"
    marks = (pytest.mark.live, pytest.mark.slow)
    DATABASE = "adc_pg_contract"

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.topology = request.getfixturevalue("pg_replication_topology")
        if not getattr(self.topology, "adc_contract_database", False):
            self.topology.create_database(self.DATABASE)
            self.topology.adc_contract_database = True
        self.database = self.DATABASE

    def tier_config(self) -> dict[str, Any]:
        return {
            "hosts": list(reversed(self.topology.hosts)),
            "database": self.database,
            "user": "postgres",
            "ssl": {"sslmode": "disable"},
            "pool": {"min_size": 1, "max_size": 8, "acquire_timeout": 10},
        }

    async def prepare(self, tier: str, repo: Any) -> None:
        await repo.migrate()
        primary = self.topology.primary
        for table in TABLES[tier]:
            await asyncio.to_thread(primary.sql, f"DELETE FROM {table}", self.database)
        # The tests' own deletes are not the client's writes: wait until every standby
        # has them before the client reads.
        await asyncio.to_thread(self.topology.wait_replayed)


class RepoBackend(Backend):
    """A backend whose three tiers come from one ``_repo(tier, clock)`` context manager."""

    def _repo(self, tier: str, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    def remote(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[RemoteRepository]:
        return self._repo("remote", clock)

    def core(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[CoreRepository]:
        return self._repo("core", clock)

    def pipeline(
        self, clock: FakeClock
    ) -> contextlib.AbstractAsyncContextManager[PipelineRepository]:
        return self._repo("pipeline", clock)


MSSQL_DRIVER = "ODBC Driver 18 for SQL Server"


def require_msodbc() -> None:
    """Microsoft's ODBC driver must be registered (``make install`` does it)."""
    try:
        import pyodbc
    except ImportError as exc:  # unixODBC missing
        unavailable(f"pyodbc cannot load ({exc}): apt-get install unixodbc")
        return
    if MSSQL_DRIVER not in pyodbc.drivers():
        unavailable(f"{MSSQL_DRIVER!r} is not registered: run tools/install_msodbc.sh .venv")


def mssql_peer_config(port: int, **extra: Any) -> dict[str, Any]:
    """A SQL Server tier config pointing at a TDS peer on this machine."""
    return {
        "server": "127.0.0.1",
        "port": port,
        "database": "pipeline_db",
        "username": "tester",
        "password": "p;w{x}=1",  # every character ODBC needs escaped
        "encrypt": False,
        "trust_server_certificate": True,
        "pool": {"min_size": 0, "max_size": 4, "acquire_timeout": 10, "connect_timeout": 5},
        **extra,
    }


class MSSQLPeerBackend(Backend):
    """The SQL Server backend, unchanged, through Microsoft's real ODBC driver, against
    the recording TDS peer with a statement-level emulator behind it (pipeline tier)."""

    name = "mssql-tds"
    tiers = ("pipeline",)

    def setup(self, request: pytest.FixtureRequest) -> None:
        require_msodbc()

    @contextlib.asynccontextmanager
    async def pipeline(self, clock: FakeClock) -> AsyncIterator[PipelineRepository]:
        from tests.support.mssql_emulator import PipelineEmulator
        from tests.support.tds_peer import TDSPeer

        emulator = PipelineEmulator()
        with TDSPeer(responder=emulator.respond, on_request=emulator.observe) as peer:
            config = {
                "database": {
                    "pipeline_type": "mssql",
                    "pipeline_config": mssql_peer_config(peer.port),
                }
            }
            async with DBClientFactory(config, clock=clock).create_client() as client:
                assert client.pipeline_db is not None
                yield client.pipeline_db


MSSQL_DSN_VARIABLE = "ASYNC_DB_CLIENT_MSSQL_DSN"


class MSSQLLiveBackend(RepoBackend):
    """A real SQL Server, when ``ASYNC_DB_CLIENT_MSSQL_DSN`` holds an ODBC connection
    string for it (the tests create and empty their tables in that database)."""

    name = "mssql"
    tiers = ("remote", "core", "pipeline")
    marks = (pytest.mark.live,)

    def setup(self, request: pytest.FixtureRequest) -> None:
        if not os.environ.get(MSSQL_DSN_VARIABLE):
            pytest.skip(
                f"no SQL Server: set {MSSQL_DSN_VARIABLE} to an ODBC connection string of a "
                "reachable server to run the contract suites on it"
            )
        require_msodbc()

    @contextlib.asynccontextmanager
    async def _repo(self, tier: str, clock: FakeClock) -> AsyncIterator[Any]:
        import pyodbc

        dsn = os.environ[MSSQL_DSN_VARIABLE]
        config = {"database": {f"{tier}_type": "mssql", f"{tier}_config": {"odbc_connect": dsn}}}
        if tier == "core":  # the core tier is MySQL's in production; the T-SQL runs here
            config = {"database": {}}
        async with DBClientFactory(config, clock=clock).create_client() as client:
            if tier == "core":
                from async_db_client.backends.registry import build_tier
                from async_db_client.config import MSSQLConfig

                client.core_db = build_tier(  # type: ignore[assignment]
                    "core", MSSQLConfig(odbc_connect=dsn), client.pools, clock
                )
            repo = getattr(client, f"{tier}_db")
            await repo.migrate()
            with contextlib.closing(pyodbc.connect(dsn, autocommit=True)) as conn:
                for table in TABLES[tier]:
                    conn.execute(f"DELETE FROM {table}")
            yield repo


class SQLiteBackend(RepoBackend):
    """Embedded SQLite through aiosqlite: a fresh database file per test."""

    name = "sqlite"
    tiers = ("remote", "core", "pipeline")
    path = ""

    def setup(self, request: pytest.FixtureRequest) -> None:
        tmp_path: Path = request.getfixturevalue("tmp_path")
        self.path = str(tmp_path / "contract.db")

    @contextlib.asynccontextmanager
    async def _repo(self, tier: str, clock: FakeClock) -> AsyncIterator[Any]:
        config = {"database": {f"{tier}_type": "sqlite", f"{tier}_config": {"path": self.path}}}
        async with DBClientFactory(config, clock=clock).create_client() as client:
            yield getattr(client, f"{tier}_db")


class SQLiteMemoryBackend(SQLiteBackend):
    """SQLite ``:memory:``: one database per client, shared by its calls."""

    name = "sqlite-memory"
    tiers = ("remote",)

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.path = ":memory:"


#: The application user of the multi-server tests: no READ ONLY ADMIN, so read_only
#: stops it as it stops a real application.
HA_USER = "adc_ha"
HA_PASSWORD = "Ha-s3cret-pw"


def topology_database(topology: Any) -> str:
    """The contract suites' database on a topology, made once per session."""
    name: str | None = getattr(topology, "adc_contract_database", None)
    if name is None:
        topology.create_user(HA_USER, HA_PASSWORD)
        name = topology.adc_contract_database = topology.create_database()
    return name


class MySQLReplicationBackend(MySQLBackend):
    """A primary and two GTID replicas (tests/support/topologies.py), listed replica
    first: the router must find the primary, and read_your_writes (the default) must
    make every read see the write before it, as on one server."""

    name = "mysql-replication"
    marks = (pytest.mark.live, pytest.mark.slow)
    fixture = "replication"
    mode = "replication"

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.topology = request.getfixturevalue(self.fixture)
        self.database = topology_database(self.topology)

    def tier_config(self) -> dict[str, Any]:
        return {
            "hosts": list(reversed(self.topology.hosts)),
            "ha_mode": self.mode,
            "database": self.database,
            "user": HA_USER,
            "password": HA_PASSWORD,
            "pool": {"min_size": 1, "max_size": 8, "acquire_timeout": 10},
        }

    def empty(self, tier: str) -> None:
        with self.writer_node().cursor() as cursor:
            for table in TABLES[tier]:
                cursor.execute(f"DELETE FROM `{self.database}`.{table}")
        self.settle()

    def writer_node(self) -> Any:
        return self.topology.primary

    def settle(self) -> None:
        # The tests' own deletes are not the client's writes: wait until every server
        # has them before the client reads.
        self.topology.wait_replicated()


class MySQLGaleraBackend(MySQLReplicationBackend):
    """A 3-node Galera cluster: writes on one node, reads round-robin over all three
    (causal reads, wsrep_sync_wait)."""

    name = "mysql-galera"
    fixture = "galera"
    mode = "galera"

    def writer_node(self) -> Any:
        return self.topology.up_nodes()[0]

    def settle(self) -> None:
        self.topology.wait_synced()


#: Every backend the contract suites run against.
BACKENDS: list[Callable[[], Backend]] = [
    MemoryBackend,
    MySQLBackend,
    MySQLAsyncmyBackend,
    MySQLOdbcBackend,
    SQLiteBackend,
    SQLiteMemoryBackend,
    MySQLLeastPrivilegeBackend,
    MySQLReplicationBackend,
    MySQLGaleraBackend,
    PostgreSQLBackend,
    PostgreSQLLeastPrivilegeBackend,
    PostgreSQLReplicationBackend,
    MSSQLPeerBackend,
    MSSQLLiveBackend,
]
