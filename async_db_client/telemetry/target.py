"""What a store says about the database behind it, for spans and metrics.

A :class:`DBTarget` is built once per store from the tier's configuration (never its
password) by :func:`target_of`; SQL stores carry it as ``store.target``. The in-memory
fakes have none: :data:`MEMORY` stands for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MEMORY", "DBTarget", "target_of"]


@dataclass(frozen=True, eq=False)
class DBTarget:
    """The semantic-convention identity of a database: ``db.system.name``,
    ``db.namespace``, ``server.address``, ``server.port``, and the bounded pool name
    (``host:port/database``; SQLite: its file path)."""

    configured_system: str
    namespace: str | None
    address: str | None
    port: int | None
    pool_name: str | None
    #: The driver, which may learn the product at connect time (MariaDB behind a
    #: ``mysql`` configuration); None: the configured system is final.
    driver: Any = None

    @property
    def system(self) -> str:
        """``db.system.name``: ``mariadb`` once a MySQL-protocol connection met MariaDB."""
        if self.driver is not None:
            version = getattr(self.driver, "server_version", None)
            if version is not None and "mariadb" in version.lower():
                return "mariadb"
        return self.configured_system


#: The in-memory fakes (``local``): no server, no pool. ``inmemory`` follows the
#: value proposed for in-process databases; it is this library's documented choice.
MEMORY = DBTarget("inmemory", None, None, None, None)


def target_of(config: Any, driver: Any = None) -> DBTarget:
    """The target of a SQL tier's configuration (MySQL/MariaDB, PostgreSQL, SQL Server, SQLite)."""
    kind = getattr(config, "type", None)
    if kind == "mysql":
        # With several servers: the first one's address (spans do not name the server
        # a call was routed to yet); the pool label names them all.
        (host, port), *_ = config.addresses
        servers = ",".join(f"{h}:{p}" for h, p in config.addresses)
        return DBTarget(
            "mysql", config.database, host, port, f"{servers}/{config.database}", driver
        )
    if kind == "postgresql":
        (host, port), *_ = config.addresses
        servers = ",".join(f"{h}:{p}" for h, p in config.addresses)
        return DBTarget(
            "postgresql", config.database, host, port, f"{servers}/{config.database}", driver
        )
    if kind == "mssql":
        server = config.server or None
        port = config.port or None
        pool = None if server is None else f"{server}:{port or 1433}/{config.database}"
        return DBTarget("microsoft.sql_server", config.database or None, server, port, pool)
    if kind == "sqlite":
        path = config.resolved_path()
        return DBTarget("sqlite", path, None, None, path)
    return MEMORY
