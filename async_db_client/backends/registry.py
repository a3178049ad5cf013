"""Which store, dialect and driver serve which tier, as configured.

:func:`build_tier` is the one place that turns a tier's configuration into a repository:
the tier's contract (:mod:`async_db_client.tiers`) over a store: in memory, or SQL (a
dialect for the engine, a driver, an executor on the client's shared pool), wrapped in
an :class:`~async_db_client.outbox.Outbox` when the remote tier asks for one.
"""

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
from ..errors import DriverNotInstalledError
from ..executor import Driver, Executor
from ..outbox import Outbox
from ..pool import ConnectionPool
from ..pool_manager import PoolManager
from ..retry import Backoff
from ..tiers import CoreRepository, PipelineRepository, RemoteRepository, Repository
from .sql.base import SQLStore, schema_step

__all__ = ["build_store", "build_tier"]

SQLConfig = MySQLConfig | MSSQLConfig | SQLiteConfig

REPOSITORIES: dict[str, type[Repository[Any]]] = {
    "remote": RemoteRepository,
    "core": CoreRepository,
    "pipeline": PipelineRepository,
}


def build_tier(
    tier: str,
    config: AnyTierConfig | None,
    pools: PoolManager,
    clock: Clock | None,
) -> Repository[Any] | None:
    """The repository for ``tier`` as configured, or None if the tier is not configured.

    Drivers are imported lazily, so a missing optional driver only matters to the tiers
    that use it (and then raises ``DriverNotInstalledError`` naming the extra).
    """
    if config is None:
        return None
    store: Any = build_store(tier, config, pools)
    if tier == "remote" and not isinstance(config, LocalConfig) and config.outbox is not None:
        store = Outbox(
            store,
            config.outbox.path,
            replay_batch=config.outbox.replay_batch,
            backoff=Backoff(
                max(0.05, config.pool.reconnect_backoff_initial),
                config.pool.reconnect_backoff_max,
            ),
        )
    return REPOSITORIES[tier](store, clock=clock)


def build_store(tier: str, config: AnyTierConfig, pools: PoolManager) -> Any:
    """The store of ``tier`` on the configured engine (any engine for any tier: the
    configuration decides which pairs are offered; tests run the others too)."""
    if isinstance(config, LocalConfig):
        from . import memory

        return {
            "remote": memory.MemoryRemoteStore,
            "core": memory.MemoryCoreStore,
            "pipeline": memory.MemoryPipelineStore,
        }[tier]()
    if isinstance(config, MySQLConfig):
        dialect, driver, settings = _mysql(config)
    elif isinstance(config, MSSQLConfig):
        dialect, driver, settings = _mssql(config)
    elif isinstance(config, SQLiteConfig):
        dialect, driver, settings = _sqlite(config)
    else:
        raise NotImplementedError(f"{config.type} backend for the {tier} tier")
    return _sql_store(tier, dialect, _executor(tier, dialect, driver, config, pools, settings))


def _sql_store(tier: str, dialect: Dialect, executor: Executor) -> SQLStore:
    from . import sql

    classes: dict[str, type[SQLStore]] = {
        "remote": sql.SQLRemoteStore,
        "core": sql.SQLCoreStore,
        "pipeline": sql.SQLPipelineStore,
    }
    return classes[tier](dialect, executor)


def _executor(
    tier: str,
    dialect: Dialect,
    driver: Driver[Any],
    config: SQLConfig,
    pools: PoolManager,
    settings: PoolSettings,
) -> Executor:
    key = config.pool_key()
    name = config.describe()
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


def _mysql(config: MySQLConfig) -> tuple[Dialect, Driver[Any], PoolSettings]:
    """MySQL/MariaDB, through aiomysql or ODBC."""
    from ..dialects.mysql import MySQLDialect

    driver: Driver[Any]
    if config.driver == "odbc":
        from .odbc import AioodbcDriver, odbc_connection_string

        def connection_string() -> str:
            return odbc_connection_string(
                {
                    "DRIVER": config.odbc_driver,
                    "SERVER": config.host,
                    "PORT": str(config.port),
                    "DATABASE": config.database,
                    "UID": config.user,
                    "PWD": config.password.get_secret_value(),
                    "CHARSET": "utf8mb4",
                }
            )

        driver = AioodbcDriver(
            connection_string,
            description=config.describe(),
            max_size=config.pool.max_size,
            query_timeout=config.pool.query_timeout,
            utf8_text=True,
            datetime_as_text=True,
        )
    else:
        from .mysql import AiomysqlDriver

        driver = AiomysqlDriver(config)
    return MySQLDialect(), driver, config.pool


def _mssql(config: MSSQLConfig) -> tuple[Dialect, Driver[Any], PoolSettings]:
    """SQL Server through aioodbc."""
    from ..dialects.tsql import TSQLDialect
    from .odbc import AioodbcDriver, mssql_connection_string

    driver = AioodbcDriver(
        lambda: mssql_connection_string(config),
        description=config.describe(),
        max_size=config.pool.max_size,
        query_timeout=config.pool.query_timeout,
    )
    return TSQLDialect(), driver, config.pool


def _sqlite(config: SQLiteConfig) -> tuple[Dialect, Driver[Any], PoolSettings]:
    """SQLite through aiosqlite."""
    try:
        from .sqlite import AiosqliteDriver
    except ModuleNotFoundError as exc:
        if exc.name != "aiosqlite":
            raise
        raise DriverNotInstalledError("aiosqlite", "sqlite") from None
    from ..dialects.sqlite import SQLiteDialect

    driver = AiosqliteDriver(config)
    # SQLite has one writer at a time: a bulk write on several connections would only
    # queue them on the write lock, so bulk writes use one.
    settings = driver.pool_settings.model_copy(update={"bulk_connections": 1})
    return SQLiteDialect(), driver, settings
