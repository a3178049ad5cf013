"""Configuration: the predecessor's ``{'database': {...}}`` dict, validated.

``ClientConfig.model_validate(config_dict)`` (or :func:`parse_config`, which raises this
library's :class:`~async_db_client.errors.ConfigurationError`) accepts the seed's shape
unchanged::

    {'database': {
        'remote_type': 'mysql' | 'mssql' | 'postgresql' | 'sqlite' | 'local',
        'remote_config': {...},
        'core_type': 'mysql' | 'postgresql' | 'sqlite' | 'local',   'core_config': {...},
        'pipeline_type': 'mssql' | 'postgresql' | 'sqlite' | 'local',
        'pipeline_config': {...},
    }}

Any tier may be left out (``{'database': {}}``, or ``DBClientFactory(None)``, has no
tiers at all; a dict without a ``database`` section is refused, as a typo; the embedded
default store of the command-line tool is the CLI's choice, see
:mod:`async_db_client.cli`). Keys other than ``database`` at the top level are ignored
(they belong to the application); inside ``database`` and each tier config, unknown keys
are errors, so a typo never silently falls back to a default.

Passwords are :class:`pydantic.SecretStr`: they never appear in a repr, str, log line or
error message.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .errors import ConfigurationError

__all__ = [
    "CacheConfig",
    "ClientConfig",
    "DatabaseConfig",
    "LocalConfig",
    "MSSQLConfig",
    "MySQLConfig",
    "OutboxConfig",
    "PGTLSConfig",
    "PoolSettings",
    "PostgreSQLConfig",
    "SQLiteConfig",
    "TLSConfig",
    "TierConfig",
    "parse_config",
]

TIERS = ("remote", "core", "pipeline")
ENGINES_BY_TIER: dict[str, tuple[str, ...]] = {
    "remote": ("mysql", "mssql", "postgresql", "sqlite", "local"),
    "core": ("mysql", "postgresql", "sqlite", "local"),
    "pipeline": ("mssql", "postgresql", "sqlite", "local"),
}
#: The path that names a private in-memory SQLite database.
SQLITE_MEMORY = ":memory:"

#: The discriminator tags pydantic puts into error locations (dropped from key paths).
ENGINE_TAGS = frozenset({"mysql", "mssql", "postgresql", "sqlite", "local"})

# Finite: an infinite query timeout would reach MariaDB as "max_statement_time = inf"
# and fail every connection; None (where allowed) means no limit.
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolSettings(_Strict):
    """Connection-pool settings, shared by every engine (key ``pool`` of a tier config).

    Times are in seconds. ``max_lifetime`` is the age since the connection was opened
    (jittered by up to -10 % so connections do not all expire together); ``max_idle`` is
    how long an idle connection above ``min_size`` is kept; a connection that sat idle for
    ``check_after_idle`` is pinged before it is handed out.

    Two budgets bound a call that needs a connection: ``acquire_timeout`` for waiting on
    a busy pool, and ``connect_retry_budget`` for retrying connects the server refused or
    did not answer (each attempt also bounded by ``connect_timeout``): an unreachable
    server fails a call within the latter, however long the former is.
    """

    min_size: Annotated[int, Field(ge=0, le=1000)] = 1
    max_size: Annotated[int, Field(ge=1, le=1000)] = 10
    acquire_timeout: PositiveSeconds = 30.0
    max_waiting: Annotated[int, Field(ge=0)] = 0
    connect_timeout: PositiveSeconds = 10.0
    connect_retry_budget: PositiveSeconds = 5.0
    query_timeout: PositiveSeconds | None = 300.0
    max_lifetime: PositiveSeconds = 3600.0
    max_idle: PositiveSeconds = 600.0
    check_after_idle: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 5.0
    reconnect_backoff_initial: PositiveSeconds = 0.05
    reconnect_backoff_max: PositiveSeconds = 5.0
    retry_attempts: Annotated[int, Field(ge=0, le=20)] = 3
    close_timeout: PositiveSeconds = 5.0
    #: Connections one bulk write may use at once (capped by ``max_size``).
    bulk_connections: Annotated[int, Field(ge=1, le=64)] = 4

    @model_validator(mode="after")
    def _sizes(self) -> PoolSettings:
        if self.min_size > self.max_size:
            raise ValueError(
                f"min_size: min_size ({self.min_size}) exceeds max_size ({self.max_size})"
            )
        return self


class TLSConfig(_Strict):
    """TLS for MySQL/MariaDB: file paths of the CA, client certificate and key."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    verify_cert: bool = True
    verify_identity: bool = True

    @model_validator(mode="after")
    def _pair(self) -> TLSConfig:
        _check_client_certificate(self.cert, self.key)
        return self


