"""The in-process layer of the cache: an LRU of entries with a lifetime, and generations.

:class:`LocalCache` is the whole cache of the ``memory`` backend and the first layer of
the ``redis`` one. It is safe to share between threads (the sync facade gives each
calling thread a client of its own, and they share one ``LocalCache`` per tier): every
method takes a short lock and never awaits.

**Groups.** An entry lives in a *group*, the unit that writes invalidate: the record of
one path (``r:<path>``), everything the core tier caches (``core``), the official sites
(``official``). A group may hold several entries (the dashboard, the counts and the
sites are all in ``core``).

**Generations: a fill never puts back what a write replaced.** A read that misses takes
a *ticket* (the invalidation sequence number as it was) before it reads the database;
its result is stored only if no invalidation of its group (nor of everything) happened
since that ticket. So a read that raced a write, and may have read the value from
before it, is discarded instead of outliving the write's invalidation. The sequence
numbers of invalidated groups are kept only while some fill is in flight (a fill that
starts later cannot have read anything older than them), so they take no memory at rest.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["COUNTERS", "CacheStats", "Entry", "LocalCache"]

#: What a cache counts (see :class:`CacheStats`), each with the description the
#: telemetry (Prometheus, OpenTelemetry) gives it.
COUNTERS = {
    "hits": "Reads answered from the cache.",
    "misses": "Reads that went to the database.",
    "coalesced": "Reads that waited for another read of the same key.",
    "evictions": "Entries dropped to stay within max_entries.",
    "expired": "Entries found older than ttl.",
    "invalidations": "Key groups invalidated by writes.",
    "discarded_fills": "Database reads not stored: a write invalidated their key meanwhile.",
    "bypassed": "Reads that skipped the cache (inside a transaction).",
    "redis_hits": "Hits answered by the shared Redis layer.",
    "redis_errors": "Redis calls that failed or timed out (those reads went to the database).",
}


@dataclass(frozen=True)
class CacheStats:
    """What one tier's cache did since its client was made (``DBInstance.cache_stats()``).

    ``hits``: reads answered from the cache (``redis_hits`` of them by the shared Redis
    layer rather than this process's entries); ``misses``: reads that went to the
    database (one per key however many waited for it: those are ``coalesced``);
    ``evictions``: entries dropped to stay within ``max_entries``; ``expired``: entries
    found older than ``ttl``; ``invalidations``: groups invalidated by writes;
    ``discarded_fills``: database reads not stored because a write invalidated their key
    meanwhile; ``bypassed``: reads that skipped the cache (inside a transaction);
    ``redis_errors``: Redis calls that failed or took longer than ``redis_timeout``
    (those reads went to the database); ``entries``: entries held in this process now;
    ``redis_available``: None for a memory cache, else whether Redis is used right now.
    """

    backend: str
    hits: int
    misses: int
    coalesced: int
    evictions: int
    expired: int
    invalidations: int
    discarded_fills: int
    bypassed: int
    redis_hits: int
    redis_errors: int
    entries: int
    redis_available: bool | None

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Entry:
    """A cached value, when it was read from the database (the clock's epoch seconds),
    and (in the redis backend's first layer) the Redis version it was read under."""

    __slots__ = ("filled", "tag", "value")

    def __init__(self, value: Any, filled: float, tag: Any) -> None:
        self.value = value
        self.filled = filled
        self.tag = tag


Key = tuple[str, str]  # (group, entry within the group)


class LocalCache:
    """A thread-safe LRU of :class:`Entry` by (group, name), entries at most ``ttl``
    seconds old, and the generations that keep racing fills out (see module doc)."""

    def __init__(self, max_entries: int, ttl: float) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Key, Entry] = collections.OrderedDict()
        self._groups: dict[str, set[str]] = {}
        self._seq = 0
        self._invalidated: dict[str, int] = {}
        self._invalidated_all = 0
        self._in_flight = 0
        self._counts = dict.fromkeys(COUNTERS, 0)
        #: Set by the redis backend when an invalidation may not have reached Redis:
        #: here, so that every client sharing these entries (the sync facade's threads)
        #: replaces the epoch before it reads Redis again.
        self.redis_dirty = False

    def __repr__(self) -> str:
        return f"LocalCache({len(self._entries)}/{self.max_entries} entries, ttl={self.ttl:g})"

    def __len__(self) -> int:
        return len(self._entries)

    def after_fork(self) -> None:
        """In a forked child: a lock the parent's threads may have held starts free."""
        self._lock = threading.Lock()
        self._in_flight = 0

    # ------------------------------------------------------------------- counting

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    # -------------------------------------------------------------------- entries

    def get(self, group: str, name: str, now: float) -> Entry | None:
        """The entry, if there is one younger than ``ttl`` (and it becomes the most
        recently used); an older one is dropped. Counts nothing else."""
        key = (group, name)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry.filled >= self.ttl:
                self._drop(key)
                self._counts["expired"] += 1
                return None
            self._entries.move_to_end(key)
            return entry

    def put(
        self,
        group: str,
        name: str,
        value: Any,
        filled: float,
        *,
        ticket: int | None = None,
        tag: Any = None,
    ) -> bool:
        """Store ``value``, unless ``ticket`` (taken before the database read) is no
        longer valid for ``group``; whether it was stored. Evicts the least recently used
        entries beyond ``max_entries``."""
        key = (group, name)
        with self._lock:
            if ticket is not None and not self._valid(group, ticket):
                self._counts["discarded_fills"] += 1
                return False
            self._entries[key] = Entry(value, filled, tag)
            self._entries.move_to_end(key)
            self._groups.setdefault(group, set()).add(name)
            while len(self._entries) > self.max_entries:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self._counts["evictions"] += 1
            return True

    def _drop(self, key: Key) -> None:
        del self._entries[key]
        names = self._groups.get(key[0])
        if names is not None:
            names.discard(key[1])
            if not names:
                del self._groups[key[0]]

    def drop(self, group: str, name: str) -> None:
        """Forget one entry (no invalidation: a fill in flight may still store)."""
        with self._lock:
            if (group, name) in self._entries:
                self._drop((group, name))

    def clear(self) -> None:
        """Forget every entry (the redis backend's first layer, when Redis was lost)."""
        with self._lock:
            self._entries.clear()
            self._groups.clear()

    # ---------------------------------------------------------------- generations

    def ticket(self) -> int:
        """Taken by a read before it goes to the database; give it back with
        :meth:`release` once its result was stored (or not)."""
        with self._lock:
            self._in_flight += 1
            return self._seq

    def release(self, ticket: int) -> None:
        with self._lock:
            self._in_flight -= 1
            if self._in_flight <= 0:
                self._in_flight = 0
                self._invalidated.clear()

    def valid(self, group: str, ticket: int) -> bool:
        """Whether nothing invalidated ``group`` since ``ticket`` was taken."""
        with self._lock:
            return self._valid(group, ticket)

    def _valid(self, group: str, ticket: int) -> bool:
        return self._invalidated_all <= ticket and self._invalidated.get(group, 0) <= ticket

    def invalidate(self, groups: Iterable[str]) -> int:
        """Drop the entries of ``groups`` and make fills in flight for them void; how
        many groups."""
        n = 0
        with self._lock:
            self._seq += 1
            for group in groups:
                n += 1
                if self._in_flight:
                    self._invalidated[group] = self._seq
                for name in self._groups.pop(group, ()):
                    del self._entries[(group, name)]
            self._counts["invalidations"] += n
        return n

    def invalidate_all(self) -> None:
        """Drop every entry and make every fill in flight void."""
        with self._lock:
            self._seq += 1
            self._invalidated_all = self._seq
            self._entries.clear()
            self._groups.clear()
            self._counts["invalidations"] += 1
