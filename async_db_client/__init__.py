"""Async client for directory-hash monitoring databases.

Three tiers: **remote** (a site's hash records and logs), **core** (dashboard over all
sites) and **pipeline** (update requests). Start from :class:`DBClientFactory`::

    from async_db_client import DBClientFactory

    async with DBClientFactory(config).create_client() as db:
        await db.insert_or_update_hash({'path': '/data', 'current_hash': 'abc123'})

Blocking scripts use the same API through :mod:`async_db_client.sync`.
Everything is logged under the ``async_db_client`` logger (silent by default).
"""

import logging

from .client import DBClientFactory, DBInstance
from .clock import Clock, FakeClock, SystemClock
from .config import ClientConfig, PoolSettings, parse_config
from .errors import (
    AsyncDBClientError,
    ConfigurationError,
    ConnectionLostError,
    DBConnectionError,
    DriverNotInstalledError,
    IntegrityError,
    InvalidInputError,
    MigrationError,
    NoServerError,
    PoolClosedError,
    PoolTimeout,
    QueryError,
    QueryTimeoutError,
    ServerRoleError,
    SyncUsageError,
    TooManyWaitersError,
    TransientQueryError,
    UsageError,
    WrongEventLoopError,
)
from .models import (
    BulkResult,
    DashboardMetrics,
    HashRecord,
    LogEntry,
    LogLevel,
    PipelineUpdate,
    RejectedRecord,
    SiteCompletion,
    SiteStatus,
)
from .pool import PoolStats
from .tiers import CoreRepository, PipelineRepository, RemoteRepository

__version__ = "0.1.0"

logging.getLogger("async_db_client").addHandler(logging.NullHandler())

__all__ = [
    "AsyncDBClientError",
    "BulkResult",
    "ClientConfig",
    "Clock",
    "ConfigurationError",
    "ConnectionLostError",
    "CoreRepository",
    "DBClientFactory",
    "DBConnectionError",
    "DBInstance",
    "DashboardMetrics",
    "DriverNotInstalledError",
    "FakeClock",
    "HashRecord",
    "IntegrityError",
    "InvalidInputError",
    "LogEntry",
    "LogLevel",
    "MigrationError",
    "NoServerError",
    "PipelineRepository",
    "PipelineUpdate",
    "PoolClosedError",
    "PoolSettings",
    "PoolStats",
    "PoolTimeout",
    "QueryError",
    "QueryTimeoutError",
    "RejectedRecord",
    "RemoteRepository",
    "ServerRoleError",
    "SiteCompletion",
    "SiteStatus",
    "SyncUsageError",
    "SystemClock",
    "TooManyWaitersError",
    "TransientQueryError",
    "UsageError",
    "WrongEventLoopError",
    "__version__",
    "parse_config",
]