def _check_client_certificate(cert: str | None, key: str | None) -> None:
    """A client certificate and its key go together (ValueError naming the missing one)."""
    if cert is not None and key is None:
        raise ValueError("key: required when cert is given (cert and key go together)")
    if key is not None and cert is None:
        raise ValueError("cert: required when key is given (cert and key go together)")


class OutboxConfig(_Strict):
    """A durable local outbox for remote writes when the database is unreachable."""

    path: Annotated[str, Field(min_length=1)]
    replay_batch: Annotated[int, Field(ge=1, le=10_000)] = 200
    #: Tries of an entry the database refuses (not an error that may pass) before it is
    #: moved to the dead letters.
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 5


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class CacheConfig(_Strict):
    """A cache of a tier's hot reads (key ``cache`` of a tier config; see
    :mod:`async_db_client.cache` for what it guarantees).

    ``backend``: ``memory`` (this client's process only: other clients' writes show
    within ``ttl``) or ``redis`` (shared through ``redis_url``: a write by any client is
    seen on the next read of every client). ``ttl``: the most seconds an entry is served
    after it was read from the database. ``max_entries``: the in-process entries kept
    (least recently used dropped first). ``redis_timeout``: the longest one Redis call
    may take before the read goes to the database instead; after a failure Redis is
    left alone for ``retry_interval`` seconds. ``key_prefix`` namespaces the Redis keys.
    """

    backend: Literal["memory", "redis"]
    ttl: PositiveSeconds = 30.0
    max_entries: Annotated[int, Field(ge=1, le=100_000_000)] = 100_000
    #: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` or ``unix://``:
    #: secret (it usually holds the password), shown redacted.
    redis_url: SecretStr | None = None
    redis_timeout: PositiveSeconds = 0.1
    retry_interval: PositiveSeconds = 1.0
    key_prefix: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    ] = "adc"

    @model_validator(mode="after")
    def _redis(self) -> CacheConfig:
        if self.backend == "redis":
            if self.redis_url is None:
                raise ValueError("redis_url: required for backend 'redis'")
            if not self.redis_url.get_secret_value().startswith(REDIS_SCHEMES):
                raise ValueError(
                    "redis_url: must start with redis://, rediss:// or unix:// "
                    "(the value is not shown: it may hold a password)"
                )
        elif self.redis_url is not None:
            raise ValueError("redis_url: only for backend 'redis'")
        return self

    def describe(self) -> str:
        """Where the cache lives, for logs and errors (never a password)."""
        if self.redis_url is None:
            return "memory"
        return redact_url(self.redis_url.get_secret_value())


