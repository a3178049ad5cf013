"""Blocking facade for scripts: the async client, run by the calling thread itself.

Change only the import line of code written for the synchronous predecessor::

    from async_db_client.sync import DBClientFactory

    db = DBClientFactory(config).create_client()
    db.insert_or_update_hash({'path': '/data', 'current_hash': 'abc'})
    print(db.get_hash_record('/data')['current_hash'])
    db.close()            # or: with DBClientFactory(config).create_client() as db: ...

How it works, and the rules that follow from it:

* **Each calling thread runs its own event loop**, in the thread itself, with its own
  async client built from the same configuration: a call is one run of that loop (some
  80k instructions over an awaited call: a third of a hand-off to a loop thread, see
  benchmarks/bench_sync.py), never a hand-off to another thread. Its pools are the thread's
  own, so N threads open up to N times ``pool.max_size`` connections per database. The
  in-memory tiers (``local``) are shared by every thread's client: threads see each
  other's writes. A client with a SQLite ``:memory:`` tier, whose database lives in one
  connection, runs instead on one loop in a background thread shared by all threads
  (each call a hand-off, ~100-200 µs).
* Any number of threads may call one client at once. Called from a thread that is
  running an event loop, every method raises
  :class:`~async_db_client.errors.SyncUsageError` at once (blocking there would stall
  the loop): await the async API instead.
* **Ctrl-C** (in the main thread) cancels the call in progress, which cleans up (a
  connection in an unknown state is closed, an open transaction rolled back), then
  raises ``KeyboardInterrupt``. Entering ``with db.transaction():`` when Ctrl-C comes
  leaves no transaction open; while it commits, the commit is finished first, then
  ``KeyboardInterrupt`` is raised (the transaction is committed).
* ``with db.transaction():`` makes calls *from the same thread* on that tier join one
  transaction (the thread's context carries it into each call).
* ``close()`` closes every thread's client and pools (waiting up to 10 s for a call in
  progress in another thread). Clients not closed are closed at interpreter exit; the
  client of a thread that ended is closed when the next thread starts using the client.
* **After** ``fork()`` the child never touches the parent's connections or event loops
  (closing them there would unregister the parent's sockets from the epoll instance both
  share): it forgets them, keeps the in-memory data, and builds its own on first use.

Every method but the lifecycle and ``transaction()`` is generated from the async client
(``tools/gen_facades.py``), so both keep the same signatures.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # typeshed has no stub; the C functions
import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import functools
import os
import selectors
import signal
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

from . import client as _async
from . import models
from .cache import CacheStats
from .client import DBInstance as AsyncDBInstance
from .clock import Clock
from .config import ClientConfig, SQLiteConfig
from .errors import PoolClosedError, SyncUsageError
from .outbox import DeadEntry, OutboxStats
from .pool import PoolStats
from .tiers import SingleValue

__all__ = ["DBClientFactory", "DBInstance"]

T = TypeVar("T")
P = ParamSpec("P")
_SIGINT = int(signal.SIGINT)

#: How long close() waits for a call in progress in another thread.
CLOSE_TIMEOUT = 10.0
#: Clients not closed yet: held here, so that one forgotten by its program (never closed,
#: no longer referenced) is still closed at exit rather than left to the collector.
_OPEN: set[DBInstance] = set()
#: What forked children inherited and must never touch (see _forget_after_fork).
_ABANDONED: list[object] = []


def _refuse_inside_event_loop() -> None:
    # The underscored twin returns None where get_running_loop raises: no exception
    # made and caught on every call (asyncio exports it for this).
    if asyncio._get_running_loop() is None:
        return
    raise SyncUsageError(
        "async_db_client.sync was called from a thread that runs an event loop, where "
        "blocking would stall it; use the async API (await async_db_client.DBClientFactory"
        "(...).create_client() methods) there instead"
    )


class _Lane:
    """An event loop and the async client whose pools live in it."""

    def __init__(self, client: AsyncDBInstance, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.closed = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        raise NotImplementedError

    def close(self, timeout: float) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """In a forked child: never run this loop again, and make sure that closing
        anything of it (a connection finalized at exit, say) cannot reach the epoll
        instance the parent's loop still uses."""
        # The loop's selector is inherited from the parent and shares its epoll instance:
        # unregistering a socket there (what closing a transport does) would unregister
        # it for the parent too. A selector of the child's own takes those calls instead.
        self.loop._selector = selectors.DefaultSelector()  # type: ignore[attr-defined]
        _ABANDONED.append(self)


