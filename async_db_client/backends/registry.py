"""Which store, dialect and driver serve which tier, as configured.

:func:`build_tier` is the one place that turns a tier's configuration into a repository:
the tier's contract (:mod:`async_db_client.tiers`) over a store: in memory, or SQL (a
dialect for the engine, a driver, an executor on the client's shared pool), wrapped in
an :class:`~async_db_client.outbox.Outbox` when the remote tier asks for one, and in a
:class:`~async_db_client.cache.CachedStore` (outside the outbox) when the tier's config
has a ``cache``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..cache import ReplayInvalidation, cached_store
from ..clock import Clock
from ..config import (
    AnyTierConfig,
    LocalConfig,
    MSSQLConfig,
    MySQLConfig,
    PoolSettings,
    PostgreSQLConfig,
    SQLiteConfig,
)
from ..dialects.base import Dialect
from ..drivers import make_driver
from ..drivers.base import Driver
from ..executor import Executor
from ..outbox import Outbox
from ..pool import ConnectionPool
from ..pool_manager import PoolManager
from ..retry import Backoff
from ..routing import Host, Topology, WritePositions
from ..telemetry.target import DBTarget, target_of
from ..tiers import CoreRepository, PipelineRepository, RemoteRepository, Repository
from .sql.base import SQLStore, schema_step

__all__ = ["Shared", "build_store", "build_tier"]

SQLConfig = MySQLConfig | MSSQLConfig | PostgreSQLConfig | SQLiteConfig

REPOSITORIES: dict[str, type[Repository[Any]]] = {
    "remote": RemoteRepository,
    "core": CoreRepository,
    "pipeline": PipelineRepository,
}


class Shared:
    """What clients built with it have in common: their in-memory stores, so that they
    see the same data (the sync facade builds one client per calling thread)."""

    def __init__(self) -> None:
        self._stores: dict[str, Any] = {}
        self._positions: dict[str, WritePositions] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Shared({sorted(self._stores)})"

    def store(self, tier: str, make: Any) -> Any:
        """The shared store of ``tier``, made with ``make()`` the first time."""
        with self._lock:
            if tier not in self._stores:
                self._stores[tier] = make()
            return self._stores[tier]

    def positions(self, tier: str) -> WritePositions:
        """Where ``tier``'s writes reached, shared by the clients (read_your_writes)."""
        with self._lock:
            return self._positions.setdefault(tier, WritePositions())

    def after_fork(self) -> None:
        """In a forked child: keep the data, drop locks another thread may have held."""
        self._lock = threading.Lock()
        for store in self._stores.values():
            store.after_fork()


def build_tier(
    tier: str,
    config: AnyTierConfig | None,
    pools: PoolManager,
    clock: Clock | None,
    *,
    shared: Shared | None = None,
) -> Repository[Any] | None:
    """The repository for ``tier`` as configured, or None if the tier is not configured.

    Drivers are imported lazily, so a missing optional driver only matters to the tiers
    that use it (and then raises ``DriverNotInstalledError`` naming the extra).
    """
    if config is None:
        return None
    # The positions of this client's writes, for read_your_writes on replicas: the same
    # for every thread of the sync facade and for the outbox's replayer.
    positions = WritePositions() if shared is None else shared.positions(tier)
    store: Any = build_store(tier, config, pools, shared, positions=positions)
    if tier == "remote" and not isinstance(config, LocalConfig) and config.outbox is not None:
        sql_config = config  # the replayer's store: the same database, its own pools
        path = config.outbox.path

        def replay_store(replay_pools: PoolManager) -> Any:
            # Replayed writes invalidate their paths in the caches over this outbox file.
            store = build_store(tier, sql_config, replay_pools, positions=positions)
            return ReplayInvalidation(store, path)

        store = Outbox(
            store,
            config.outbox.path,
            make_store=replay_store,
            replay_batch=config.outbox.replay_batch,
            max_attempts=config.outbox.max_attempts,
            backoff=Backoff(
                max(0.05, config.pool.reconnect_backoff_initial),
                config.pool.reconnect_backoff_max,
            ),
            wait_timeout=config.pool.acquire_timeout,
        )
    if config.cache is not None:  # outside the outbox: a queued write invalidates too
        store = cached_store(tier, store, config.cache, clock, shared=shared)
    return REPOSITORIES[tier](store, clock=clock)