def redact_url(url: str) -> str:
    """``url`` with any password (the part of ``user:password@`` after the colon, or a
    ``password=`` query parameter) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    netloc, slash, tail = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    elif at:
        netloc = f"***@{host}" if scheme.startswith("redis") and userinfo else netloc
    tail = re.sub(r"(?i)(password=)[^&]*", r"\1***", tail)
    return f"{scheme}://{netloc}{slash}{tail}"


class _ServerConfig(_Strict):
    auto_migrate: bool = True
    pool: PoolSettings = Field(default_factory=PoolSettings)
    #: Remote tier only: keep writes in a local SQLite file while the server is down.
    outbox: OutboxConfig | None = None
    #: Cache this tier's hot reads (off by default; see :mod:`async_db_client.cache`).
    cache: CacheConfig | None = None

    #: The fields that change no connection: a pool key leaves them out (tiers differing
    #: only in them share a pool). Every other field is in the key, a new one too.
    _not_in_pool_key: ClassVar[frozenset[str]] = frozenset({"auto_migrate", "outbox", "cache"})
    #: What a pool key has besides the fields: values derived from fields it leaves out.
    _pool_key_extras: ClassVar[tuple[str, ...]] = ()

    def pool_key(self) -> tuple[Any, ...]:
        """Identity of the server and credentials: equal keys share one pool. A secret
        is in it only as a digest."""
        fields = [name for name in type(self).model_fields if name not in self._not_in_pool_key]
        parts = (_key_part(getattr(self, name)) for name in (*fields, *self._pool_key_extras))
        return (type(self).__name__, *parts)  # engines never share a pool, whatever the values


#: The settings of a MySQL or PostgreSQL tier that name its servers and route reads among
#: them. A pool is one server's: its key has them only as the config's ``addresses``.
_SERVERS_AND_ROUTING = frozenset(
    {"host", "port", "hosts", "ha_mode", "read_consistency", "max_replication_lag"}
)


class MySQLConfig(_ServerConfig):
    """MySQL/MariaDB: the predecessor's keys ``host, port, database, user, password``.

    Several servers (issue 13): ``hosts`` instead of ``host``, each ``"host"`` or
    ``"host:port"`` (``port`` is the default port), and ``ha_mode`` saying what they are:

    * ``replication``: the first reachable writable host (``@@read_only = 0``) is the
      primary, the others are read replicas;
    * ``galera``: every synced node takes reads and writes (writes go to one of them at
      a time, which keeps certification conflicts away);
    * ``sequential``: one server at a time, in order, moving on when it fails.

    ``read_consistency`` is ``read_your_writes`` (a read after this client's write sees
    it) or ``eventual``; replicas more than ``max_replication_lag`` seconds behind get no
    reads. See :mod:`async_db_client.routing`.
    """

    type: Literal["mysql"] = "mysql"
    host: Annotated[str, Field(min_length=1)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 3306
    hosts: list[Annotated[str, Field(min_length=1)]] | None = None
    ha_mode: Literal["replication", "galera", "sequential"] = "replication"
    read_consistency: Literal["read_your_writes", "eventual"] = "read_your_writes"
    max_replication_lag: PositiveSeconds = 5.0
    database: Annotated[str, Field(min_length=1, max_length=64)]
    user: Annotated[str, Field(min_length=1)]
    password: SecretStr = SecretStr("")
    ssl: TLSConfig | None = None
    #: ``aiomysql`` (default), ``asyncmy`` (the ``fast`` extra), or ``odbc`` through
    #: unixODBC and ``odbc_driver``.
    driver: Literal["aiomysql", "asyncmy", "odbc"] = "aiomysql"
    odbc_driver: Annotated[str, Field(min_length=1)] = "MariaDB Unicode"

    @model_validator(mode="after")
    def _tls_needs_aiomysql(self) -> MySQLConfig:
        if self.ssl is not None and self.driver == "odbc":
            raise ValueError("ssl: TLS settings are supported with drivers 'aiomysql', 'asyncmy'")
        return self

    @model_validator(mode="after")
    def _one_way_to_name_servers(self) -> MySQLConfig:
        _check_servers(self.host, self.hosts, self.port)
        if self.hosts is not None and self.driver == "odbc":
            raise ValueError(
                "hosts: several servers are supported with drivers 'aiomysql', 'asyncmy'"
            )
        return self

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every server, in the configured order."""
        return _addresses(self.host, self.hosts, self.port)

    _not_in_pool_key = _ServerConfig._not_in_pool_key | _SERVERS_AND_ROUTING
    # Galera's causal reads are a setting of every connection of the pool.
    _pool_key_extras = ("addresses", "galera_causal_reads")

    def for_host(self, host: str, port: int) -> MySQLConfig:
        """This config for one of its servers: what that server's pool and driver use
        (a one-entry ``hosts``, so the mode's connection settings stay)."""
        return self.model_copy(update={"hosts": [_address_text(host, port)]})

    def describe(self) -> str:
        """Where this points, for logs and errors (never the password)."""
        scheme = "mysql+odbc" if self.driver == "odbc" else "mysql"
        return f"{scheme}://{self.user}@{_addresses_text(self.addresses)}/{self.database}"

    @property
    def galera_causal_reads(self) -> bool:
        """Whether connections ask Galera for causal reads (``wsrep_sync_wait``)."""
        return (
            self.hosts is not None
            and self.ha_mode == "galera"
            and self.read_consistency == "read_your_writes"
        )


