"""Blocking facade for scripts: the async client run on a background event loop.

Change only the import line of code written for the synchronous predecessor::

    from async_db_client.sync import DBClientFactory

    db = DBClientFactory(config).create_client()
    db.insert_or_update_hash({'path': '/data', 'current_hash': 'abc123'})
    print(db.get_hash_record('/data')['current_hash'])
    db.close()            # or: with DBClientFactory(config).create_client() as db: ...

How it works, and the rules that follow from it:

* Each client owns one long-lived anyio :class:`~anyio.from_thread.BlockingPortal`, an
  event loop in a daemon thread, started on the first call. The async client and its
  pools live in that loop; every method call is a task there. Any number of threads may
  call one client at once.
* Called from a thread that is running an event loop, every method raises
  :class:`~async_db_client.errors.SyncUsageError` at once (blocking there would
  deadlock or stall the loop): await the async API instead.
* ``close()`` refuses new calls, closes the pools (within ``close_timeout``), then stops
  the portal. Clients not closed are closed at interpreter exit.
* After ``fork()``, the child drops the inherited pools without touching the parent's
  sockets and starts its own portal on its first call.
* Ctrl-C during a call cancels the call's task in the portal and re-raises.
* ``with db.transaction():`` makes calls *from the same thread* on that tier join one
  transaction (the calling thread, not a context variable, carries it).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from . import client as _async
from .clock import Clock
from .config import ClientConfig
from .errors import PoolClosedError, SyncUsageError
from .interfaces import CoreRepository, PipelineRepository, RemoteRepository
from .models import (
    BulkResult,
    DashboardMetrics,
    HashRecord,
    LogEntry,
    PipelineUpdate,
    SiteCompletion,
    SiteStatus,
)
from .pool import PoolStats

__all__ = ["DBClientFactory", "DBInstance"]

T = TypeVar("T")

_OPEN: weakref.WeakSet[DBInstance] = weakref.WeakSet()


def _refuse_inside_event_loop() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise SyncUsageError(
        "async_db_client.sync was called from a thread that runs an event loop, where "
        "blocking would stall it; use the async API (await async_db_client.DBClientFactory"
        "(...).create_client() methods) there instead"
    )


class _Portal:
    """An event loop in a daemon thread, reachable through an anyio BlockingPortal.

    A daemon thread (unlike ``anyio.from_thread.start_blocking_portal``'s executor
    thread) never holds up interpreter exit, so the ``atexit`` close can still use it.
    """

    def __init__(self) -> None:
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()

        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                anyio.run(serve)
            except BaseException as exc:  # reported to the starter, or lost with the thread
                if not ready.done():
                    ready.set_exception(exc)

        self.thread = threading.Thread(target=run, name="async_db_client-portal", daemon=True)
        self.thread.start()
        self.portal = ready.result()

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(RuntimeError):  # already stopped
            self.portal.call(self.portal.stop, True)
        self.thread.join(timeout)


class DBInstance:
    """The blocking client. Same methods as :class:`async_db_client.DBInstance`."""

    def __init__(self, factory: _async.DBClientFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._portal: _Portal | None = None
        self._client: _async.DBInstance | None = None
        self._pid = os.getpid()
        self._closed = False
        self._local = threading.local()
        _OPEN.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._portal else "idle")
        return f"<sync DBInstance {state} {self._factory.config.database!r}>"

    # ------------------------------------------------------------------ machinery

    @property
    def async_client(self) -> _async.DBInstance:
        """The async client underneath (it lives in the portal's event loop)."""
        return self._ensure()[1]

    def _ensure(self) -> tuple[_Portal, _async.DBInstance]:
        _refuse_inside_event_loop()
        with self._lock:
            if self._closed:
                raise PoolClosedError("the client is closed")
            if self._pid != os.getpid():
                self._after_fork()
            if self._client is None:
                self._client = self._factory.create_client()
            if self._portal is None:
                self._portal = _Portal()
            return self._portal, self._client

    def _after_fork(self) -> None:
        # The portal thread did not survive the fork and the sockets are the parent's:
        # forget both (closing them here would close the parent's connections).
        self._pid = os.getpid()
        self._portal = None
        if self._client is not None:
            self._client.pools.forget()
        self._local = threading.local()

    def _run(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        portal = self._ensure()[0].portal
        future = portal.start_task_soon(functools.partial(func, *args, **kwargs))
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C (or any abort of the wait) cancels the task
            raise

    # The repository a call goes to: this thread's open transaction on the tier, if any.
    def _remote(self) -> RemoteRepository:
        tx = getattr(self._local, "remote", None)
        return tx if isinstance(tx, RemoteRepository) else self._ensure()[1]._remote()

    def _core(self) -> CoreRepository:
        tx = getattr(self._local, "core", None)
        return tx if isinstance(tx, CoreRepository) else self._ensure()[1]._core()

    def _pipeline(self) -> PipelineRepository:
        tx = getattr(self._local, "pipeline", None)
        return tx if isinstance(tx, PipelineRepository) else self._ensure()[1]._pipeline()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Refuse new calls, close the pools, stop the portal. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            portal, client = self._portal, self._client
            self._portal = None
            if portal is None or client is None or self._pid != os.getpid():
                return
        timeout = 10.0
        try:
            portal.portal.call(_close_within, client, timeout)
        finally:
            portal.stop(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> DBInstance:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, tier: _async.Tier = "remote") -> Iterator[DBInstance]:
        """Group this thread's calls on ``tier`` into one transaction (see module doc)."""
        portal, client = self._ensure()
        if getattr(self._local, tier, None) is not None:
            raise PoolClosedError(f"a {tier} transaction is already open in this thread")
        with portal.portal.wrap_async_context_manager(client.transaction(tier)) as tx:
            setattr(self._local, tier, tx)
            try:
                yield self
            finally:
                setattr(self._local, tier, None)

    def migrate(self) -> dict[str, int]:
        """See :meth:`async_db_client.DBInstance.migrate`."""
        return self._run(self._ensure()[1].migrate)

    def outbox_pending(self) -> int:
        """See :meth:`async_db_client.DBInstance.outbox_pending`."""
        return self._run(self._ensure()[1].outbox_pending)

    def flush_outbox(self, timeout: float | None = None) -> int:
        """See :meth:`async_db_client.DBInstance.flush_outbox`."""
        return self._run(self._ensure()[1].flush_outbox, timeout)

    def pool_stats(self) -> dict[str, PoolStats]:
        """See :meth:`async_db_client.DBInstance.pool_stats`."""
        return self._ensure()[1].pool_stats()

    def health_check(self) -> dict[str, bool]:
        """See :meth:`async_db_client.DBInstance.health_check`."""
        return self._run(self._ensure()[1].health_check)

    # --------------------------------------------------------------------- remote

    def get_hash_record(self, path: str) -> HashRecord | None:
        """See :meth:`async_db_client.RemoteRepository.get_hash_record`."""
        return self._run(self._remote().get_hash_record, path)

    def insert_or_update_hash(self, record: Mapping[str, Any] | HashRecord) -> bool:
        """See :meth:`async_db_client.RemoteRepository.insert_or_update_hash`."""
        return self._run(self._remote().insert_or_update_hash, record)

    def insert_or_update_hashes(
        self, records: Iterable[Mapping[str, Any] | HashRecord]
    ) -> BulkResult:
        """See :meth:`async_db_client.RemoteRepository.insert_or_update_hashes`."""
        return self._run(self._remote().insert_or_update_hashes, records)

    def get_single_field(self, path: str, field: str) -> str | int | None:
        """See :meth:`async_db_client.RemoteRepository.get_single_field`."""
        return self._run(self._remote().get_single_field, path, field)

    def set_target_hash(self, path: str, target_hash: str | None) -> bool:
        """See :meth:`async_db_client.RemoteRepository.set_target_hash`."""
        return self._run(self._remote().set_target_hash, path, target_hash)

    def get_priority_updates(self) -> list[str]:
        """See :meth:`async_db_client.RemoteRepository.get_priority_updates`."""
        return self._run(self._remote().get_priority_updates)

    def put_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """See :meth:`async_db_client.RemoteRepository.put_log`."""
        return self._run(self._remote().put_log, args_dict, idempotency_key=idempotency_key)

    def get_logs(
        self,
        limit: int | None = None,
        offset: int = 0,
        order_by: str = "timestamp",
        order_direction: str = "DESC",
        session_id_filter: str | None = None,
        older_than_days: int | None = None,
    ) -> list[LogEntry]:
        """See :meth:`async_db_client.RemoteRepository.get_logs`."""
        return self._run(
            self._remote().get_logs,
            limit,
            offset,
            order_by,
            order_direction,
            session_id_filter,
            older_than_days,
        )

    def delete_log_entries(self, log_ids: Iterable[int]) -> tuple[int, list[int]]:
        """See :meth:`async_db_client.RemoteRepository.delete_log_entries`."""
        return self._run(self._remote().delete_log_entries, log_ids)

    def find_orphaned_entries(self) -> list[str]:
        """See :meth:`async_db_client.RemoteRepository.find_orphaned_entries`."""
        return self._run(self._remote().find_orphaned_entries)

    def find_untracked_children(self) -> list[str]:
        """See :meth:`async_db_client.RemoteRepository.find_untracked_children`."""
        return self._run(self._remote().find_untracked_children)

    def iter_hash_records(self, *, batch_size: int = 1000) -> Iterator[HashRecord]:
        """See :meth:`async_db_client.RemoteRepository.iter_hash_records` (a generator)."""
        return self._iterate(self._remote().iter_hash_records(batch_size=batch_size), batch_size)

    def iter_logs(self, *, batch_size: int = 1000) -> Iterator[LogEntry]:
        """See :meth:`async_db_client.RemoteRepository.iter_logs` (a generator)."""
        return self._iterate(self._remote().iter_logs(batch_size=batch_size), batch_size)

    def restore_hash_records(self, records: Iterable[Mapping[str, Any] | HashRecord]) -> BulkResult:
        """See :meth:`async_db_client.RemoteRepository.restore_hash_records`."""
        return self._run(self._remote().restore_hash_records, _in_caller(records))

    def restore_logs(self, entries: Iterable[Mapping[str, Any] | LogEntry]) -> BulkResult:
        """See :meth:`async_db_client.RemoteRepository.restore_logs`."""
        return self._run(self._remote().restore_logs, _in_caller(entries))

    def _iterate(self, source: AsyncIterator[T], batch_size: int) -> Iterator[T]:
        # One portal round trip per batch, not per item; memory stays one batch.
        chunk = max(1, batch_size) if isinstance(batch_size, int) else 1
        try:
            while True:
                items, done = self._run(_take, source, chunk)
                yield from items
                if done:
                    return
        finally:
            # Abandoned early (break, or the generator closed): end the async iterator
            # in its loop. Nothing to do if the client is closed meanwhile.
            with contextlib.suppress(Exception):
                self._run(_aclose, source)

    # ----------------------------------------------------------------------- core

    def get_dashboard_content(self) -> DashboardMetrics:
        """See :meth:`async_db_client.CoreRepository.get_dashboard_content`."""
        return self._run(self._core().get_dashboard_content)

    def get_recent_logs(self) -> list[LogEntry]:
        """See :meth:`async_db_client.CoreRepository.get_recent_logs`."""
        return self._run(self._core().get_recent_logs)

    def get_hash_record_count(self) -> int:
        """See :meth:`async_db_client.CoreRepository.get_hash_record_count`."""
        return self._run(self._core().get_hash_record_count)

    def get_log_count_last_24h(self, log_level: str) -> int:
        """See :meth:`async_db_client.CoreRepository.get_log_count_last_24h`."""
        return self._run(self._core().get_log_count_last_24h, log_level)

    def get_sites(self) -> list[SiteStatus]:
        """See :meth:`async_db_client.CoreRepository.get_sites`."""
        return self._run(self._core().get_sites)

    def put_site_heartbeat(self, site_id: str, *, hash_record_count: int | None = None) -> None:
        """See :meth:`async_db_client.CoreRepository.put_site_heartbeat`."""
        self._run(self._core().put_site_heartbeat, site_id, hash_record_count=hash_record_count)

    def put_site_root_hash(self, site_id: str, root_hash: str, *, computed_at: Any = None) -> None:
        """See :meth:`async_db_client.CoreRepository.put_site_root_hash`."""
        self._run(self._core().put_site_root_hash, site_id, root_hash, computed_at=computed_at)

    def put_baseline(self, baseline_hash: str, *, created_at: Any = None) -> int:
        """See :meth:`async_db_client.CoreRepository.put_baseline`."""
        return self._run(self._core().put_baseline, baseline_hash, created_at=created_at)

    def put_core_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """See :meth:`async_db_client.CoreRepository.put_core_log`."""
        return self._run(self._core().put_core_log, args_dict, idempotency_key=idempotency_key)

    # ------------------------------------------------------------------- pipeline

    def get_pipeline_updates(self) -> list[PipelineUpdate]:
        """See :meth:`async_db_client.PipelineRepository.get_pipeline_updates`."""
        return self._run(self._pipeline().get_pipeline_updates)

    def put_pipeline_hash(self, update_path: str, hash_value: str) -> bool:
        """See :meth:`async_db_client.PipelineRepository.put_pipeline_hash`."""
        return self._run(self._pipeline().put_pipeline_hash, update_path, hash_value)

    def get_official_sites(self) -> list[str]:
        """See :meth:`async_db_client.PipelineRepository.get_official_sites`."""
        return self._run(self._pipeline().get_official_sites)

    def put_pipeline_site_completion(self, site: str) -> bool:
        """See :meth:`async_db_client.PipelineRepository.put_pipeline_site_completion`."""
        return self._run(self._pipeline().put_pipeline_site_completion, site)

    def enqueue_pipeline_update(self, path: str, site_id: str | None = None) -> int:
        """See :meth:`async_db_client.PipelineRepository.enqueue_pipeline_update`."""
        return self._run(self._pipeline().enqueue_pipeline_update, path, site_id)

    def register_official_site(self, site_id: str) -> bool:
        """See :meth:`async_db_client.PipelineRepository.register_official_site`."""
        return self._run(self._pipeline().register_official_site, site_id)

    def get_pipeline_site_completions(self, site: str | None = None) -> list[SiteCompletion]:
        """See :meth:`async_db_client.PipelineRepository.get_pipeline_site_completions`."""
        return self._run(self._pipeline().get_pipeline_site_completions, site)

    def pipeline_health_check(self) -> dict[str, bool]:
        """See :meth:`async_db_client.PipelineRepository.pipeline_health_check`."""
        return self._run(self._pipeline().pipeline_health_check)


class DBClientFactory:
    """Blocking counterpart of :class:`async_db_client.DBClientFactory` (same arguments)."""

    def __init__(
        self,
        config: Mapping[str, Any] | ClientConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._factory = _async.DBClientFactory(config, clock=clock)

    @property
    def config(self) -> ClientConfig:
        return self._factory.config

    def __repr__(self) -> str:
        return f"sync.DBClientFactory({self._factory.config.database!r})"

    def create_client(self) -> DBInstance:
        """A new blocking client; its event loop starts on the first call."""
        return DBInstance(self._factory)


def _in_caller(values: Iterable[T]) -> Iterable[T]:
    """A lazy iterable read here, in the calling thread: it may block, or call this
    facade (``restore_hash_records(other.iter_hash_records())``), neither of which it
    may do inside the portal's loop. The restore holds its input in memory anyway."""
    return list(values) if isinstance(values, Iterator) else values


async def _take(source: AsyncIterator[T], count: int) -> tuple[list[T], bool]:
    """Up to ``count`` items of ``source``, and whether it is exhausted."""
    items: list[T] = []
    async for item in source:
        items.append(item)
        if len(items) >= count:
            return items, False
    return items, True


async def _aclose(source: AsyncIterator[Any]) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()


async def _close_within(client: _async.DBInstance, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        await client.aclose()


def _close_all_at_exit() -> None:
    for instance in list(_OPEN):
        with contextlib.suppress(Exception):
            instance.close()


def _reinit_after_fork() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    for instance in list(_OPEN):
        instance._lock = threading.Lock()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_reinit_after_fork)