def build_store(
    tier: str,
    config: AnyTierConfig,
    pools: PoolManager,
    shared: Shared | None = None,
    *,
    positions: WritePositions | None = None,
) -> Any:
    """The store of ``tier`` on the configured engine (any engine for any tier: the
    configuration decides which pairs are offered; tests run the others too)."""
    if isinstance(config, LocalConfig):
        from . import memory

        make = {
            "remote": memory.MemoryRemoteStore,
            "core": memory.MemoryCoreStore,
            "pipeline": memory.MemoryPipelineStore,
        }[tier]
        return make() if shared is None else shared.store(tier, make)
    dialect = _dialect(config)
    if (isinstance(config, MySQLConfig) and config.hosts is not None) or (
        isinstance(config, PostgreSQLConfig) and config.routed
    ):
        executor = _routed_executor(tier, dialect, config, pools, positions or WritePositions())
        target = target_of(config, executor.driver)
    else:
        driver = make_driver(config)
        executor = _executor(tier, dialect, driver, config, pools, driver.pool_settings)
        target = target_of(config, driver)
    return _sql_store(tier, dialect, executor, target)


def _dialect(config: SQLConfig) -> Dialect:
    """The SQL of the config's engine: one dialect per engine, whatever the driver."""
    if isinstance(config, MySQLConfig):
        from ..dialects.mysql import MySQLDialect

        return MySQLDialect()
    if isinstance(config, MSSQLConfig):
        from ..dialects.tsql import TSQLDialect

        return TSQLDialect()
    if isinstance(config, PostgreSQLConfig):
        from ..dialects.postgresql import PostgreSQLDialect

        return PostgreSQLDialect()
    from ..dialects.sqlite import SQLiteDialect

    return SQLiteDialect()


def _sql_store(tier: str, dialect: Dialect, executor: Executor, target: DBTarget) -> SQLStore:
    from . import sql

    classes: dict[str, type[SQLStore]] = {
        "remote": sql.SQLRemoteStore,
        "core": sql.SQLCoreStore,
        "pipeline": sql.SQLPipelineStore,
    }
    return classes[tier](dialect, executor, target=target)


def _pool_source(
    driver: Driver[Any], config: SQLConfig, pools: PoolManager, settings: PoolSettings
) -> Callable[[], ConnectionPool[Any]]:
    """The shared pool of ``config``'s server, as the executor asks for it."""
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

    return pool_source


def _executor(
    tier: str,
    dialect: Dialect,
    driver: Driver[Any],
    config: SQLConfig,
    pools: PoolManager,
    settings: PoolSettings,
) -> Executor:
    prepare = schema_step(dialect, tier, auto_migrate=config.auto_migrate)
    return Executor(
        _pool_source(driver, config, pools, settings),
        driver,
        settings,
        prepare=prepare,
        bulk_connections=settings.bulk_connections,
    )


def _routed_executor(
    tier: str,
    dialect: Dialect,
    config: MySQLConfig | PostgreSQLConfig,
    pools: PoolManager,
    positions: WritePositions,
) -> Executor:
    """A tier on several servers: a pool per server (shared with other tiers naming the
    same server), and a router choosing among them (see :mod:`async_db_client.routing`)."""
    hosts = []
    for host, port in config.addresses:
        host_config = config.for_host(host, port)
        driver = make_driver(host_config)
        hosts.append(
            Host(
                address=f"{host}:{port}",
                driver=driver,
                pool=_pool_source(driver, host_config, pools, driver.pool_settings),
            )
        )
    topology = Topology(config, hosts, positions=positions, spawn=pools.spawn)
    pools.topologies[tier] = topology
    settings = config.pool
    return Executor(
        lambda: topology.current_pool,
        hosts[0].driver,
        settings,
        prepare=schema_step(dialect, tier, auto_migrate=config.auto_migrate),
        bulk_connections=settings.bulk_connections,
        router=topology,
    )
