"""The backends the contract suites run against; a new engine is one more entry here.

Each backend hands out fresh, empty repositories on a given clock. Live backends
register themselves in later modules (``tests/live.py``) and are skipped or failed,
according to ``CI``, when their server is unreachable.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance, FakeClock
from async_db_client.backends.memory_core import MemoryCoreRepository
from async_db_client.backends.memory_pipeline import MemoryPipelineRepository
from async_db_client.backends.memory_remote import MemoryRemoteRepository
from async_db_client.interfaces import CoreRepository, PipelineRepository, RemoteRepository
from tests.live import empty_tables, mysql_config


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
        yield MemoryRemoteRepository(clock=clock)

    @contextlib.asynccontextmanager
    async def core(self, clock: FakeClock) -> AsyncIterator[CoreRepository]:
        yield MemoryCoreRepository(clock=clock)

    @contextlib.asynccontextmanager
    async def pipeline(self, clock: FakeClock) -> AsyncIterator[PipelineRepository]:
        yield MemoryPipelineRepository(clock=clock)


class MySQLBackend(Backend):
    """The live MariaDB through aiomysql: a client per test on the session's database."""

    name = "mysql"
    tiers = ("remote", "core", "pipeline")
    marks = (pytest.mark.live,)
    database = ""

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.database = request.getfixturevalue("mysql_database")

    @contextlib.asynccontextmanager
    async def _client(self, tier: str, clock: FakeClock) -> AsyncIterator[DBInstance]:
        config = {
            "database": {f"{tier}_type": "mysql", f"{tier}_config": mysql_config(self.database)}
        }
        if tier == "pipeline":  # the pipeline is SQL Server's in production; MySQL SQL here
            config = {"database": {}}
        async with DBClientFactory(config, clock=clock).create_client() as client:
            if tier == "pipeline":
                client.pipeline_db = _mysql_pipeline(self.database, client, clock)
            repo = getattr(client, f"{tier}_db")
            await repo.migrate()
            empty_tables(self.database, tier)
            yield client

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


def _mysql_pipeline(database: str, client: DBInstance, clock: FakeClock) -> PipelineRepository:
    """The SQL pipeline repository on MariaDB (config allows only mssql/local for it)."""
    from async_db_client.backends.registry import mysql_repository
    from async_db_client.config import MySQLConfig

    repo = mysql_repository("pipeline", MySQLConfig(**mysql_config(database)), client.pools, clock)
    assert isinstance(repo, PipelineRepository)
    return repo


class SQLiteBackend(Backend):
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

    def remote(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[RemoteRepository]:
        return self._repo("remote", clock)

    def core(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[CoreRepository]:
        return self._repo("core", clock)

    def pipeline(
        self, clock: FakeClock
    ) -> contextlib.AbstractAsyncContextManager[PipelineRepository]:
        return self._repo("pipeline", clock)


class SQLiteMemoryBackend(SQLiteBackend):
    """SQLite ``:memory:``: one database per client, shared by its calls."""

    name = "sqlite-memory"
    tiers = ("remote",)

    def setup(self, request: pytest.FixtureRequest) -> None:
        self.path = ":memory:"


#: Every backend the contract suites run against.
BACKENDS: list[Callable[[], Backend]] = [
    MemoryBackend,
    MySQLBackend,
    SQLiteBackend,
    SQLiteMemoryBackend,
]
