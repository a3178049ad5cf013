"""A cache of the hot reads, per tier, off by default; correct by construction.

Configured per tier (key ``cache`` of its config, see
:class:`~async_db_client.config.CacheConfig`)::

    'remote_config': {..., 'cache': {'backend': 'memory', 'ttl': 30.0, 'max_entries': 100_000}}
    'core_config':   {..., 'cache': {'backend': 'redis',
                                     'redis_url': 'redis://127.0.0.1:6379/0', 'ttl': 10.0}}

the registry wraps the tier's store in a :class:`~.store.CachedStore` (outside the
outbox, if there is one), which keeps the store protocol. What it guarantees:

* **Never stale after your own write.** Every write primitive invalidates the groups it
  touched once it returned (or failed), inside and outside transactions; a fill that
  raced the write is discarded (generations, :mod:`.local`); reads inside a transaction
  bypass the cache; a rolled-back transaction leaves it untouched.
* **Bounded staleness for other writers.** ``memory``: an entry is served for at most
  ``ttl`` seconds after it was read. ``redis``: every client sharing the Redis sees a
  write by any of them on its next read (versions in Redis, :mod:`.layers`), and no
  entry is older than ``ttl`` either.
* **Single flight.** Concurrent misses of one key make one database read.
* **Failure-transparent.** Redis down or slow: reads go to the database (each Redis call
  bounded by ``redis_timeout``; counted; logged once), never an error.
* **Bounded memory.** At most ``max_entries`` entries per tier in the process (least
  recently used dropped first). A path without a record (None) is cached like a record
  and invalidated the same way, by a write of that path.

``DBInstance.cache_stats()`` reports each cached tier's counters.
"""

from __future__ import annotations

import time
from typing import Any

from ..clock import Clock
from ..config import CacheConfig
from ..outbox import Outbox
from .layers import Layer, MemoryLayer, RedisLayer, make_layer
from .local import CacheStats, LocalCache
from .store import (
    CACHED_STORES,
    UNCACHED,
    CachedStore,
    ReplayInvalidation,
    _Recording,
    listen_for_replays,
)

__all__ = [
    "UNCACHED",
    "CacheStats",
    "CachedStore",
    "Layer",
    "LocalCache",
    "MemoryLayer",
    "RedisLayer",
    "ReplayInvalidation",
    "cached_store",
    "unwrap",
]


def cached_store(
    tier: str,
    store: Any,
    config: CacheConfig,
    clock: Clock | None,
    *,
    shared: Any = None,
) -> CachedStore:
    """``store`` with its hot reads cached as ``config`` says.

    Clients made with the same ``shared`` (the sync facade's per-thread clients) share
    the in-process entries, so a write through any of them invalidates them for all.
    """

    def make() -> LocalCache:
        return LocalCache(config.max_entries, config.ttl)

    local = make() if shared is None else shared.store(f"cache:{tier}", make)
    layer = make_layer(tier, config, local, monotonic=time.monotonic)
    cached = CACHED_STORES[tier](store, layer, clock=clock)
    if isinstance(store, Outbox):
        listen_for_replays(store.path, layer)
    return cached


def unwrap(store: Any) -> Any:
    """The store under the cache (itself if it is not cached)."""
    while isinstance(store, CachedStore | _Recording):
        store = store.store
    return store
