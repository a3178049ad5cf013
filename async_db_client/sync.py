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
  transaction (the calling thread's context carries it into each call).

Every method but the lifecycle and ``transaction()`` is generated from the async client
(``tools/gen_facades.py``), so both keep the same signatures.
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
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from . import client as _async
from .client import DBInstance as AsyncDBInstance
from .clock import Clock
from .config import ClientConfig
from .errors import PoolClosedError, SyncUsageError
from .models import (
    BulkResult,
    DashboardMetrics,
    HashRecord,
    LogEntry,
    PipelineUpdate,
    SiteCompletion,
    SiteStatus,
)
from .outbox import DeadEntry, OutboxStats
from .pool import PoolStats
from .tiers import SingleValue

__all__ = ["DBClientFactory", "DBInstance"]

T = TypeVar("T")
P = ParamSpec("P")

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

    def _call(
        self,
        method: Callable[Concatenate[AsyncDBInstance, P], Awaitable[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``method`` of the async client in the portal's loop; its result."""
        portal, client = self._ensure()
        future = portal.portal.start_task_soon(functools.partial(method, client, *args, **kwargs))
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C (or any abort of the wait) cancels the task
            raise

    def _iterate(
        self,
        method: Callable[Concatenate[AsyncDBInstance, P], AsyncIterator[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Iterator[T]:
        """``method``'s async iterator as a generator: one portal round trip per batch
        (``batch_size`` items), not per item; memory stays one batch."""
        batch = kwargs.get("batch_size", 1000)
        # Made here, at the call: a missing tier raises now, not at the first item.
        source = method(self._ensure()[1], *args, **kwargs)
        return self._drain(source, max(1, batch) if isinstance(batch, int) else 1)

    def _drain(self, source: AsyncIterator[T], chunk: int) -> Iterator[T]:
        try:
            while True:
                items, done = self._call(_take_from, source, chunk)
                yield from items
                if done:
                    return
        finally:
            # Abandoned early (break, or the generator closed): end the async iterator
            # in its loop. Nothing to do if the client is closed meanwhile.
            with contextlib.suppress(Exception):
                self._call(_close_source, source)

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

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, tier: _async.Tier = "remote") -> Iterator[DBInstance]:
        """Group this thread's calls on ``tier`` into one transaction (see module doc)."""
        portal, client = self._ensure()
        if getattr(self._local, tier, False):
            raise PoolClosedError(f"a {tier} transaction is already open in this thread")
        with portal.portal.wrap_async_context_manager(client.transaction(tier)) as tx:
            setattr(self._local, tier, True)
            try:
                # Each call copies this thread's context into the loop: there it joins tx.
                with _async.joining(client, tier, tx):
                    yield self
            finally:
                setattr(self._local, tier, False)

    # --- generated by tools/gen_facades.py from async_db_client.client; do not edit ---
    def migrate(self) -> dict[str, int]:
        """Apply pending schema migrations on every configured tier; their versions."""
        return self._call(AsyncDBInstance.migrate)

    def outbox_pending(self) -> int:
        """Writes waiting in the remote tier's outbox (0 without an outbox)."""
        return self._call(AsyncDBInstance.outbox_pending)

    def flush_outbox(self, timeout: float | None = None) -> int:
        """Wait for the outbox to be replayed (at most ``timeout``); the writes still waiting (0
        without an outbox)."""
        return self._call(AsyncDBInstance.flush_outbox, timeout)

    def outbox_stats(self) -> OutboxStats | None:
        """The outbox's counts and counters (None without an outbox)."""
        return self._call(AsyncDBInstance.outbox_stats)

    def outbox_dead_entries(self, limit: int = 100) -> list[DeadEntry]:
        """Writes the outbox gave up on (the database refused them), oldest first."""
        return self._call(AsyncDBInstance.outbox_dead_entries, limit)

    def outbox_retry_dead(self, seqs: list[int] | None = None) -> int:
        """Queue dead outbox entries again (all, or those ``seqs``); how many."""
        return self._call(AsyncDBInstance.outbox_retry_dead, seqs)

    def outbox_drop_dead(self, seqs: list[int] | None = None) -> int:
        """Delete dead outbox entries (all, or those ``seqs``); how many."""
        return self._call(AsyncDBInstance.outbox_drop_dead, seqs)

    def pool_stats(self) -> dict[str, PoolStats]:
        """Statistics of every pool this client opened, by redacted target."""
        return self.async_client.pool_stats()

    def health_check(self) -> dict[str, bool]:
        """Health of every configured tier: ``local_db``, ``core_db``, ``pipeline_db``."""
        return self._call(AsyncDBInstance.health_check)

    def get_hash_record(self, path: str) -> HashRecord | None:
        """The record stored for ``path``, or None."""
        return self._call(AsyncDBInstance.get_hash_record, path)

    def insert_or_update_hash(self, record: Mapping[str, Any] | HashRecord) -> bool:
        """Store ``record`` with prev-hash rotation; False (logged) if it is invalid."""
        return self._call(AsyncDBInstance.insert_or_update_hash, record)

    def insert_or_update_hashes(
        self, records: Iterable[Mapping[str, Any] | HashRecord]
    ) -> BulkResult:
        """Validate every record, store the valid ones, report the rejected ones."""
        return self._call(AsyncDBInstance.insert_or_update_hashes, _in_caller(records))

    def get_single_field(self, path: str, field: str) -> SingleValue:
        """One field of the record for ``path`` (None if no record)."""
        return self._call(AsyncDBInstance.get_single_field, path, field)

    def set_target_hash(self, path: str, target_hash: str | None) -> bool:
        """Set (or with None, clear) the target hash of an existing record."""
        return self._call(AsyncDBInstance.set_target_hash, path, target_hash)

    def get_priority_updates(self) -> list[str]:
        """Paths whose ``target_hash`` is set and differs from ``current_hash``, sorted."""
        return self._call(AsyncDBInstance.get_priority_updates)

    def put_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a log entry and return its new id; None (logged) if it is invalid."""
        return self._call(AsyncDBInstance.put_log, args_dict, idempotency_key=idempotency_key)

    def get_logs(
        self, limit: int | None = None, offset: int = 0, order_by: str = "timestamp",
        order_direction: str = "DESC", session_id_filter: str | None = None,
        older_than_days: int | None = None
    ) -> list[LogEntry]:
        """Log entries, filtered and paged."""
        return self._call(
            AsyncDBInstance.get_logs, limit, offset, order_by, order_direction, session_id_filter,
            older_than_days
        )

    def delete_log_entries(self, log_ids: Iterable[int]) -> tuple[int, list[int]]:
        """Delete the given log entries: ``(deleted_count, ids_not_found)``."""
        return self._call(AsyncDBInstance.delete_log_entries, _in_caller(log_ids))

    def find_orphaned_entries(self) -> list[str]:
        """Paths whose parent has a record that does not list them, sorted."""
        return self._call(AsyncDBInstance.find_orphaned_entries)

    def find_untracked_children(self) -> list[str]:
        """``parent/name`` for each name in a record's ``dirs`` with no record, sorted."""
        return self._call(AsyncDBInstance.find_untracked_children)

    def iter_hash_records(self, *, batch_size: int = 1000) -> Iterator[HashRecord]:
        """Every stored record, in key order, fetched ``batch_size`` at a time."""
        return self._iterate(AsyncDBInstance.iter_hash_records, batch_size=batch_size)

    def iter_logs(self, *, batch_size: int = 1000) -> Iterator[LogEntry]:
        """Every log entry, oldest id first, fetched ``batch_size`` at a time."""
        return self._iterate(AsyncDBInstance.iter_logs, batch_size=batch_size)

    def restore_hash_records(self, records: Iterable[Mapping[str, Any] | HashRecord]) -> BulkResult:
        """Store complete records exactly as given (for restoring a backup)."""
        return self._call(AsyncDBInstance.restore_hash_records, _in_caller(records))

    def restore_logs(self, entries: Iterable[Mapping[str, Any] | LogEntry]) -> BulkResult:
        """Store log entries as given (timestamp required; new ids are assigned)."""
        return self._call(AsyncDBInstance.restore_logs, _in_caller(entries))

    def get_dashboard_content(self) -> DashboardMetrics:
        """The eleven dashboard counters; every site in one sync and one live bucket."""
        return self._call(AsyncDBInstance.get_dashboard_content)

    def get_recent_logs(self) -> list[LogEntry]:
        """Central log entries of the last 30 days, newest first."""
        return self._call(AsyncDBInstance.get_recent_logs)

    def get_hash_record_count(self) -> int:
        """Total hash records over all sites, as last reported in their heartbeats."""
        return self._call(AsyncDBInstance.get_hash_record_count)

    def get_log_count_last_24h(self, log_level: str) -> int:
        """How many central log entries of ``log_level`` (any case) in the last 24 h."""
        return self._call(AsyncDBInstance.get_log_count_last_24h, log_level)

    def get_sites(self) -> list[SiteStatus]:
        """Every known site's status, sorted by site id."""
        return self._call(AsyncDBInstance.get_sites)

    def put_site_heartbeat(self, site_id: str, *, hash_record_count: int | None = None) -> None:
        """Record that ``site_id`` is alive now (registering it if new)."""
        self._call(AsyncDBInstance.put_site_heartbeat, site_id, hash_record_count=hash_record_count)

    def put_site_root_hash(
        self, site_id: str, root_hash: str, *, computed_at: datetime | None = None
    ) -> None:
        """Record the root hash a site computed (at ``computed_at``, default now)."""
        self._call(AsyncDBInstance.put_site_root_hash, site_id, root_hash, computed_at=computed_at)

    def put_baseline(self, baseline_hash: str, *, created_at: datetime | None = None) -> int:
        """Publish a new baseline hash (the newest becomes the sync reference); its id."""
        return self._call(AsyncDBInstance.put_baseline, baseline_hash, created_at=created_at)

    def put_core_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a central log entry (same rules as the remote ``put_log``)."""
        return self._call(AsyncDBInstance.put_core_log, args_dict, idempotency_key=idempotency_key)

    def get_pipeline_updates(self) -> list[PipelineUpdate]:
        """Pending (unanswered) update requests, oldest first."""
        return self._call(AsyncDBInstance.get_pipeline_updates)

    def put_pipeline_hash(self, update_path: str, hash_value: str) -> bool:
        """Answer every pending request for ``update_path`` with ``hash_value``."""
        return self._call(AsyncDBInstance.put_pipeline_hash, update_path, hash_value)

    def get_official_sites(self) -> list[str]:
        """Identifiers of the official sites, sorted."""
        return self._call(AsyncDBInstance.get_official_sites)

    def put_pipeline_site_completion(self, site: str) -> bool:
        """Record that official site ``site`` completed now; False if not official/invalid."""
        return self._call(AsyncDBInstance.put_pipeline_site_completion, site)

    def enqueue_pipeline_update(self, path: str, site_id: str | None = None) -> int:
        """Queue an update request for ``path`` (optionally for a site); its id."""
        return self._call(AsyncDBInstance.enqueue_pipeline_update, path, site_id)

    def register_official_site(self, site_id: str) -> bool:
        """Make ``site_id`` official; False if it already was."""
        return self._call(AsyncDBInstance.register_official_site, site_id)

    def get_pipeline_site_completions(self, site: str | None = None) -> list[SiteCompletion]:
        """Completion records (of one site, or all), oldest first."""
        return self._call(AsyncDBInstance.get_pipeline_site_completions, site)

    def pipeline_health_check(self) -> dict[str, bool]:
        """``{'pipeline_db': True}`` if the database answers, else False (never raises)."""
        return self._call(AsyncDBInstance.pipeline_health_check)
    # --- end of generated code ---


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


# The helpers _call runs take the client first, as the async client's methods do.
async def _take_from(
    client: AsyncDBInstance, source: AsyncIterator[T], count: int
) -> tuple[list[T], bool]:
    """Up to ``count`` items of ``source``, and whether it is exhausted."""
    items: list[T] = []
    async for item in source:
        items.append(item)
        if len(items) >= count:
            return items, False
    return items, True


async def _close_source(client: AsyncDBInstance, source: AsyncIterator[Any]) -> None:
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
