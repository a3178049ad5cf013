"""The async client: :class:`DBInstance` over the three tiers, built by :class:`DBClientFactory`.

::

    async with DBClientFactory(config).create_client() as db:
        await db.insert_or_update_hash({'path': '/data', 'current_hash': 'abc'})
        record = await db.get_hash_record('/data')

Every method delegates to the tier that owns it. A method of a tier that is not configured
raises :class:`NotImplementedError` naming the missing ``*_type`` key, as the
predecessor did.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from .clock import Clock
from .config import ClientConfig, parse_config
from .errors import PoolClosedError
from .interfaces import CoreRepository, PipelineRepository, RemoteRepository, Repository
from .models import (
    BulkResult,
    DashboardMetrics,
    HashRecord,
    LogEntry,
    PipelineUpdate,
    SiteCompletion,
    SiteStatus,
)
from .pool_manager import PoolManager, PoolStats

__all__ = ["DBClientFactory", "DBInstance", "Tier"]

Tier = Literal["remote", "core", "pipeline"]

# The transactions open in the current task, by (client id, tier): calls made on the
# client inside ``async with db.transaction():`` join that transaction.
_ACTIVE_TX: contextvars.ContextVar[Mapping[tuple[int, str], Repository]] = contextvars.ContextVar(
    "async_db_client_active_tx", default=MappingProxyType({})
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

    def __repr__(self) -> str:
        tiers = [
            f"{name}={type(repo).__name__}"
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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the tiers, then every pool, in that order. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for repo in (self.pipeline_db, self.core_db, self.remote_db):
            if repo is not None:
                await repo.aclose()
        await self.pools.aclose()

    def _tier(self, tier: str) -> Repository:
        if self._closed:
            raise PoolClosedError("the client is closed")
        active = _ACTIVE_TX.get()
        if active:
            tx = active.get((id(self), tier))
            if tx is not None:
                return tx
        repo: Repository | None
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
        key = (id(self), tier)
        if key in _ACTIVE_TX.get():
            raise PoolClosedError(f"a {tier} transaction is already open in this task")
        async with repo.transaction() as tx:
            token = _ACTIVE_TX.set({**_ACTIVE_TX.get(), key: tx})
            try:
                yield tx
            finally:
                _ACTIVE_TX.reset(token)

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
        outbox = self._remote().outbox
        return 0 if outbox is None else await outbox.pending()

    async def flush_outbox(self, timeout: float | None = None) -> int:
        """Wait for the outbox to be replayed (at most ``timeout``); the writes still
        waiting (0 without an outbox)."""
        outbox = self._remote().outbox
        return 0 if outbox is None else await outbox.flush(timeout)

    def pool_stats(self) -> dict[str, PoolStats]:
        """Statistics of every pool this client opened, by redacted target."""
        return self.pools.stats()

    async def health_check(self) -> dict[str, bool]:
        """Health of every configured tier: ``local_db``, ``core_db``, ``pipeline_db``."""
        repos = [r for r in (self.remote_db, self.core_db, self.pipeline_db) if r is not None]
        results = await asyncio.gather(*(repo.health_check() for repo in repos))
        merged: dict[str, bool] = {}
        for result in results:
            merged.update(result)
        return merged

    # --------------------------------------------------------------------- remote

    async def get_hash_record(self, path: str) -> HashRecord | None:
        """See :meth:`RemoteRepository.get_hash_record`."""
        return await self._remote().get_hash_record(path)

    async def insert_or_update_hash(self, record: Mapping[str, Any] | HashRecord) -> bool:
        """See :meth:`RemoteRepository.insert_or_update_hash`."""
        return await self._remote().insert_or_update_hash(record)

    async def insert_or_update_hashes(
        self, records: Iterable[Mapping[str, Any] | HashRecord]
    ) -> BulkResult:
        """See :meth:`RemoteRepository.insert_or_update_hashes`."""
        return await self._remote().insert_or_update_hashes(records)

    async def get_single_field(self, path: str, field: str) -> str | int | None:
        """See :meth:`RemoteRepository.get_single_field`."""
        return await self._remote().get_single_field(path, field)

    async def set_target_hash(self, path: str, target_hash: str | None) -> bool:
        """See :meth:`RemoteRepository.set_target_hash`."""
        return await self._remote().set_target_hash(path, target_hash)

    async def get_priority_updates(self) -> list[str]:
        """See :meth:`RemoteRepository.get_priority_updates`."""
        return await self._remote().get_priority_updates()

    async def put_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """See :meth:`RemoteRepository.put_log`."""
        return await self._remote().put_log(args_dict, idempotency_key=idempotency_key)

    async def get_logs(
        self,
        limit: int | None = None,
        offset: int = 0,
        order_by: str = "timestamp",
        order_direction: str = "DESC",
        session_id_filter: str | None = None,
        older_than_days: int | None = None,
    ) -> list[LogEntry]:
        """See :meth:`RemoteRepository.get_logs`."""
        return await self._remote().get_logs(
            limit, offset, order_by, order_direction, session_id_filter, older_than_days
        )

    async def delete_log_entries(self, log_ids: Iterable[int]) -> tuple[int, list[int]]:
        """See :meth:`RemoteRepository.delete_log_entries`."""
        return await self._remote().delete_log_entries(log_ids)

    async def find_orphaned_entries(self) -> list[str]:
        """See :meth:`RemoteRepository.find_orphaned_entries`."""
        return await self._remote().find_orphaned_entries()

    async def find_untracked_children(self) -> list[str]:
        """See :meth:`RemoteRepository.find_untracked_children`."""
        return await self._remote().find_untracked_children()

    def iter_hash_records(self, *, batch_size: int = 1000) -> AsyncIterator[HashRecord]:
        """See :meth:`RemoteRepository.iter_hash_records` (``async for record in ...``)."""
        return self._remote().iter_hash_records(batch_size=batch_size)

    def iter_logs(self, *, batch_size: int = 1000) -> AsyncIterator[LogEntry]:
        """See :meth:`RemoteRepository.iter_logs` (``async for entry in ...``)."""
        return self._remote().iter_logs(batch_size=batch_size)

    async def restore_hash_records(
        self, records: Iterable[Mapping[str, Any] | HashRecord]
    ) -> BulkResult:
        """See :meth:`RemoteRepository.restore_hash_records`."""
        return await self._remote().restore_hash_records(records)

    async def restore_logs(self, entries: Iterable[Mapping[str, Any] | LogEntry]) -> BulkResult:
        """See :meth:`RemoteRepository.restore_logs`."""
        return await self._remote().restore_logs(entries)

    # ----------------------------------------------------------------------- core

    async def get_dashboard_content(self) -> DashboardMetrics:
        """See :meth:`CoreRepository.get_dashboard_content`."""
        return await self._core().get_dashboard_content()

    async def get_recent_logs(self) -> list[LogEntry]:
        """See :meth:`CoreRepository.get_recent_logs`."""
        return await self._core().get_recent_logs()

    async def get_hash_record_count(self) -> int:
        """See :meth:`CoreRepository.get_hash_record_count`."""
        return await self._core().get_hash_record_count()

    async def get_log_count_last_24h(self, log_level: str) -> int:
        """See :meth:`CoreRepository.get_log_count_last_24h`."""
        return await self._core().get_log_count_last_24h(log_level)

    async def get_sites(self) -> list[SiteStatus]:
        """See :meth:`CoreRepository.get_sites`."""
        return await self._core().get_sites()

    async def put_site_heartbeat(
        self, site_id: str, *, hash_record_count: int | None = None
    ) -> None:
        """See :meth:`CoreRepository.put_site_heartbeat`."""
        await self._core().put_site_heartbeat(site_id, hash_record_count=hash_record_count)

    async def put_site_root_hash(
        self, site_id: str, root_hash: str, *, computed_at: Any = None
    ) -> None:
        """See :meth:`CoreRepository.put_site_root_hash`."""
        await self._core().put_site_root_hash(site_id, root_hash, computed_at=computed_at)

    async def put_baseline(self, baseline_hash: str, *, created_at: Any = None) -> int:
        """See :meth:`CoreRepository.put_baseline`."""
        return await self._core().put_baseline(baseline_hash, created_at=created_at)

    async def put_core_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """See :meth:`CoreRepository.put_core_log`."""
        return await self._core().put_core_log(args_dict, idempotency_key=idempotency_key)

    # ------------------------------------------------------------------- pipeline

    async def get_pipeline_updates(self) -> list[PipelineUpdate]:
        """See :meth:`PipelineRepository.get_pipeline_updates`."""
        return await self._pipeline().get_pipeline_updates()

    async def put_pipeline_hash(self, update_path: str, hash_value: str) -> bool:
        """See :meth:`PipelineRepository.put_pipeline_hash`."""
        return await self._pipeline().put_pipeline_hash(update_path, hash_value)

    async def get_official_sites(self) -> list[str]:
        """See :meth:`PipelineRepository.get_official_sites`."""
        return await self._pipeline().get_official_sites()

    async def put_pipeline_site_completion(self, site: str) -> bool:
        """See :meth:`PipelineRepository.put_pipeline_site_completion`."""
        return await self._pipeline().put_pipeline_site_completion(site)

    async def enqueue_pipeline_update(self, path: str, site_id: str | None = None) -> int:
        """See :meth:`PipelineRepository.enqueue_pipeline_update`."""
        return await self._pipeline().enqueue_pipeline_update(path, site_id)

    async def register_official_site(self, site_id: str) -> bool:
        """See :meth:`PipelineRepository.register_official_site`."""
        return await self._pipeline().register_official_site(site_id)

    async def get_pipeline_site_completions(self, site: str | None = None) -> list[SiteCompletion]:
        """See :meth:`PipelineRepository.get_pipeline_site_completions`."""
        return await self._pipeline().get_pipeline_site_completions(site)

    async def pipeline_health_check(self) -> dict[str, bool]:
        """See :meth:`PipelineRepository.pipeline_health_check`."""
        return await self._pipeline().pipeline_health_check()


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

    def create_client(self) -> DBInstance:
        """A new client; no connection is opened until the first call needs one."""
        from .backends.registry import build_tier

        pools = PoolManager()
        database = self.config.database
        remote = build_tier("remote", database.tier("remote"), pools, self.clock)
        core = build_tier("core", database.tier("core"), pools, self.clock)
        pipeline = build_tier("pipeline", database.tier("pipeline"), pools, self.clock)
        assert remote is None or isinstance(remote, RemoteRepository)
        assert core is None or isinstance(core, CoreRepository)
        assert pipeline is None or isinstance(pipeline, PipelineRepository)
        return DBInstance(remote, core, pipeline, pools=pools)
