"""The cache as a store: :class:`CachedStore` wraps a tier's store and keeps its protocol.

Per tier, the wrapper answers the hot reads from a :mod:`layer <.layers>` and passes
every write primitive on, then invalidates the groups it touched (even when the write
failed: it may have been applied). Everything else goes to the wrapped store unchanged;
:data:`UNCACHED` lists, per tier, the primitives that neither read what is cached nor
change it, and a test checks that every primitive of each store protocol is either
intercepted here or listed there, so a new write primitive cannot slip past.

============  ==========================================  ================================
tier          cached reads (group: entry)                 writes that invalidate (group)
============  ==========================================  ================================
remote        ``fetch_record``, ``fetch_field``           ``upsert_record(s)``,
              (``r:<path>``: the record, or None)         ``set_target``,
                                                          ``restore_records`` (each path)
core          ``dashboard``, ``record_count``,            ``heartbeat``, ``root_hash``,
              ``count_logs``, ``sites`` (``core``)        ``add_baseline``, ``insert_log``
pipeline      ``official_sites`` (``official``)           ``register``
============  ==========================================  ================================

**Single flight.** Concurrent misses of one key in one client make one database read:
the first starts it (as a task of its own, so that a caller cancelled while waiting
does not cancel it for the others) and the others await it. A read joins a flight only
if no write invalidated the key since the flight began: a read that starts after this
client's write returned never receives a value read before it.

**Transactions.** Reads inside a transaction bypass the cache (they see the
transaction's own writes, which nobody else may see yet). Writes inside it are only
noted; the groups they touched are invalidated once it committed (or when the commit
failed, its outcome unknown). A rolled-back transaction leaves the cache untouched.

**The outbox.** The cache wraps the outbox, so a write the outbox queued invalidates its
path as any other. A queued write reaches the database later, from the outbox's
replayer: the replayer's store is wrapped in :class:`ReplayInvalidation`, which
invalidates each replayed path in every cache of this process that sits over an outbox
of the same file (and through Redis, for every client sharing it) once it was applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import TypeAdapter

from ..clock import Clock, SystemClock
from ..models import DashboardMetrics, HashRecord, LogEntry, LogLevel, SiteStatus
from ..telemetry import hooks
from ..tiers.remote import SingleValue
from .layers import Codec, Layer
from .local import CacheStats

__all__ = [
    "UNCACHED",
    "CachedCoreStore",
    "CachedPipelineStore",
    "CachedRemoteStore",
    "CachedStore",
    "ReplayInvalidation",
    "listen_for_replays",
    "record_group",
]

#: Store primitives passed on unchanged: they neither read what the cache holds nor
#: change it (logs are not cached; the outbox's own methods go to the outbox).
UNCACHED: dict[str, frozenset[str]] = {
    "remote": frozenset(
        {
            "priority_paths",
            "select_logs",
            "delete_logs",
            "orphans",
            "untracked",
            "records_after",
            "logs_after",
            "restore_logs",
            "insert_log",
            "ping",
            "migrate",
        }
    ),
    "core": frozenset({"logs_since", "ping", "migrate"}),
    "pipeline": frozenset(
        {"pending", "answer", "complete", "enqueue", "completions", "ping", "migrate"}
    ),
}

CORE = "core"
OFFICIAL = "official"


def record_group(path: str) -> str:
    """The group of the record of ``path``."""
    return "r:" + path


# ---------------------------------------------------------------------------- codecs


T = TypeVar("T")


class _RecordCodec:
    """A record or None (a path without a record is cached too, and invalidated alike)."""

    def encode(self, value: Any) -> bytes:
        return b"null" if value is None else value.model_dump_json().encode()

    def decode(self, data: bytes) -> Any:
        if data == b"null":
            return None
        return HashRecord.model_construct(**json.loads(data))


class _AdapterCodec:
    def __init__(self, kind: Any) -> None:
        self._adapter: TypeAdapter[Any] = TypeAdapter(kind)

    def encode(self, value: Any) -> bytes:
        return self._adapter.dump_json(value)

    def decode(self, data: bytes) -> Any:
        return self._adapter.validate_json(data)


RECORD: Codec = _RecordCodec()
DASHBOARD: Codec = _AdapterCodec(DashboardMetrics)
INT: Codec = _AdapterCodec(int)
SITES: Codec = _AdapterCodec(list[SiteStatus])
NAMES: Codec = _AdapterCodec(list[str])


def _fresh_record(record: HashRecord | None) -> HashRecord | None:
    # Returned lists belong to the caller: never hand out the cached ones.
    if record is None:
        return None
    copy = record.model_copy()  # shallow: then lists of its own
    fields = copy.__dict__
    for name in ("dirs", "files", "links"):
        fields[name] = list(fields[name])
    return copy


# --------------------------------------------------------------------- the wrappers


class _Flight:
    __slots__ = ("task", "ticket")

    def __init__(self, ticket: int, task: asyncio.Future[Any]) -> None:
        self.ticket = ticket
        self.task = task


class _Writes:
    """Where a tier's write primitives report the groups they touched."""

    store: Any

    async def _touched(self, groups: Sequence[str]) -> None:
        raise NotImplementedError

    async def _wrote(self, groups: Sequence[str], write: Awaitable[T]) -> T:
        """``write``'s result; whether it succeeded or not, ``groups`` are touched."""
        try:
            return await write
        finally:
            await self._touched(groups)