class PGTLSConfig(_Strict):
    """TLS for PostgreSQL (key ``ssl`` of a ``postgresql`` tier), libpq's names.

    ``sslmode``: ``disable``, ``prefer`` (TLS if the server offers it, unverified),
    ``require`` (TLS, unverified), ``verify-ca`` (TLS, the certificate checked against
    ``ca`` or the system's CAs) or ``verify-full`` (the default once ``ssl`` is given: the
    host name checked too). ``cert`` and ``key``: a client certificate, for ``require``
    and the verifying modes.
    """

    sslmode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = "verify-full"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PGTLSConfig:
        _check_client_certificate(self.cert, self.key)
        if self.sslmode in ("disable", "prefer"):
            for name in ("ca", "cert", "key"):
                if getattr(self, name) is not None:
                    raise ValueError(
                        f"{name}: not used with sslmode {self.sslmode!r}"
                        " (use require, verify-ca or verify-full)"
                    )
        return self


class PostgreSQLConfig(_ServerConfig):
    """PostgreSQL through asyncpg (the ``postgresql`` extra): keys ``host``, ``port``
    (5432), ``database``, ``user``, ``password``, ``ssl`` (:class:`PGTLSConfig`; without
    it libpq's default ``prefer``), ``pool``, ``auto_migrate``.

    ``pgbouncer``: connections go through PgBouncer in transaction pooling mode, so no
    statement is prepared by name on the server (asyncpg's statement cache is off; the
    unnamed statement of each call is all the server keeps) and nothing outlives a
    transaction.

    Several servers: ``hosts`` instead of ``host``, each ``"host"``, ``"host:port"`` or
    ``"[v6 address]:port"``: a primary and its streaming-replication standbys
    (``ha_mode``: ``replication``, the only mode PostgreSQL has here). As on MySQL (see
    :mod:`async_db_client.routing`): writes and transactions go to the primary (not in
    recovery, not read-only), reads outside a transaction round-robin over the standbys
    at most ``max_replication_lag`` seconds behind, and ``read_consistency``
    (``read_your_writes``, the default, or ``eventual``) says whether a read after this
    client's write must see it (a standby read first waits, bounded, for the write's WAL
    position to be replayed there, else reads on the primary). A write a server refuses
    for being read-only (SQLSTATE 25006) makes the client find the primary again and run
    it there.

    ``hosts`` with one entry keeps the single-pool behaviour: connections go to that
    server only while it is a primary (asyncpg's ``target_session_attrs='primary'``), and
    a 25006 makes the pool drop its connections.
    """

    type: Literal["postgresql"] = "postgresql"
    host: Annotated[str, Field(min_length=1)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    hosts: list[Annotated[str, Field(min_length=1)]] | None = None
    ha_mode: str = "replication"
    read_consistency: Literal["read_your_writes", "eventual"] = "read_your_writes"
    max_replication_lag: PositiveSeconds = 5.0
    # PostgreSQL truncates identifiers to 63 bytes: a longer name would silently be
    # another database.
    database: Annotated[str, Field(min_length=1, max_length=63)]
    user: Annotated[str, Field(min_length=1, max_length=63)]
    password: SecretStr = SecretStr("")
    ssl: PGTLSConfig | None = None
    pgbouncer: bool = False

    _not_in_pool_key = _ServerConfig._not_in_pool_key | _SERVERS_AND_ROUTING
    _pool_key_extras = ("addresses",)

    @model_validator(mode="after")
    def _one_way_to_name_servers(self) -> PostgreSQLConfig:
        _check_servers(self.host, self.hosts, self.port)
        if self.ha_mode != "replication":
            raise ValueError(
                f"ha_mode: {self.ha_mode!r} is not a PostgreSQL mode; PostgreSQL has only "
                "'replication' (a primary and its streaming-replication standbys)"
            )
        return self

    @property
    def routed(self) -> bool:
        """Several servers, each with a pool of its own and a router choosing among them
        (a one-entry ``hosts`` keeps the one pool that connects to a primary only)."""
        return self.hosts is not None and len(self.hosts) > 1

    def for_host(self, host: str, port: int) -> PostgreSQLConfig:
        """This config for one of its servers: what that server's pool and driver use
        (``host``, so the driver connects to it whatever its role)."""
        return self.model_copy(update={"hosts": None, "host": host, "port": port})

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every server, in the configured order."""
        return _addresses(self.host, self.hosts, self.port)

    def describe(self) -> str:
        """Where this points, for logs and errors (never the password)."""
        return f"postgresql://{self.user}@{_addresses_text(self.addresses)}/{self.database}"


def _check_servers(host: str | None, hosts: list[str] | None, port: int) -> None:
    """One server in ``host`` or several in ``hosts``, each named once (ValueError naming
    the key otherwise)."""
    if hosts is None:
        if host is None:
            raise ValueError("host: required (or give several servers in hosts)")
        return
    if host is not None:
        raise ValueError("hosts: give either host (one server) or hosts, not both")
    if not hosts:
        raise ValueError("hosts: the list is empty; name at least one server")
    seen: dict[tuple[str, int], int] = {}
    for n, entry in enumerate(hosts):
        address = _host_port(entry, port, f"hosts.{n}")
        if address in seen:
            raise ValueError(f"hosts.{n}: the same server as hosts.{seen[address]}")
        seen[address] = n


def _addresses(host: str | None, hosts: list[str] | None, port: int) -> list[tuple[str, int]]:
    if hosts is None:
        assert host is not None
        return [(host, port)]
    return [_host_port(entry, port, "hosts") for entry in hosts]


def _address_text(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (as ``hosts`` entries are written)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _addresses_text(addresses: list[tuple[str, int]]) -> str:
    return ",".join(_address_text(host, port) for host, port in addresses)


def _host_port(entry: str, default_port: int, key: str) -> tuple[str, int]:
    """``"host"``, ``"host:port"`` or ``"[v6 address]:port"`` as a ``(host, port)`` pair."""
    host, port_text = entry, None
    if entry.startswith("["):
        host, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"{key}: not host, host:port or [address]:port")
        port_text = rest[1:] if rest else None
    elif entry.count(":") == 1:
        host, port_text = entry.split(":")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{key}: no valid host name")
    return host, default_port if port_text is None else _port(port_text, key)


def _port(text: str, key: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{key}: bad port (a number from 1 to 65535)")
    return int(text)


class MSSQLConfig(_ServerConfig):
    """SQL Server: the predecessor's keys ``server, database, username, password``.

    ``odbc_connect`` may give a complete ODBC connection string instead; it is treated as
    secret because it usually holds the password.
    """

    type: Literal["mssql"] = "mssql"
    server: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    database: str | None = None
    username: str | None = None
    password: SecretStr = SecretStr("")
    driver: Annotated[str, Field(min_length=1)] = "ODBC Driver 18 for SQL Server"
    encrypt: bool | Literal["strict"] = True
    trust_server_certificate: bool = False
    odbc_attributes: dict[str, str] = Field(default_factory=dict)
    odbc_connect: SecretStr | None = None

    @model_validator(mode="after")
    def _target(self) -> MSSQLConfig:
        if self.odbc_connect is None:
            missing = [k for k in ("server", "database", "username") if not getattr(self, k)]
            if missing:
                raise ValueError(
                    f"{missing[0]}: {', '.join(missing)} required "
                    "(or give a full odbc_connect string)"
                )
        return self

    def describe(self) -> str:
        if self.odbc_connect is not None and not self.server:
            return "mssql://(odbc_connect)"
        port = f":{self.port}" if self.port else ""
        return f"mssql://{self.username}@{self.server}{port}/{self.database}"


class SQLiteConfig(_ServerConfig):
    """SQLite, embedded (``sqlite``): key ``path``, a database file or ``:memory:``.

    A relative ``path`` is taken relative to the working directory; ``~`` is expanded.
    The file is created if missing (its directory must exist). ``busy_timeout`` is how
    long a statement waits for another connection's (or process's) write lock before it
    fails with a retryable error.

    ``:memory:`` is one database per client, shared by every tier of the client that
    names it and kept for the client's lifetime; its pool always has exactly one
    connection (``pool.min_size``/``max_size`` are forced to 1).
    """

    type: Literal["sqlite"] = "sqlite"
    path: Annotated[str, Field(min_length=1)]
    busy_timeout: PositiveSeconds = 30.0

    @property
    def in_memory(self) -> bool:
        return self.path == SQLITE_MEMORY

    def resolved_path(self) -> str:
        """The absolute file path (``:memory:`` unchanged)."""
        if self.in_memory:
            return self.path
        return os.path.abspath(os.path.expanduser(self.path))

    def describe(self) -> str:
        return f"sqlite://{self.resolved_path()}"

    def pool_key(self) -> tuple[Any, ...]:
        if self.in_memory:
            # One memory database per client, whatever each tier's (forced) pool says.
            return ("sqlite", SQLITE_MEMORY)
        return ("sqlite", self.resolved_path(), self.busy_timeout, self.pool)


class LocalConfig(_Strict):
    """The in-memory backend (``local``): only ``cache`` (as for the other engines)."""

    type: Literal["local"] = "local"
    cache: CacheConfig | None = None

    def describe(self) -> str:
        return "memory://"


AnyTierConfig = MySQLConfig | MSSQLConfig | PostgreSQLConfig | SQLiteConfig | LocalConfig
TierConfig = Annotated[AnyTierConfig, Field(discriminator="type")]


class DatabaseConfig(_Strict):
    """The ``database`` section: a type and a config per tier, each optional."""

    remote_type: Literal["mysql", "mssql", "postgresql", "sqlite", "local"] | None = None
    remote_config: TierConfig | None = None
    core_type: Literal["mysql", "postgresql", "sqlite", "local"] | None = None
    core_config: TierConfig | None = None
    pipeline_type: Literal["mssql", "postgresql", "sqlite", "local"] | None = None
    pipeline_config: TierConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _tag_configs(cls, data: Any) -> Any:
        # Each tier's config dict is validated by the model its *_type names; copying the
        # type into the dict lets pydantic pick that model (and report errors inside it).
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        for tier in TIERS:
            kind = data.get(f"{tier}_type")
            raw = data.get(f"{tier}_config")
            if kind is None:
                if raw is not None:
                    raise ValueError(f"{tier}_type: required when {tier}_config is given")
                continue
            if not isinstance(kind, str) or kind not in ENGINES_BY_TIER[tier]:
                data.pop(f"{tier}_config", None)  # only report the type (the Literal check)
                continue
            if raw is None:
                if kind == "local":
                    data[f"{tier}_config"] = {"type": "local"}
                continue
            if isinstance(raw, Mapping):
                if "type" in raw:
                    raise ValueError(f"{tier}_config.type: not a key; use {tier}_type")
                data[f"{tier}_config"] = {**raw, "type": kind}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> DatabaseConfig:
        for tier in TIERS:
            kind = getattr(self, f"{tier}_type")
            config = getattr(self, f"{tier}_config")
            if kind is None and config is not None:
                raise ValueError(f"{tier}_type: required when {tier}_config is given")
            if kind is not None and config is None:
                raise ValueError(f"{tier}_config: required for {tier}_type {kind!r}")
            if tier != "remote" and getattr(config, "outbox", None) is not None:
                raise ValueError(f"{tier}_config.outbox: only the remote tier has an outbox")
        return self

    def tier(self, name: str) -> AnyTierConfig | None:
        """The validated config of tier ``name`` ('remote', 'core', 'pipeline'), or None."""
        if name not in TIERS:
            raise ValueError(f"unknown tier {name!r}; expected one of {', '.join(TIERS)}")
        config: AnyTierConfig | None = getattr(self, f"{name}_config")
        return config


class ClientConfig(BaseModel):
    """The whole configuration. Only the ``database`` section is read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    database: DatabaseConfig = Field(default_factory=DatabaseConfig)