class _ThreadLane(_Lane):
    """The calling thread's own loop, run by that thread during each of its calls."""

    def __init__(self, client: AsyncDBInstance) -> None:
        super().__init__(client, asyncio.new_event_loop())
        self.thread = threading.current_thread()
        # Held while the loop runs: by the owner for a call, by close() from elsewhere.
        self.lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self.lock:
            if self.closed:
                coro.close()
                raise PoolClosedError("the client is closed")
            # The task copies this thread's context: its open transactions go along.
            return _run_interruptibly(self.loop, self.loop.create_task(_then_stop(self.loop, coro)))

    def close(self, timeout: float) -> None:
        # A call in progress in the owner thread finishes first (bounded).
        if not self.lock.acquire(timeout=timeout):
            self.closed = True
            return
        try:
            if self.closed:
                return
            self.closed = True
            try:
                self.loop.run_until_complete(_close_within(self.client, timeout))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()
        finally:
            self.lock.release()


class _PortalLane(_Lane):
    """One loop in a daemon thread, shared by every calling thread: for a client whose
    data lives in one connection (SQLite ``:memory:``). A daemon thread, so it never
    holds up interpreter exit (the ``atexit`` close still uses it)."""

    def __init__(self, client: AsyncDBInstance) -> None:
        super().__init__(client, asyncio.new_event_loop())
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="async_db_client-loop", daemon=True
        )
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self.closed:
            coro.close()
            raise PoolClosedError("the client is closed")
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        tasks: list[asyncio.Task[T]] = []

        def start() -> None:  # in the loop, in the caller's context (its transactions)
            task = self.loop.create_task(coro)
            tasks.append(task)
            task.add_done_callback(functools.partial(_settle, done))

        self.loop.call_soon_threadsafe(start, context=contextvars.copy_context())
        try:
            return done.result()
        except BaseException:
            if not done.done():  # Ctrl-C while waiting: cancel the call, let it clean up
                self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
                concurrent.futures.wait([done], timeout=CLOSE_TIMEOUT)
            raise

    def close(self, timeout: float) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            asyncio.run_coroutine_threadsafe(
                _close_within(self.client, timeout), self.loop
            ).result(timeout + 1)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout)
            if not self.thread.is_alive():
                self.loop.close()


def _settle(done: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    if task.cancelled():
        done.set_exception(asyncio.CancelledError())
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())


async def _then_stop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """``coro``, then stop the loop from inside the task's last step."""
    # run_until_complete stops the loop from a done-callback instead: one more loop
    # iteration (a selector poll) and a callback added and removed per call, ~7 us of
    # the ~25 us a facade call costs over the awaited one here.
    try:
        return await coro
    finally:
        loop.stop()


def _run_interruptibly(loop: asyncio.AbstractEventLoop, task: asyncio.Task[T]) -> T:
    """Run ``loop`` until ``task`` (made of :func:`_then_stop`) is done, where Ctrl-C
    cancels the task (which then cleans up at an ``await``, as asyncio.Runner does) and
    raises KeyboardInterrupt.

    Only in the main thread (signals go there) and only if the program left SIGINT to
    Python's default; the handler is ours for the call only."""
    interrupts = 0

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and not task.done():
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake a loop blocked in select()
            return
        raise KeyboardInterrupt  # a second Ctrl-C, or the call already ended

    handler = None
    if threading.current_thread() is threading.main_thread():
        # Set and look at what was there in one call. The C functions of _signal: the
        # signal module's wrappers convert numbers and handlers to enums each time,
        # which cost ~30 µs of a call here (5 µs without).
        previous = _signal.signal(_SIGINT, on_sigint)
        if previous is signal.default_int_handler:
            handler = on_sigint
        else:  # the program handles SIGINT itself: leave it so
            _signal.signal(_SIGINT, previous)
    try:
        # More than one run only if an earlier call's task, abandoned by a second
        # Ctrl-C, ends during this one and stops the loop before this task is done.
        while not task.done():
            loop.run_forever()
        return task.result()
    except asyncio.CancelledError:
        if interrupts and task.uncancel() == 0:
            raise KeyboardInterrupt from None
        raise
    finally:
        if handler is not None and _signal.getsignal(_SIGINT) is handler:
            _signal.signal(_SIGINT, signal.default_int_handler)