class CachedStore(_Writes):
    """A tier's store with its hot reads cached (see module doc)."""

    tier: ClassVar[str]

    def __init__(self, store: Any, layer: Layer, *, clock: Clock | None = None) -> None:
        self.store = store
        self.layer = layer
        self._clock: Clock = clock or SystemClock()
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._closed = False
        hooks.CACHES.add(self)  # for OpenTelemetry's observable counters

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, {self.layer!r})"

    def __getattr__(self, name: str) -> Any:
        # The primitives in UNCACHED, and whatever the wrapped store has besides.
        return getattr(self.store, name)

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> CacheStats:
        return self.layer.stats()

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def _read(self, group: str, name: str, load: Callable[[], Awaitable[Any]],
                    codec: Codec) -> Any:  # fmt: skip
        """The cached value of (group, name), or ``load()``'s (one load per key at once)."""
        now = self._now()
        found = await self.layer.lookup(group, name, now, codec)
        if found.hit:
            return found.value
        local = self.layer.local
        key = (group, name)
        flight = self._flights.get(key)
        if flight is not None and local.valid(group, flight.ticket):
            local.count("coalesced")
            return await asyncio.shield(flight.task)
        ticket = local.ticket()
        local.count("misses")
        try:
            task = asyncio.ensure_future(self._load(key, load, codec, found.token, ticket, now))
        except BaseException:
            local.release(ticket)
            raise
        task.add_done_callback(_retrieve)
        self._flights[key] = _Flight(ticket, task)
        return await asyncio.shield(task)

    async def _load(self, key: tuple[str, str], load: Callable[[], Awaitable[Any]],
                    codec: Codec, token: Any, ticket: int, now: float) -> Any:  # fmt: skip
        group, name = key
        try:
            value = await load()
            await self.layer.fill(group, name, value, codec, token=token, ticket=ticket, now=now)
            return value
        finally:
            flight = self._flights.get(key)
            if flight is not None and flight.task is asyncio.current_task():
                del self._flights[key]
            self.layer.local.release(ticket)

    async def _touched(self, groups: Sequence[str]) -> None:
        if groups:
            await self.layer.invalidate(groups)

    #: The transaction's store as the cache sees it (the tier's :class:`_Recording`).
    recording: ClassVar[type[_Recording]]

    def _recording(self, tx: Any, touched: set[str]) -> Any:
        return self.recording(tx, touched, self.layer)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """The wrapped store's transaction; what its writes touched is invalidated once
        it committed (see module doc)."""
        touched: set[str] = set()
        committing = False
        try:
            async with self.store.transaction() as tx:
                yield self._recording(tx, touched)
                committing = True
        except BaseException:
            if committing:  # the commit failed: it may have been applied
                await self._touched(sorted(touched))
            raise
        await self._touched(sorted(touched))

    async def aclose(self) -> None:
        if self._closed:
            await self.store.aclose()
            return
        self._closed = True
        _forget_replays(self.layer)
        try:
            await self.store.aclose()
        finally:
            await self.layer.aclose()


