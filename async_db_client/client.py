"""The async client: :class:`DBInstance` over the three tiers, built by :class:`DBClientFactory`.

::

    async with DBClientFactory(config).create_client() as db:
        await db.insert_or_update_hash({'path': '/data', 'current_hash': 'abc'})
        record = await db.get_hash_record('/data')

Every tier method delegates to the tier that owns it (those delegations are generated
from the contracts in :mod:`async_db_client.tiers` by ``tools/gen_facades.py``). A method
of a tier that is not configured raises :class:`NotImplementedError` naming the missing
``*_type`` key, as the predecessor did.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from . import models
from .backends.registry import Shared, build_tier
from .backends.sql.base import SQLStore
from .cache import CachedStore, CacheStats, unwrap
from .clock import Clock
from .config import ClientConfig, parse_config
from .errors import PoolClosedError
from .executor import holding
from .outbox import DeadEntry, Outbox, OutboxStats
from .pool_manager import PoolManager, PoolStats
from .tiers import (
    CoreRepository,
    PipelineRepository,
    RemoteRepository,
    Repository,
    SingleValue,
    Tier,
)

__all__ = ["DBClientFactory", "DBInstance", "Shared", "Tier", "joining"]

# The transactions open in the current context, by (client id, tier): calls made on the
# client inside ``async with db.transaction():`` join that transaction.
_ACTIVE_TX: contextvars.ContextVar[Mapping[tuple[int, str], Repository[Any]]] = (
    contextvars.ContextVar("async_db_client_active_tx", default=MappingProxyType({}))
)


class DBInstance:
    """The async client over the remote, core and pipeline tiers.

    Use it as an async context manager, or call :meth:`aclose` when done: closing releases
    every pool the client opened. Safe to share between tasks of one event loop.
    """

    def __init__(
        self,
        remote_db: RemoteRepository | None = None,
        core_db: CoreRepository | None = None,
        pipeline_db: PipelineRepository | None = None,
        *,
        pools: PoolManager | None = None,
    ) -> None:
        self.remote_db = remote_db
        self.core_db = core_db
        self.pipeline_db = pipeline_db
        self.pools = pools or PoolManager()
        self._closed = False
        #: Where the client was made, for the warning if it is never closed.
        self.created_at: str | None = None

    def __del__(self) -> None:
        # No I/O here (the loop may be gone): only say so, as asyncio does for its loops.
        if self._closed or not (self.pools.stats() or isinstance(self._store(), Outbox)):
            return
        with contextlib.suppress(Exception):  # at interpreter shutdown, say nothing
            warnings.warn(
                f"async_db_client: a client that opened connections was never closed "
                f"(created at {self.created_at or 'an unknown place'}); await db.aclose() "
                "or use 'async with'",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    def _store(self) -> object:
        return None if self.remote_db is None else unwrap(self.remote_db.store)

    def __repr__(self) -> str:
        tiers = [
            f"{name}={type(repo.store).__name__}"
            for name, repo in (
                ("remote", self.remote_db),
                ("core", self.core_db),
                ("pipeline", self.pipeline_db),
            )
            if repo is not None
        ]
        state = " closed" if self._closed else ""
        return f"<DBInstance {' '.join(tiers) or 'no tiers'}{state}>"

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> DBInstance:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the tiers, then every pool, in that order, whatever fails. Idempotent.

        A failure to close is raised once everything was closed: the error itself, or an
        ``ExceptionGroup`` of them if several tiers failed."""
        if self._closed:
            return
        self._closed = True
        errors: list[Exception] = []
        for repo in (self.pipeline_db, self.core_db, self.remote_db):
            if repo is not None:
                try:
                    await repo.aclose()
                except Exception as exc:  # the pools must close all the same
                    errors.append(exc)
        try:
            await self.pools.aclose()
        except Exception as exc:
            errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("closing the client failed", errors)

    def _tier(self, tier: str) -> Repository[Any]:
        if self._closed:
            raise PoolClosedError("the client is closed")
        active = _ACTIVE_TX.get()
        if active:
            tx = active.get((id(self), tier))
            if tx is not None:
                return tx
        repo: Repository[Any] | None
        if tier == "remote":
            repo = self.remote_db
        elif tier == "core":
            repo = self.core_db
        else:
            repo = self.pipeline_db if tier == "pipeline" else None
        if repo is None:
            if tier not in ("remote", "core", "pipeline"):
                raise ValueError(f"unknown tier {tier!r}; expected remote, core or pipeline")
            raise NotImplementedError(
                f"the {tier} tier is not configured (set database.{tier}_type)"
            )
        return repo

    def _remote(self) -> RemoteRepository:
        repo = self._tier("remote")
        assert isinstance(repo, RemoteRepository)
        return repo

    def _core(self) -> CoreRepository:
        repo = self._tier("core")
        assert isinstance(repo, CoreRepository)
        return repo

    def _pipeline(self) -> PipelineRepository:
        repo = self._tier("pipeline")
        assert isinstance(repo, PipelineRepository)
        return repo

    @contextlib.asynccontextmanager
    async def transaction(self, tier: Tier = "remote") -> AsyncIterator[Any]:
        """Group calls on one tier into one transaction.

        ``async with db.transaction(): ...`` commits when the block exits normally and
        rolls back when it raises. Calls on ``db`` for that tier inside the block (in this
        task and tasks it starts) join the transaction; the yielded repository may also
        be used directly. Transactions do not nest.
        """
        repo = self._tier(tier)
        if (id(self), tier) in _ACTIVE_TX.get():
            raise PoolClosedError(f"a {tier} transaction is already open in this task")
        async with repo.transaction() as tx:
            with joining(self, tier, tx):
                yield tx

    async def migrate(self) -> dict[str, int]:
        """Apply pending schema migrations on every configured tier; their versions."""
        versions = {}
        for name in ("remote", "core", "pipeline"):
            repo = getattr(self, f"{name}_db")
            if repo is not None:
                versions[name] = await repo.migrate()
        return versions

    async def outbox_pending(self) -> int:
        """Writes waiting in the remote tier's outbox (0 without an outbox)."""
        outbox = self._outbox()
        return 0 if outbox is None else await outbox.pending()

    async def flush_outbox(self, timeout: float | None = None) -> int:
        """Wait for the outbox to be replayed (at most ``timeout``); the writes still
        waiting (0 without an outbox)."""
        outbox = self._outbox()
        return 0 if outbox is None else await outbox.flush(timeout)

    async def outbox_stats(self) -> OutboxStats | None:
        """The outbox's counts and counters (None without an outbox)."""
        outbox = self._outbox()
        return None if outbox is None else await outbox.stats()

    async def outbox_dead_entries(self, limit: int = 100) -> list[DeadEntry]:
        """Writes the outbox gave up on (the database refused them), oldest first."""
        outbox = self._outbox()
        return [] if outbox is None else await outbox.dead_entries(limit)

    async def outbox_retry_dead(self, seqs: list[int] | None = None) -> int:
        """Queue dead outbox entries again (all, or those ``seqs``); how many."""
        outbox = self._outbox()
        return 0 if outbox is None else await outbox.retry_dead(seqs)

    async def outbox_drop_dead(self, seqs: list[int] | None = None) -> int:
        """Delete dead outbox entries (all, or those ``seqs``); how many."""
        outbox = self._outbox()
        return 0 if outbox is None else await outbox.drop_dead(seqs)

    def _outbox(self) -> Outbox | None:
        # Inside a transaction the tier is the transaction's, whose writes bypass it.
        store = unwrap(self._remote().store)
        return store if isinstance(store, Outbox) else None

    def cache_stats(self) -> dict[str, CacheStats]:
        """Each cached tier's counters (hits, misses, evictions, invalidations, Redis
        errors, ...), by tier name; empty when no tier has a ``cache``."""
        stats = {}
        for name, repo in (
            ("remote", self.remote_db),
            ("core", self.core_db),
            ("pipeline", self.pipeline_db),
        ):
            if repo is not None and isinstance(repo.store, CachedStore):
                stats[name] = repo.store.stats()
        return stats

    def pool_stats(self) -> dict[str, PoolStats]:
        """Statistics of every pool this client opened, by redacted target."""
        return self.pools.stats()

    async def health_check(self) -> dict[str, bool]:
        """Health of every configured tier: ``local_db``, ``core_db``, ``pipeline_db``."""
        return {key: why is None for key, why in (await self.health_report()).items()}

    async def health_report(self) -> dict[str, str | None]:
        """Each configured tier's health key, and why it did not answer (None: it did).

        Each tier is pinged as a call on it would run: inside ``db.transaction()`` over
        the transaction's connection, never waiting for it (see
        :mod:`async_db_client.executor`). Failures are logged, never raised."""
        names = [name for name in ("remote", "core", "pipeline") if getattr(self, f"{name}_db")]
        reports = await asyncio.gather(*(self._tier(name).health_report() for name in names))
        report = {key: why for tier in reports for key, why in tier.items()}
        # A tier with several servers: its key says whether it takes writes; one more key
        # per server (``local_db@10.0.0.2:3306``) says whether that server serves.
        for name, topology in self.pools.topologies.items():
            key = self._tier(name).health_key
            for address, why in (await topology.health()).items():
                report[f"{key}@{address}"] = why
        return report

    async def topology(self) -> dict[str, Any]:
        """The servers of each tier configured with ``hosts``, found out now: mode,
        writer, and per server its role, lag, what it serves, how long it stays
        deny-listed, why it serves nothing, and its pool's stats (``{}`` without such
        a tier)."""
        described = {}
        for name, topology in self.pools.topologies.items():
            await topology.refresh()
            described[name] = topology.describe()
        return described

    # --- generated by tools/gen_facades.py from the tier contracts; do not edit ---
    # --------------------------------------------------------------------- remote

    async def get_hash_record(self, path: str) -> models.HashRecord | None:
        """The record stored for ``path``, or None."""
        return await self._remote().get_hash_record(path)

    async def insert_or_update_hash(self, record: Mapping[str, Any] | models.HashRecord) -> bool:
        """Store ``record`` with prev-hash rotation; False (logged) if it is invalid."""
        return await self._remote().insert_or_update_hash(record)

    async def insert_or_update_hashes(
        self, records: Iterable[Mapping[str, Any] | models.HashRecord]
    ) -> models.BulkResult:
        """Validate every record, store the valid ones, report the rejected ones."""
        return await self._remote().insert_or_update_hashes(records)

    async def get_single_field(self, path: str, field: str) -> SingleValue:
        """One field of the record for ``path`` (None if no record)."""
        return await self._remote().get_single_field(path, field)

    async def set_target_hash(self, path: str, target_hash: str | None) -> bool:
        """Set (or with None, clear) the target hash of an existing record."""
        return await self._remote().set_target_hash(path, target_hash)

    async def get_priority_updates(self) -> list[str]:
        """Paths whose ``target_hash`` is set and differs from ``current_hash``, sorted."""
        return await self._remote().get_priority_updates()

    async def put_log(
        self, args_dict: Mapping[str, Any] | models.LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a log entry and return its new id; None (logged) if it is invalid."""
        return await self._remote().put_log(args_dict, idempotency_key=idempotency_key)

    async def get_logs(
        self, limit: int | None = None, offset: int = 0, order_by: str = "timestamp",
        order_direction: str = "DESC", session_id_filter: str | None = None,
        older_than_days: int | None = None
    ) -> list[models.LogEntry]:
        """Log entries, filtered and paged."""
        return await self._remote().get_logs(
            limit, offset, order_by, order_direction, session_id_filter, older_than_days
        )

    async def delete_log_entries(self, log_ids: Iterable[int]) -> tuple[int, list[int]]:
        """Delete the given log entries: ``(deleted_count, ids_not_found)``."""
        return await self._remote().delete_log_entries(log_ids)

    async def find_orphaned_entries(self) -> list[str]:
        """Paths whose parent has a record that does not list them, sorted."""
        return await self._remote().find_orphaned_entries()

    async def find_untracked_children(self) -> list[str]:
        """``parent/name`` for each name in a record's ``dirs`` with no record, sorted."""
        return await self._remote().find_untracked_children()

    def iter_hash_records(self, *, batch_size: int = 1000) -> AsyncIterator[models.HashRecord]:
        """Every stored record, in key order, fetched ``batch_size`` at a time."""
        return self._remote().iter_hash_records(batch_size=batch_size)

    def iter_logs(self, *, batch_size: int = 1000) -> AsyncIterator[models.LogEntry]:
        """Every log entry, oldest id first, fetched ``batch_size`` at a time."""
        return self._remote().iter_logs(batch_size=batch_size)

    async def restore_hash_records(
        self, records: Iterable[Mapping[str, Any] | models.HashRecord]
    ) -> models.BulkResult:
        """Store complete records exactly as given (for restoring a backup)."""
        return await self._remote().restore_hash_records(records)

    async def restore_logs(
        self, entries: Iterable[Mapping[str, Any] | models.LogEntry]
    ) -> models.BulkResult:
        """Store log entries as given (timestamp required; new ids are assigned)."""
        return await self._remote().restore_logs(entries)

    # --------------------------------------------------------------------- core

    async def get_dashboard_content(self) -> models.DashboardMetrics:
        """The eleven dashboard counters; every site in one sync and one live bucket."""
        return await self._core().get_dashboard_content()

    async def get_recent_logs(self) -> list[models.LogEntry]:
        """Central log entries of the last 30 days, newest first."""
        return await self._core().get_recent_logs()

    async def get_hash_record_count(self) -> int:
        """Total hash records over all sites, as last reported in their heartbeats."""
        return await self._core().get_hash_record_count()

    async def get_log_count_last_24h(self, log_level: str) -> int:
        """How many central log entries of ``log_level`` (any case) in the last 24 h."""
        return await self._core().get_log_count_last_24h(log_level)

    async def get_sites(self) -> list[models.SiteStatus]:
        """Every known site's status, sorted by site id."""
        return await self._core().get_sites()

    async def put_site_heartbeat(
        self, site_id: str, *, hash_record_count: int | None = None
    ) -> None:
        """Record that ``site_id`` is alive now (registering it if new)."""
        await self._core().put_site_heartbeat(site_id, hash_record_count=hash_record_count)

    async def put_site_root_hash(
        self, site_id: str, root_hash: str, *, computed_at: datetime | None = None
    ) -> None:
        """Record the root hash a site computed (at ``computed_at``, default now)."""
        await self._core().put_site_root_hash(site_id, root_hash, computed_at=computed_at)

    async def put_baseline(self, baseline_hash: str, *, created_at: datetime | None = None) -> int:
        """Publish a new baseline hash (the newest becomes the sync reference); its id."""
        return await self._core().put_baseline(baseline_hash, created_at=created_at)

    async def put_core_log(
        self, args_dict: Mapping[str, Any] | models.LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a central log entry (same rules as the remote ``put_log``)."""
        return await self._core().put_core_log(args_dict, idempotency_key=idempotency_key)

    # --------------------------------------------------------------------- pipeline

    async def get_pipeline_updates(self) -> list[models.PipelineUpdate]:
        """Pending (unanswered) update requests, oldest first."""
        return await self._pipeline().get_pipeline_updates()

    async def put_pipeline_hash(self, update_path: str, hash_value: str) -> bool:
        """Answer every pending request for ``update_path`` with ``hash_value``."""
        return await self._pipeline().put_pipeline_hash(update_path, hash_value)

    async def get_official_sites(self) -> list[str]:
        """Identifiers of the official sites, sorted."""
        return await self._pipeline().get_official_sites()

    async def put_pipeline_site_completion(self, site: str) -> bool:
        """Record that official site ``site`` completed now; False if not official/invalid."""
        return await self._pipeline().put_pipeline_site_completion(site)

    async def enqueue_pipeline_update(self, path: str, site_id: str | None = None) -> int:
        """Queue an update request for ``path`` (optionally for a site); its id."""
        return await self._pipeline().enqueue_pipeline_update(path, site_id)

    async def register_official_site(self, site_id: str) -> bool:
        """Make ``site_id`` official; False if it already was."""
        return await self._pipeline().register_official_site(site_id)

    async def get_pipeline_site_completions(
        self, site: str | None = None
    ) -> list[models.SiteCompletion]:
        """Completion records (of one site, or all), oldest first."""
        return await self._pipeline().get_pipeline_site_completions(site)

    async def pipeline_health_check(self) -> dict[str, bool]:
        """``{'pipeline_db': True}`` if the database answers, else False (never raises)."""
        return await self._pipeline().pipeline_health_check()
    # --- end of generated code ---


@contextlib.contextmanager
def joining(client: DBInstance, tier: Tier, tx: Repository[Any]) -> Iterator[None]:
    """For the block, calls on ``client`` for ``tier`` made in the current context (this
    task and tasks it starts, or this thread) go to ``tx``, a repository bound to an open
    transaction, and the context holds that transaction's connection (other tiers' calls
    that would wait for it fail at once, see :func:`async_db_client.executor.holding`).
    :meth:`DBInstance.transaction` uses it, and so does the sync facade from the calling
    thread (each of its calls carries the thread's context into the loop)."""
    store = unwrap(tx.store)  # under the cache's view of the transaction
    runner = store.transaction_runner if isinstance(store, SQLStore) else None
    token = _ACTIVE_TX.set({**_ACTIVE_TX.get(), (id(client), tier): tx})
    try:
        with holding(runner):
            yield
    finally:
        _ACTIVE_TX.reset(token)


class DBClientFactory:
    """Builds a :class:`DBInstance` from the predecessor's configuration dict.

    The configuration is validated here (``ConfigurationError``, a ``ValueError``, names
    any bad key). ``clock`` replaces the system clock in every tier, for tests. Each
    :meth:`create_client` call returns an independent client with its own pools.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | ClientConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = parse_config(config)
        self.clock = clock

    def __repr__(self) -> str:
        return f"DBClientFactory({self.config.database!r})"

    def create_client(self, *, shared: Shared | None = None) -> DBInstance:
        """A new client; no connection is opened until the first call needs one.

        Clients made with the same ``shared`` keep their in-memory (``local``) tiers in
        the same stores: the sync facade makes one client per calling thread this way.
        """
        pools = PoolManager()
        database = self.config.database
        repos = {
            tier: build_tier(tier, database.tier(tier), pools, self.clock, shared=shared)
            for tier in ("remote", "core", "pipeline")
        }
        remote, core, pipeline = repos["remote"], repos["core"], repos["pipeline"]
        assert remote is None or isinstance(remote, RemoteRepository)
        assert core is None or isinstance(core, CoreRepository)
        assert pipeline is None or isinstance(pipeline, PipelineRepository)
        client = DBInstance(remote, core, pipeline, pools=pools)
        caller = sys._getframe(1)  # cheap, unlike inspect.stack()
        client.created_at = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        return client