def _shares_one_connection(config: ClientConfig) -> bool:
    return any(
        isinstance(config.database.tier(tier), SQLiteConfig)
        and getattr(config.database.tier(tier), "in_memory", False)
        for tier in ("remote", "core", "pipeline")
    )


class DBInstance:
    """The blocking client. Same methods as :class:`async_db_client.DBInstance`."""

    def __init__(self, factory: _async.DBClientFactory) -> None:
        self._factory = factory
        self._shared = _async.Shared()
        self._one_loop = _shares_one_connection(factory.config)
        self._lock = threading.Lock()
        self._lanes: list[_Lane] = []
        self._local = threading.local()
        self._closed = False
        _OPEN.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._lanes)} loop(s)"
        return f"<sync DBInstance {state} {self._factory.config.database!r}>"

    # ------------------------------------------------------------------ machinery

    @property
    def async_client(self) -> AsyncDBInstance:
        """The calling thread's async client (used from this thread only)."""
        return self._lane().client

    def _lane(self) -> _Lane:
        lane: _Lane | None = getattr(self._local, "lane", None)
        if lane is not None and not lane.closed:
            return lane
        with self._lock:
            if self._closed:
                raise PoolClosedError("the client is closed")
            lane = self._new_lane()
        self._local.lane = lane
        return lane

    def _new_lane(self) -> _Lane:
        if self._one_loop:
            if not self._lanes:
                self._lanes.append(_PortalLane(self._factory.create_client(shared=self._shared)))
            return self._lanes[0]
        # Threads that ended leave their clients behind: close those now.
        for ended in [ln for ln in self._lanes if not _owner_alive(ln)]:
            self._lanes.remove(ended)
            ended.close(CLOSE_TIMEOUT)
        lane = _ThreadLane(self._factory.create_client(shared=self._shared))
        self._lanes.append(lane)
        return lane

    def _call(
        self,
        method: Callable[Concatenate[AsyncDBInstance, P], Coroutine[Any, Any, T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``method`` of the calling thread's async client; its result."""
        _refuse_inside_event_loop()
        lane = self._lane()
        return lane.run(method(lane.client, *args, **kwargs))

    def _iterate(
        self,
        method: Callable[Concatenate[AsyncDBInstance, P], AsyncIterator[T]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Iterator[T]:
        """``method``'s async iterator as a generator: one loop run per batch
        (``batch_size`` items), not per item; memory stays one batch."""
        _refuse_inside_event_loop()
        lane = self._lane()
        batch = kwargs.get("batch_size", 1000)
        # Made here, at the call: a missing tier raises now, not at the first item.
        source = method(lane.client, *args, **kwargs)
        return _drain(lane, source, max(1, batch) if isinstance(batch, int) else 1)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close every thread's client and pools. Idempotent; later calls raise
        :class:`~async_db_client.errors.PoolClosedError`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            lanes, self._lanes = self._lanes, []
        _OPEN.discard(self)
        for lane in lanes:  # a forked child has only its own (see _forget_after_fork)
            lane.close(CLOSE_TIMEOUT)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> DBInstance:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self, tier: _async.Tier = "remote") -> Iterator[DBInstance]:
        """Group this thread's calls on ``tier`` into one transaction (see module doc).

        The transaction lives in one task of the thread's loop from ``with`` to its end,
        so its connection and its cleanup never depend on which call runs the loop."""
        _refuse_inside_event_loop()
        lane = self._lane()
        open_here: set[str] = self._local.__dict__.setdefault("transactions", set())
        if tier in open_here:
            raise PoolClosedError(f"a {tier} transaction is already open in this thread")
        held = lane.run(_begin(lane.client, tier))
        open_here.add(tier)
        try:
            with _async.joining(lane.client, tier, held.tx):
                yield self
        except BaseException as exc:
            lane.run(held.end(exc))  # rolled back
            raise
        else:
            try:
                lane.run(held.end(None))  # committed
            except KeyboardInterrupt:
                # Ctrl-C while committing: the commit is finished first, then reported.
                lane.run(_finished(held.body))
                raise
        finally:
            open_here.discard(tier)

    def pool_stats(self) -> dict[str, PoolStats]:
        """Statistics of every pool of every thread's client, added up by pool name."""
        with self._lock:
            clients = [lane.client for lane in self._lanes]
        merged: dict[str, list[PoolStats]] = {}
        for client in clients:
            for name, stats in client.pool_stats().items():
                merged.setdefault(name, []).append(stats)
        return {name: PoolStats.combined(items) for name, items in merged.items()}

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

    def cache_stats(self) -> dict[str, CacheStats]:
        """Each cached tier's counters (hits, misses, evictions, invalidations, Redis errors, ...),
        by tier name; empty when no tier has a ``cache``."""
        return self.async_client.cache_stats()

    def health_check(self) -> dict[str, bool]:
        """Health of every configured tier: ``local_db``, ``core_db``, ``pipeline_db``."""
        return self._call(AsyncDBInstance.health_check)

    def health_report(self) -> dict[str, str | None]:
        """Each configured tier's health key, and why it did not answer (None: it did)."""
        return self._call(AsyncDBInstance.health_report)

    def topology(self) -> dict[str, Any]:
        """The servers of each tier configured with ``hosts``, found out now: mode, writer, and per
        server its role, lag, what it serves, how long it stays deny-listed, why it serves
        nothing, and its pool's stats (``{}`` without such a tier)."""
        return self._call(AsyncDBInstance.topology)

    def get_hash_record(self, path: str) -> models.HashRecord | None:
        """The record stored for ``path``, or None."""
        return self._call(AsyncDBInstance.get_hash_record, path)

    def insert_or_update_hash(self, record: Mapping[str, Any] | models.HashRecord) -> bool:
        """Store ``record`` with prev-hash rotation; False (logged) if it is invalid."""
        return self._call(AsyncDBInstance.insert_or_update_hash, record)

    def insert_or_update_hashes(
        self, records: Iterable[Mapping[str, Any] | models.HashRecord]
    ) -> models.BulkResult:
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
        self, args_dict: Mapping[str, Any] | models.LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a log entry and return its new id; None (logged) if it is invalid."""
        return self._call(AsyncDBInstance.put_log, args_dict, idempotency_key=idempotency_key)

    def get_logs(
        self, limit: int | None = None, offset: int = 0, order_by: str = "timestamp",
        order_direction: str = "DESC", session_id_filter: str | None = None,
        older_than_days: int | None = None
    ) -> list[models.LogEntry]:
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

    def iter_hash_records(self, *, batch_size: int = 1000) -> Iterator[models.HashRecord]:
        """Every stored record, in key order, fetched ``batch_size`` at a time."""
        return self._iterate(AsyncDBInstance.iter_hash_records, batch_size=batch_size)

    def iter_logs(self, *, batch_size: int = 1000) -> Iterator[models.LogEntry]:
        """Every log entry, oldest id first, fetched ``batch_size`` at a time."""
        return self._iterate(AsyncDBInstance.iter_logs, batch_size=batch_size)

    def restore_hash_records(
        self, records: Iterable[Mapping[str, Any] | models.HashRecord]
    ) -> models.BulkResult:
        """Store complete records exactly as given (for restoring a backup)."""
        return self._call(AsyncDBInstance.restore_hash_records, _in_caller(records))

    def restore_logs(
        self, entries: Iterable[Mapping[str, Any] | models.LogEntry]
    ) -> models.BulkResult:
        """Store log entries as given (timestamp required; new ids are assigned)."""
        return self._call(AsyncDBInstance.restore_logs, _in_caller(entries))

    def get_dashboard_content(self) -> models.DashboardMetrics:
        """The eleven dashboard counters; every site in one sync and one live bucket."""
        return self._call(AsyncDBInstance.get_dashboard_content)

    def get_recent_logs(self) -> list[models.LogEntry]:
        """Central log entries of the last 30 days, newest first."""
        return self._call(AsyncDBInstance.get_recent_logs)

    def get_hash_record_count(self) -> int:
        """Total hash records over all sites, as last reported in their heartbeats."""
        return self._call(AsyncDBInstance.get_hash_record_count)

    def get_log_count_last_24h(self, log_level: str) -> int:
        """How many central log entries of ``log_level`` (any case) in the last 24 h."""
        return self._call(AsyncDBInstance.get_log_count_last_24h, log_level)

    def get_sites(self) -> list[models.SiteStatus]:
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
        self, args_dict: Mapping[str, Any] | models.LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a central log entry (same rules as the remote ``put_log``)."""
        return self._call(AsyncDBInstance.put_core_log, args_dict, idempotency_key=idempotency_key)

    def get_pipeline_updates(self) -> list[models.PipelineUpdate]:
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

    def get_pipeline_site_completions(self, site: str | None = None) -> list[models.SiteCompletion]:
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
        """A new blocking client; each thread's event loop starts on its first call."""
        return DBInstance(self._factory)


def _owner_alive(lane: _Lane) -> bool:
    return not isinstance(lane, _ThreadLane) or lane.thread.is_alive()


def _in_caller(values: Iterable[T]) -> Iterable[T]:
    """A lazy iterable read here, in the calling thread and outside its loop: it may
    block, or call this facade (``restore_hash_records(other.iter_hash_records())``),
    neither of which it may do inside the loop. The calls hold their input anyway."""
    return list(values) if isinstance(values, Iterator) else values


async def _finished(task: asyncio.Task[Any]) -> None:
    """Wait for ``task`` to end, whatever it ends with (its error is raised)."""
    await asyncio.wait([task])
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc


class _HeldTransaction:
    """A transaction held open by one task of a lane's loop, from ``with`` to its end:
    its connection and its cleanup never depend on which call runs the loop."""

    def __init__(self, client: AsyncDBInstance, tier: _async.Tier) -> None:
        loop = asyncio.get_running_loop()
        self.entered: asyncio.Future[Any] = loop.create_future()
        self.outcome: asyncio.Future[BaseException | None] = loop.create_future()
        self.body = loop.create_task(self._hold(client, tier))
        self.tx: Any = None

    async def _hold(self, client: AsyncDBInstance, tier: _async.Tier) -> None:
        try:
            async with client.transaction(tier) as tx:
                self.entered.set_result(tx)
                if await self.outcome is not None:
                    raise _BlockFailed
        except _BlockFailed:
            return  # rolled back; the block's own exception is raised in the caller
        except BaseException as exc:
            if not self.entered.done():
                self.entered.set_exception(exc)
            raise

    async def end(self, error: BaseException | None) -> None:
        """Commit (``error`` None) or roll back, and wait for it."""
        if not self.outcome.done():
            self.outcome.set_result(error)
        await _finished(self.body)


async def _begin(client: AsyncDBInstance, tier: _async.Tier) -> _HeldTransaction:
    held = _HeldTransaction(client, tier)
    try:
        held.tx = await held.entered
    except BaseException:
        # Interrupted while entering (Ctrl-C during BEGIN): the task must not go on to
        # hold a transaction nobody will end.
        held.body.cancel()
        await asyncio.wait([held.body])
        raise
    return held


class _BlockFailed(Exception):
    """The ``with`` block raised: roll back."""


def _drain(lane: _Lane, source: AsyncIterator[T], chunk: int) -> Iterator[T]:
    try:
        while True:
            items, done = lane.run(_take(source, chunk))
            yield from items
            if done:
                return
    finally:
        # Abandoned early (break, or the generator closed): end the async iterator
        # in its loop. Nothing to do if the client is closed meanwhile.
        with contextlib.suppress(Exception):
            lane.run(_close_source(source))


async def _take(source: AsyncIterator[T], count: int) -> tuple[list[T], bool]:
    """Up to ``count`` items of ``source``, and whether it is exhausted."""
    items: list[T] = []
    async for item in source:
        items.append(item)
        if len(items) >= count:
            return items, False
    return items, True


async def _close_source(source: AsyncIterator[Any]) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()


async def _close_within(client: AsyncDBInstance, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await client.aclose()


def _close_all_at_exit() -> None:
    for instance in list(_OPEN):
        with contextlib.suppress(Exception):
            instance.close()


def _forget_after_fork() -> None:
    """In a forked child: forget every client's loops and connections (the parent's),
    without touching them; keep the in-memory data; start afresh on the next call."""
    for instance in list(_OPEN):
        instance._lock = threading.Lock()  # another thread may have held it at fork
        for lane in instance._lanes:
            lane.abandon()
        instance._lanes = []
        instance._local = threading.local()
        instance._shared.after_fork()


atexit.register(_close_all_at_exit)
os.register_at_fork(after_in_child=_forget_after_fork)