def _retrieve(task: asyncio.Future[Any]) -> None:
    # Every waiter may have been cancelled: the load's error is not left unretrieved.
    if not task.cancelled():
        task.exception()


class _Recording(_Writes):
    """A transaction's store as the cache sees it: reads go straight to the transaction,
    writes are passed on and their groups noted for when it ends."""

    def __init__(self, store: Any, touched: set[str], layer: Layer) -> None:
        self.store = store
        self._noted = touched
        self._layer = layer

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def _touched(self, groups: Sequence[str]) -> None:
        self._noted.update(groups)

    async def _bypassed(self, read: Awaitable[T]) -> T:
        """``read``'s result, straight from the transaction (counted as bypassed)."""
        self._layer.local.count("bypassed")
        return await read


# --------------------------------------------------------------------------- remote


class _RemoteWrites(_Writes):
    async def upsert_record(self, record: HashRecord, now: int) -> None:
        await self._wrote([record_group(record.path)], self.store.upsert_record(record, now))

    async def upsert_records(
        self, records: Iterator[HashRecord], now: int, *, ordered: bool
    ) -> int:
        paths: list[str] = []

        def noting() -> Iterator[HashRecord]:
            for record in records:
                paths.append(record.path)
                yield record

        try:
            stored: int = await self.store.upsert_records(noting(), now, ordered=ordered)
            return stored
        finally:
            await self._touched(list(dict.fromkeys(map(record_group, paths))))

    async def set_target(self, path: str, target_hash: str | None) -> bool:
        changed: bool = await self._wrote(
            [record_group(path)], self.store.set_target(path, target_hash)
        )
        return changed

    async def restore_records(self, records: list[HashRecord]) -> None:
        groups = list(dict.fromkeys(record_group(r.path) for r in records))
        await self._wrote(groups, self.store.restore_records(records))


class _RemoteRecording(_RemoteWrites, _Recording):
    async def fetch_record(self, path: str) -> HashRecord | None:
        record: HashRecord | None = await self._bypassed(self.store.fetch_record(path))
        return record

    async def fetch_field(self, path: str, field: str) -> SingleValue:
        value: SingleValue = await self._bypassed(self.store.fetch_field(path, field))
        return value


class CachedRemoteStore(_RemoteWrites, CachedStore):
    """The remote tier: records by path (a missing record, None, is cached too)."""

    tier = "remote"
    recording = _RemoteRecording

    async def fetch_record(self, path: str) -> HashRecord | None:
        record = await self._read(
            record_group(path), "", lambda: self.store.fetch_record(path), RECORD
        )
        return _fresh_record(record)

    async def fetch_field(self, path: str, field: str) -> SingleValue:
        # From the cached record: one entry serves the record and each of its fields.
        record = await self._read(
            record_group(path), "", lambda: self.store.fetch_record(path), RECORD
        )
        value: SingleValue = None if record is None else getattr(record, field)
        return value


# ----------------------------------------------------------------------------- core


class _CoreWrites(_Writes):
    async def heartbeat(self, site_id: str, now: datetime, count: int | None) -> None:
        await self._wrote([CORE], self.store.heartbeat(site_id, now, count))

    async def root_hash(self, site_id: str, root_hash: str, when: datetime) -> None:
        await self._wrote([CORE], self.store.root_hash(site_id, root_hash, when))

    async def add_baseline(self, baseline_hash: str, when: datetime) -> int:
        baseline_id: int = await self._wrote([CORE], self.store.add_baseline(baseline_hash, when))
        return baseline_id

    async def insert_log(self, entry: LogEntry, key: str) -> int:
        # A CRITICAL entry changes the dashboard's crit_error_count and the counts.
        log_id: int = await self._wrote([CORE], self.store.insert_log(entry, key))
        return log_id