def parse_config(config: Mapping[str, Any] | ClientConfig | None) -> ClientConfig:
    """Validate a configuration dict, raising :class:`ConfigurationError` on any problem.

    The error names the offending key as a dotted path (``database.remote_config.host``)
    and never includes a configured value.
    """
    if config is None:
        return ClientConfig()
    if isinstance(config, ClientConfig):
        return config
    if not isinstance(config, Mapping):
        raise ConfigurationError(
            f"configuration must be a mapping, not {type(config).__name__}", key=None
        )
    if "database" not in config:
        # The top level is the application's (other keys are left alone), so a typo there
        # would silently mean "no tiers": a config dict must have the database section.
        close = difflib.get_close_matches("database", [str(k) for k in config], n=1)
        hint = f" (did you mean 'database' for {close[0]!r}?)" if close else ""
        raise ConfigurationError(
            f"database: required: the configuration has no 'database' section{hint}",
            key="database",
        )
    try:
        return ClientConfig.model_validate(config)
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
    # Raised outside the except block: the pydantic error (whose text shows input values,
    # passwords included) is not even kept as the new error's __context__.
    problems = [_problem(config, error["loc"], error["msg"], error["type"]) for error in errors]
    text = "; ".join(f"{key}: {message}" if key else message for key, message in problems)
    raise ConfigurationError(f"invalid configuration: {text}", key=problems[0][0] or None)


