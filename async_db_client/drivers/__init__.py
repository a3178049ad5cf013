"""The database drivers, behind one seam, and the registry that picks one for a tier.

Each module here adapts one async driver to :class:`~async_db_client.drivers.base.Driver`
(aiomysql or asyncmy for MySQL/MariaDB, aioodbc for SQL Server and MySQL over ODBC,
asyncpg for PostgreSQL, aiosqlite for SQLite); nothing else in the library imports a driver package.
:func:`make_driver` picks the driver a tier's config names, imports its module only then,
and builds it with the class's ``from_config(config)``. So a missing optional package
matters only to the tiers that use it, and raises
:class:`~async_db_client.errors.DriverNotInstalledError` naming the pip extra: here, when
the module is imported, or, for a module that imports its packages on first connect (the
ODBC one), from there.

Adding a driver (asyncpg, ...) is one new module in this package, whose class
implements the :class:`~async_db_client.drivers.base.Driver` protocol and a
``from_config`` classmethod, plus one entry in :data:`DRIVERS` (and the name among those
its config accepts, e.g. ``MySQLConfig.driver``). Nothing else changes: asyncmy came in
that way, its MySQL pieces shared with aiomysql's in ``mysql_common``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

from ..config import MSSQLConfig, MySQLConfig, PostgreSQLConfig, SQLiteConfig
from ..errors import DriverNotInstalledError
from .base import Driver

__all__ = ["DRIVERS", "DriverEntry", "make_driver"]


class DriverEntry(NamedTuple):
    """Where a driver lives and what installs it."""

    #: The module in this package that holds the driver.
    module: str
    #: The driver class in that module.
    cls: str
    #: The pip extra that installs the driver's packages; None for a core dependency
    #: (then a missing package is a broken install, and its ImportError is raised as is).
    extra: str | None


#: Every driver, by the name configs use for it.
DRIVERS: dict[str, DriverEntry] = {
    "aiomysql": DriverEntry("aiomysql", "AiomysqlDriver", None),
    "asyncmy": DriverEntry("asyncmy", "AsyncmyDriver", "fast"),
    "odbc": DriverEntry("odbc", "AioodbcDriver", "mssql"),
    "asyncpg": DriverEntry("asyncpg", "AsyncpgDriver", "postgresql"),
    "aiosqlite": DriverEntry("aiosqlite", "AiosqliteDriver", "sqlite"),
}


ServerConfig = MySQLConfig | MSSQLConfig | PostgreSQLConfig | SQLiteConfig


def _driver_name(config: ServerConfig) -> str:
    """The name in :data:`DRIVERS` of the driver ``config`` asks for."""
    if isinstance(config, MySQLConfig):
        return config.driver
    if isinstance(config, MSSQLConfig):
        return "odbc"
    if isinstance(config, PostgreSQLConfig):
        return "asyncpg"
    return "aiosqlite"


def make_driver(config: ServerConfig) -> Driver[Any]:
    """The driver for a tier's ``config``, its module imported now.

    Raises :class:`~async_db_client.errors.DriverNotInstalledError` if a package the
    driver's module imports is missing and an extra installs it.
    """
    entry = DRIVERS[_driver_name(config)]
    try:
        module = importlib.import_module(f"{__name__}.{entry.module}")
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        if entry.extra is None or not missing or missing == __name__.partition(".")[0]:
            raise
        raise DriverNotInstalledError(missing, entry.extra) from None
    driver: Driver[Any] = getattr(module, entry.cls).from_config(config)
    return driver


if TYPE_CHECKING:
    # The registry imports by name, so nothing else checks that each class is a Driver.
    from .aiomysql import AiomysqlDriver
    from .aiosqlite import AiosqliteDriver
    from .asyncmy import AsyncmyDriver
    from .asyncpg import AsyncpgDriver
    from .odbc import AioodbcDriver

    _CHECKED: tuple[type[Driver[Any]], ...] = (
        AiomysqlDriver,
        AsyncmyDriver,
        AioodbcDriver,
        AsyncpgDriver,
        AiosqliteDriver,
    )