class _CoreRecording(_CoreWrites, _Recording):
    async def dashboard(self, now: datetime) -> DashboardMetrics:
        metrics: DashboardMetrics = await self._bypassed(self.store.dashboard(now))
        return metrics

    async def record_count(self) -> int:
        count: int = await self._bypassed(self.store.record_count())
        return count

    async def count_logs(self, level: LogLevel, since: datetime) -> int:
        count: int = await self._bypassed(self.store.count_logs(level, since))
        return count

    async def sites(self) -> list[SiteStatus]:
        sites: list[SiteStatus] = await self._bypassed(self.store.sites())
        return sites


class CachedCoreStore(_CoreWrites, CachedStore):
    """The core tier: the dashboard, the counts and the sites, invalidated together by
    any core write. The dashboard and the 24-hour counts depend on the time too: a
    cached one is the answer as of when it was read, for at most ``ttl``."""

    tier = "core"
    recording = _CoreRecording

    async def dashboard(self, now: datetime) -> DashboardMetrics:
        metrics: DashboardMetrics = await self._read(
            CORE, "dashboard", lambda: self.store.dashboard(now), DASHBOARD
        )
        return metrics

    async def record_count(self) -> int:
        count: int = await self._read(CORE, "record_count", self.store.record_count, INT)
        return count

    async def count_logs(self, level: LogLevel, since: datetime) -> int:
        # Keyed by the window's length too, so another window is never taken for it.
        window = round(self._now() - since.timestamp())
        count: int = await self._read(
            CORE, f"count_logs:{level.value}:{window}",
            lambda: self.store.count_logs(level, since), INT,
        )  # fmt: skip
        return count

    async def sites(self) -> list[SiteStatus]:
        sites: list[SiteStatus] = await self._read(CORE, "sites", self.store.sites, SITES)
        return list(sites)


# ------------------------------------------------------------------------- pipeline


class _PipelineWrites(_Writes):
    async def register(self, site_id: str, now: datetime) -> bool:
        added: bool = await self._wrote([OFFICIAL], self.store.register(site_id, now))
        return added


class _PipelineRecording(_PipelineWrites, _Recording):
    async def official_sites(self) -> list[str]:
        sites: list[str] = await self._bypassed(self.store.official_sites())
        return sites


class CachedPipelineStore(_PipelineWrites, CachedStore):
    """The pipeline tier: the official sites, invalidated by registrations."""

    tier = "pipeline"
    recording = _PipelineRecording

    async def official_sites(self) -> list[str]:
        sites: list[str] = await self._read(OFFICIAL, "sites", self.store.official_sites, NAMES)
        return list(sites)


CACHED_STORES: dict[str, type[CachedStore]] = {
    "remote": CachedRemoteStore,
    "core": CachedCoreStore,
    "pipeline": CachedPipelineStore,
}


# ------------------------------------------------------------------- outbox replays

_REPLAY_LISTENERS: dict[str, weakref.WeakSet[Any]] = {}
_REPLAY_LOCK = threading.Lock()


def listen_for_replays(path: str, layer: Layer) -> None:
    """Have ``layer`` invalidate what the outbox at ``path`` replays (until its cache
    is closed)."""
    with _REPLAY_LOCK:
        _REPLAY_LISTENERS.setdefault(path, weakref.WeakSet()).add(layer)


def _forget_replays(layer: Layer) -> None:
    with _REPLAY_LOCK:
        for listeners in _REPLAY_LISTENERS.values():
            listeners.discard(layer)


def _replayed(path: str, groups: list[str]) -> None:
    with _REPLAY_LOCK:
        layers = list(_REPLAY_LISTENERS.get(path, ()))
    for layer in layers:
        layer.invalidate_blocking(groups)


class ReplayInvalidation(_RemoteWrites):
    """The outbox replayer's store: each replayed write invalidates its path in every
    cache listening to that outbox file (see :func:`listen_for_replays`)."""

    def __init__(self, store: Any, path: str) -> None:
        self.store = store
        self.path = os.path.abspath(os.path.expanduser(path))  # as the Outbox names it

    def __repr__(self) -> str:
        return f"ReplayInvalidation({self.store!r}, {self.path!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def _touched(self, groups: Sequence[str]) -> None:
        _replayed(self.path, list(groups))