def _problem(
    config: Mapping[str, Any], loc: tuple[int | str, ...], message: str, kind: str
) -> tuple[str, str]:
    """The dotted key of one pydantic error, as the user wrote it, and its message.

    pydantic's location has parts the user never wrote (the tier tag after
    ``remote_config``, union members such as ``bool`` or ``literal['strict']``,
    ``[key]``); walking the input keeps only keys that are there, plus a missing
    required key. Model-level checks phrase their message as "key: reason".
    """
    message = message.removeprefix("Value error, ")
    parts = [(part, kind == "missing" and n == len(loc) - 1) for n, part in enumerate(loc)]
    head, sep, rest = message.partition(": ")
    if sep and head.replace("_", "").replace(".", "").isalnum() and " " not in head:
        parts.extend((name, True) for name in head.split("."))
        message = rest
    path: list[str] = []
    node: Any = config
    for part, may_be_missing in parts:
        key = _lookup(node, part)
        if key is not _ABSENT:
            path.append(str(part))
            node = node[key]
        elif may_be_missing and isinstance(node, Mapping):
            path.append(str(part))  # a required key the user left out
            break
        # else: a tag pydantic added to the location; the user's keys go on below it
    return ".".join(path), message


_ABSENT = object()


def _lookup(node: Any, part: int | str) -> Any:
    """The key (or index) of ``node`` that location part ``part`` names, or _ABSENT."""
    if isinstance(node, Mapping):
        if part in node:
            return part
        for key in node:  # a key pydantic reported as a str (an int key, say)
            if str(key) == str(part):
                return key
    elif isinstance(node, list | tuple) and str(part).isdigit() and int(part) < len(node):
        return int(part)  # "hosts.1" from a model-level message names item 1
    return _ABSENT


def _key_part(value: Any) -> Any:
    """``value`` as part of a pool key: hashable, and a secret only as its digest (an
    empty one as None: an empty ``odbc_connect`` shares the pool of none given)."""
    if isinstance(value, SecretStr):
        return _digest(value) if value else None
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return tuple(sorted(value.items()))
    return value


def _digest(secret: SecretStr) -> str:
    return hashlib.sha256(secret.get_secret_value().encode("utf-8", "surrogatepass")).hexdigest()
