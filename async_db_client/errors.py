"""The library's exception hierarchy.

Every exception the library raises on purpose derives from :class:`AsyncDBClientError`,
and also from the built-in class a caller would naturally catch::

    AsyncDBClientError
    ├── ConfigurationError (ValueError)        bad configuration; names the key
    ├── InvalidInputError (ValueError)         bad argument or record; names the field
    ├── DriverNotInstalledError (ImportError)  optional driver missing; names the extra
    ├── DBConnectionError (ConnectionError)    the database cannot be reached or was lost
    │   ├── ConnectionLostError                lost in the middle of an operation
    │   ├── PoolTimeout (TimeoutError)         no connection within the acquire timeout
    │   │   └── TooManyWaitersError            the pool's queue of waiting tasks is full
    │   └── NoServerError                      none of a tier's hosts can take the call
    ├── UsageError (RuntimeError)              the library used in a way it cannot work
    │   ├── PoolClosedError                    the pool or client was closed
    │   ├── WrongEventLoopError                a pool used from another event loop
    │   └── SyncUsageError                     the sync facade misused (e.g. inside a loop)
    ├── QueryError                             the server rejected or failed a statement
    │   ├── IntegrityError                     a constraint was violated
    │   ├── TransientQueryError                deadlock or lock wait timeout (retryable)
    │   │   └── ServerRoleError                the server is read-only or not in its cluster
    │   └── QueryTimeoutError (TimeoutError)   the statement exceeded the query timeout
    └── MigrationError                         the schema could not be brought up to date

Messages never contain a password: configuration errors are built from field locations
only, and connection errors from a redacted description of the target.
"""

from __future__ import annotations

__all__ = [
    "AsyncDBClientError",
    "ConfigurationError",
    "ConnectionLostError",
    "DBConnectionError",
    "DriverNotInstalledError",
    "IntegrityError",
    "InvalidInputError",
    "MigrationError",
    "NoServerError",
    "PoolClosedError",
    "PoolTimeout",
    "QueryError",
    "QueryTimeoutError",
    "ServerRoleError",
    "SyncUsageError",
    "TooManyWaitersError",
    "TransientQueryError",
    "UsageError",
    "WrongEventLoopError",
]


class AsyncDBClientError(Exception):
    """Base class of every error raised by ``async_db_client``."""


class ConfigurationError(AsyncDBClientError, ValueError):
    """The configuration is malformed. ``key`` is the dotted path of the offending key."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class InvalidInputError(AsyncDBClientError, ValueError):
    """An argument or record is invalid. ``field`` names it; ``reason`` says why."""

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.field = field
        self.reason = reason or message


class DriverNotInstalledError(AsyncDBClientError, ImportError):
    """A backend's optional driver is not installed; the message names the extra."""

    def __init__(self, driver: str, extra: str) -> None:
        super().__init__(
            f"the {driver!r} driver is not installed: pip install 'async_db_client[{extra}]'"
        )
        self.driver = driver
        self.extra = extra


class DBConnectionError(AsyncDBClientError, ConnectionError):
    """The database could not be reached, refused the login, or the connection broke.

    ``reason`` is what the server or the operating system said, without the target
    (the message names it), so a pool that gives up after several attempts can quote it
    once: ``cannot connect to <target>: <reason> (<attempts>)``.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason

    @classmethod
    def cannot_connect(cls, target: str, reason: str) -> DBConnectionError:
        """``cannot connect to <target>: <reason>``; ``target`` never holds a password."""
        return cls(f"cannot connect to {target}: {reason}", reason=reason)


class ConnectionLostError(DBConnectionError):
    """The connection broke in the middle of an operation (server restart, network cut)."""


class NoServerError(DBConnectionError):
    """With several hosts: none can take the call now (no writable primary, no synced
    Galera node, every host unreachable). The message says what each host is."""


class PoolTimeout(DBConnectionError, TimeoutError):
    """No connection could be handed out before the acquire deadline."""


class TooManyWaitersError(PoolTimeout):
    """The pool already has ``max_waiting`` tasks queued; the request was refused at once."""


class UsageError(AsyncDBClientError, RuntimeError):
    """The library was used in a way it cannot work: a closed client, a transaction used
    after it ended or opened inside another, a pool from the wrong event loop."""


class PoolClosedError(UsageError):
    """The pool (or the client that owns it) has been closed."""


class WrongEventLoopError(UsageError):
    """A pool was used from an event loop other than the one it was opened in."""


class QueryError(AsyncDBClientError):
    """The server rejected or failed a statement. ``code`` is the driver's error code."""

    def __init__(self, message: str, *, code: int | str | None = None) -> None:
        super().__init__(message)
        self.code = code


class IntegrityError(QueryError):
    """A constraint (unique key, not null, foreign key) was violated."""


class TransientQueryError(QueryError):
    """A deadlock or lock wait timeout: the statement may succeed if run again."""


class ServerRoleError(TransientQueryError):
    """The server refused the statement for its role: read-only (a replica, MySQL 1290)
    or a Galera node outside the primary component (1047). Nothing ran; with several
    hosts the roles are discovered again and the call goes where it can run."""


class QueryTimeoutError(QueryError, TimeoutError):
    """A statement did not finish within the configured query timeout."""


class MigrationError(AsyncDBClientError):
    """The schema could not be migrated (or is newer than this library knows)."""


class SyncUsageError(UsageError):
    """The sync facade was used where it cannot work, such as inside a running event loop."""
