"""Which repository class serves which tier on which engine."""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..config import (
    AnyTierConfig,
    LocalConfig,
    MSSQLConfig,
    MySQLConfig,
    PoolSettings,
    SQLiteConfig,
)
from ..dialects.base import Dialect
from ..drivers import make_driver
from ..executor import Driver, Executor
from ..interfaces import Repository
from ..pool import ConnectionPool
from ..pool_manager import PoolManager
from .sql_base import schema_step

__all__ = ["build_tier"]


def build_tier(
    tier: str,
    config: AnyTierConfig | None,
    pools: PoolManager,
    clock: Clock | None,
) -> Repository | None:
    """The repository for ``tier`` as configured, or None if the tier is not configured.

    Drivers are imported here, lazily, so a missing optional driver only matters to the
    tiers that use it (and then raises ``DriverNotInstalledError`` naming the extra).
    """
    if config is None:
        return None
    if isinstance(config, LocalConfig):
        return _memory(tier, clock)
    if isinstance(config, MySQLConfig):
        return mysql_repository(tier, config, pools, clock)
    if isinstance(config, MSSQLConfig):
        return mssql_repository(tier, config, pools, clock)
    if isinstance(config, SQLiteConfig):
        return sqlite_repository(tier, config, pools, clock)
    raise NotImplementedError(f"{config.type} backend for the {tier} tier")


def _sql_repository(
    tier: str,
    dialect: Dialect,
    executor: Executor,
    clock: Clock | None,
    config: MySQLConfig | MSSQLConfig | SQLiteConfig | None = None,
) -> Repository:
    from .sql_core import SQLCoreRepository
    from .sql_pipeline import SQLPipelineRepository
    from .sql_remote import SQLRemoteRepository

    classes: dict[str, type[SQLRemoteRepository | SQLCoreRepository | SQLPipelineRepository]] = {
        "remote": SQLRemoteRepository,
        "core": SQLCoreRepository,
        "pipeline": SQLPipelineRepository,
    }
    repo = classes[tier](dialect, executor, clock=clock)
    if config is not None and config.outbox is not None and isinstance(repo, SQLRemoteRepository):
        from ..outbox import Outbox

        settings = config.pool
        repo.outbox = Outbox(
            config.outbox.path,
            replay_batch=config.outbox.replay_batch,
            backoff_initial=max(0.05, settings.reconnect_backoff_initial),
            backoff_max=settings.reconnect_backoff_max,
        )
        repo.outbox.bind(repo)
    return repo


def _executor(
    tier: str,
    dialect: Dialect,
    driver: Driver[Any],
    config: MySQLConfig | MSSQLConfig | SQLiteConfig,
    pools: PoolManager,
    *,
    settings: PoolSettings | None = None,
) -> Executor:
    key = config.pool_key()
    name = config.describe()
    settings = settings or config.pool
    cached: ConnectionPool[Any] | None = None

    def pool_source() -> ConnectionPool[Any]:
        # Called for every statement: remember the pool instead of hashing the key again.
        # A closed one (client closed, or dropped after fork) is looked up anew.
        nonlocal cached
        if cached is None or cached.closed:
            cached = pools.get(
                key, lambda unique: ConnectionPool(driver, settings, name=unique), name
            )
        return cached

    prepare = schema_step(dialect, tier, auto_migrate=config.auto_migrate)
    return Executor(
        pool_source,
        driver,
        settings,
        prepare=prepare,
        bulk_connections=settings.bulk_connections,
    )


def mysql_repository(
    tier: str, config: MySQLConfig, pools: PoolManager, clock: Clock | None
) -> Repository:
    """The SQL repository of ``tier`` on MySQL/MariaDB, through aiomysql or ODBC."""
    from ..dialects.mysql import MySQLDialect

    driver = make_driver(config)
    dialect = MySQLDialect()
    executor = _executor(tier, dialect, driver, config, pools, settings=driver.pool_settings)
    return _sql_repository(tier, dialect, executor, clock, config)


def mssql_repository(
    tier: str, config: MSSQLConfig, pools: PoolManager, clock: Clock | None
) -> Repository:
    """The SQL repository of ``tier`` on SQL Server through aioodbc."""
    from ..dialects.tsql import TSQLDialect

    driver = make_driver(config)
    dialect = TSQLDialect()
    executor = _executor(tier, dialect, driver, config, pools, settings=driver.pool_settings)
    return _sql_repository(tier, dialect, executor, clock, config)


def sqlite_repository(
    tier: str, config: SQLiteConfig, pools: PoolManager, clock: Clock | None
) -> Repository:
    """The SQL repository of ``tier`` on SQLite through aiosqlite."""
    from ..dialects.sqlite import SQLiteDialect

    dialect = SQLiteDialect()
    driver = make_driver(config)
    executor = _executor(tier, dialect, driver, config, pools, settings=driver.pool_settings)
    return _sql_repository(tier, dialect, executor, clock, config)


def _memory(tier: str, clock: Clock | None) -> Repository:
    if tier == "remote":
        from .memory_remote import MemoryRemoteRepository

        return MemoryRemoteRepository(clock=clock)
    if tier == "core":
        from .memory_core import MemoryCoreRepository

        return MemoryCoreRepository(clock=clock)
    from .memory_pipeline import MemoryPipelineRepository

    return MemoryPipelineRepository(clock=clock)
