"""Where cached values live: this process only (``memory``), or Redis shared by every
client (``redis``) with this process's entries as a first layer.

Both answer the same four calls for :class:`~async_db_client.cache.store.CachedStore`:
:meth:`lookup` (a hit, or a miss with the *token* a fill must carry), :meth:`fill`,
:meth:`invalidate` (after a write) and :meth:`invalidate_blocking` (the same from a
thread that runs no event loop of ours: the outbox's replayer).

**Redis: versions, so that every client sees a write on its next read.** Each group has
a version counter in Redis (``<prefix>:<tier>:v:<group>``), and the tier an *epoch*
(``<prefix>:<tier>:e``, a random token). A write's invalidation increments the version
of each group it touched; a value stored in Redis carries the epoch and version it was
read under, and the time it was read. A read fetches the epoch, the version and the
value in one round trip (``MGET``) and uses the value only if its epoch and version are
the current ones and it is younger than ``ttl``. A fill that read the database before a
write's increment therefore carries an old version, and nobody ever uses it, whatever
order the two reach Redis in. This process's first layer keeps decoded values with the
epoch and version they were read under, and is used only when one ``MGET`` of the epoch
and version says they are still current: it can never outlive an increment, even one it
never heard of.

**Redis down or slow.** Every call is bounded by ``redis_timeout``. A failure is counted,
logged once (at WARNING, until Redis answers again), drops this process's first layer
(it could not be validated) and makes the cache leave Redis alone for
``retry_interval``: reads go to the database meanwhile, never fail. A write whose
increment could not be delivered marks the cache *dirty*: before it uses Redis again,
the cache replaces the epoch, which voids every value stored in Redis (the increments it
missed are thus delivered as one). Until then this client reads the database. A Redis
restarted empty has no epoch: the first reader sets a new one, and the first layers of
every client see that the epoch changed and drop their entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from ..config import CacheConfig
from ..errors import DriverNotInstalledError
from .local import CacheStats, LocalCache

__all__ = ["Codec", "Layer", "Lookup", "MemoryLayer", "RedisLayer", "make_layer"]

logger = logging.getLogger("async_db_client")

#: A bulk write touching more groups than this invalidates everything of its tier at
#: once (one epoch) instead of group by group.
BULK_INVALIDATION_LIMIT = 10_000
#: How many groups one pipelined Redis round trip invalidates.
INVALIDATION_CHUNK = 1_000


class Codec(Protocol):
    """How one kind of cached value is written to Redis and read back."""

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class Lookup(NamedTuple):
    """What a lookup found: ``hit`` and its ``value``, or a miss and the ``token`` the
    fill must carry (None: do not fill the shared layer)."""

    hit: bool
    value: Any = None
    token: Any = None


MISS = Lookup(False)


class Layer(Protocol):
    local: LocalCache

    async def lookup(self, group: str, name: str, now: float, codec: Codec) -> Lookup: ...

    async def fill(
        self,
        group: str,
        name: str,
        value: Any,
        codec: Codec,
        *,
        token: Any,
        ticket: int,
        now: float,
    ) -> None: ...

    async def invalidate(self, groups: Sequence[str]) -> None: ...

    def invalidate_blocking(self, groups: Sequence[str]) -> None: ...

    def stats(self) -> CacheStats: ...

    async def aclose(self) -> None: ...


def _invalidate_local(local: LocalCache, groups: Sequence[str]) -> bool:
    """Drop ``groups``' entries from ``local``, or every entry past
    :data:`BULK_INVALIDATION_LIMIT` groups; True if it dropped everything."""
    everything = len(groups) > BULK_INVALIDATION_LIMIT
    if everything:
        local.invalidate_all()
    else:
        local.invalidate(groups)
    return everything


def _stats(backend: str, local: LocalCache, available: bool | None) -> CacheStats:
    return CacheStats(backend=backend, entries=len(local), redis_available=available,
                      **local.counts())  # fmt: skip


class MemoryLayer:
    """The ``memory`` backend: entries in this process, each served for at most ``ttl``."""

    def __init__(self, local: LocalCache) -> None:
        self.local = local

    def __repr__(self) -> str:
        return f"MemoryLayer({self.local!r})"

    async def lookup(self, group: str, name: str, now: float, codec: Codec) -> Lookup:
        entry = self.local.get(group, name, now)
        if entry is None:
            return Lookup(False, token=True)
        self.local.count("hits")
        return Lookup(True, entry.value)

    async def fill(
        self,
        group: str,
        name: str,
        value: Any,
        codec: Codec,
        *,
        token: Any,
        ticket: int,
        now: float,
    ) -> None:
        self.local.put(group, name, value, now, ticket=ticket)

    async def invalidate(self, groups: Sequence[str]) -> None:
        self.invalidate_blocking(groups)

    def invalidate_blocking(self, groups: Sequence[str]) -> None:
        _invalidate_local(self.local, groups)

    def stats(self) -> CacheStats:
        return _stats("memory", self.local, None)

    async def aclose(self) -> None:
        return None


class _Unavailable(Exception):
    """Redis is being left alone (after a failure), or the cache is dirty and could not
    replace the epoch yet."""


class RedisLayer:
    """The ``redis`` backend (see module doc). One per client: its connections belong
    to the client's event loop; ``local`` may be shared by several clients' layers."""

    def __init__(
        self, tier: str, config: CacheConfig, local: LocalCache, *, monotonic: Callable[[], float]
    ) -> None:
        assert config.redis_url is not None
        try:
            import redis  # noqa: F401  (only to fail here, naming the extra)
        except ModuleNotFoundError:
            raise DriverNotInstalledError("redis", "redis") from None
        self.local = local
        self._url = config.redis_url
        self.target = config.describe()
        self._ttl = config.ttl
        self._timeout = config.redis_timeout
        self._retry_interval = config.retry_interval
        self._monotonic = monotonic
        base = f"{config.key_prefix}:{tier}:"
        self._base = base.encode()
        self._epoch_key = self._base + b"e"
        # Versions outlive every value stored under them (values live ttl at most).
        self._version_ms = math.ceil(1000 * (2 * config.ttl + 3600))
        self._value_ms = max(1, math.ceil(1000 * config.ttl))
        self._client: Any = None
        self._blocking: Any = None
        self._blocking_lock = threading.Lock()
        self._retry_at = 0.0
        self._failing = False
        self._epoch: bytes | None = None  # the epoch of this process's first-layer entries
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisLayer({self.target}, {self.local!r})"

    # ----------------------------------------------------------------------- keys

    def _key(self, kind: bytes, group: str) -> bytes:
        raw = group.encode("utf-8", "surrogatepass")
        if len(raw) > 200:
            raw = b"#" + hashlib.sha256(raw).hexdigest().encode()
        return self._base + kind + b":" + raw

    def _version_key(self, group: str) -> bytes:
        return self._key(b"v", group)

    def _value_key(self, group: str, name: str) -> bytes:
        return self._key(b"d:" + name.encode(), group)

    # ---------------------------------------------------------------- connections

    def _connection(self) -> Any:
        if self._client is None:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = redis.asyncio.Redis.from_url(
                self._url.get_secret_value(),
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
        return self._client

    def _blocking_connection(self) -> Any:
        with self._blocking_lock:
            if self._blocking is None:
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                self._blocking = redis.Redis.from_url(
                    self._url.get_secret_value(),
                    socket_timeout=self._timeout,
                    socket_connect_timeout=self._timeout,
                    retry=Retry(NoBackoff(), 0),
                )
            return self._blocking

    @property
    def available(self) -> bool:
        """Whether reads use Redis now (not within ``retry_interval`` of a failure)."""
        return not self._closed and self._monotonic() >= self._retry_at

    async def _call(self, work: Any) -> Any:
        """Await one Redis call, bounded; a failure is counted and reported once, and
        raises :class:`_Unavailable`."""
        try:
            # Bounded by the connection's own timeouts (connect and read: redis_timeout).
            result = await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure of the cache means: use the database
            self._failed(exc)
            raise _Unavailable from None
        if self._failing:
            self._answered()
        return result

    def _failed(self, exc: BaseException) -> None:
        self.local.count("redis_errors")
        self.local.clear()  # unvalidated from now on
        self._epoch = None
        self._retry_at = self._monotonic() + self._retry_interval
        if not self._failing:
            self._failing = True
            logger.warning(
                "cache: Redis %s unusable (%s: %s); reads go to the database until it answers",
                self.target,
                type(exc).__name__,
                self._redacted(str(exc)),
            )

    def _answered(self) -> None:
        if self._failing:
            self._failing = False
            logger.info("cache: Redis %s answers again", self.target)

    def _redacted(self, text: str) -> str:
        from urllib.parse import urlsplit

        with contextlib.suppress(ValueError):
            password = urlsplit(self._url.get_secret_value()).password
            if password:
                text = text.replace(password, "***")
        return text

    async def _usable(self) -> Any:
        """The client, once Redis may be used: not right after a failure, and not dirty
        (replacing the epoch first if it is)."""
        if self._closed or self._monotonic() < self._retry_at:
            raise _Unavailable
        client = self._client or self._connection()
        if self.local.redis_dirty:
            await self._call(client.set(self._epoch_key, secrets.token_hex(8)))
            self.local.redis_dirty = False
            self.local.clear()
            self._epoch = None
        return client

    # ---------------------------------------------------------------------- reads

    async def lookup(self, group: str, name: str, now: float, codec: Codec) -> Lookup:
        try:
            client = await self._usable()
            version_key, value_key = self._version_key(group), self._value_key(group, name)
            entry = self.local.get(group, name, now) if self._epoch is not None else None
            if entry is not None:
                epoch, version = await self._call(client.mget(self._epoch_key, version_key))
                data = None
            else:
                epoch, version, data = await self._call(
                    client.mget(self._epoch_key, version_key, value_key)
                )
            if epoch is None:
                epoch = await self._new_epoch(client)
            if epoch != self._epoch:  # Redis restarted, or its values were voided
                self.local.clear()
                self._epoch = epoch
                entry = None
            tag = (epoch, version or b"0")
            if entry is not None:
                if entry.tag == tag:
                    self.local.count("hits")
                    return Lookup(True, entry.value)
                self.local.drop(group, name)
                data = await self._call(client.get(value_key))
        except _Unavailable:
            return MISS
        if data is not None:
            found = self._parse(data, tag, now)
            if found is not None:
                filled, payload = found
                value = codec.decode(payload)
                self.local.put(group, name, value, filled, tag=tag)
                self.local.count("hits")
                self.local.count("redis_hits")
                return Lookup(True, value)
        return Lookup(False, token=tag)

    async def _new_epoch(self, client: Any) -> bytes:
        pipe = client.pipeline(transaction=False)
        pipe.set(self._epoch_key, secrets.token_hex(8), nx=True)
        pipe.get(self._epoch_key)
        _, epoch = await self._call(pipe.execute())
        if epoch is None:  # deleted again at once: take no chances
            raise _Unavailable
        return bytes(epoch)

    def _parse(
        self, data: bytes, tag: tuple[bytes, bytes], now: float
    ) -> tuple[float, bytes] | None:
        try:
            epoch, version, filled_text, payload = data.split(b"|", 3)
            filled = float(filled_text)
        except ValueError:
            return None
        if (epoch, version) != tag or now - filled >= self._ttl:
            return None
        return filled, payload

    async def fill(
        self,
        group: str,
        name: str,
        value: Any,
        codec: Codec,
        *,
        token: Any,
        ticket: int,
        now: float,
    ) -> None:
        if token is None or not self.local.valid(group, ticket):
            if token is not None:
                self.local.count("discarded_fills")
            return
        epoch, version = token
        data = b"%s|%s|%r|" % (epoch, version, now) + codec.encode(value)
        try:
            client = await self._usable()
            await self._call(client.set(self._value_key(group, name), data, px=self._value_ms))
        except _Unavailable:
            return
        if self._epoch == epoch:
            self.local.put(group, name, value, now, ticket=ticket, tag=token)

    # ---------------------------------------------------------------------- writes

    def _version_bumps(self, client: Any, groups: Sequence[str]) -> Iterator[Any]:
        """Pipelines (of :data:`INVALIDATION_CHUNK` groups each, made one at a time, for
        the caller to execute) that bump and re-expire ``groups``' versions."""
        for start in range(0, len(groups), INVALIDATION_CHUNK):
            pipe = client.pipeline(transaction=False)
            for group in groups[start : start + INVALIDATION_CHUNK]:
                key = self._version_key(group)
                pipe.incr(key)
                pipe.pexpire(key, self._version_ms)
            yield pipe

    async def invalidate(self, groups: Sequence[str]) -> None:
        everything = _invalidate_local(self.local, groups)
        try:
            client = await self._usable()
            if everything:
                await self._call(client.set(self._epoch_key, secrets.token_hex(8)))
                return
            for pipe in self._version_bumps(client, groups):
                await self._call(pipe.execute())
        except _Unavailable:
            self.local.redis_dirty = True
        except asyncio.CancelledError:
            self.local.redis_dirty = True  # not known to have reached Redis
            raise

    def invalidate_blocking(self, groups: Sequence[str]) -> None:
        """:meth:`invalidate` from another thread (the outbox's replayer), blocking it
        for at most ``redis_timeout`` a round trip."""
        everything = _invalidate_local(self.local, groups)
        if self._closed:
            return
        try:
            client = self._blocking_connection()
            if everything:
                client.set(self._epoch_key, secrets.token_hex(8))
                return
            for pipe in self._version_bumps(client, groups):
                pipe.execute()
        except Exception:  # delivered as a new epoch before Redis is used again
            self.local.count("redis_errors")
            self.local.redis_dirty = True

    # ------------------------------------------------------------------- the rest

    def stats(self) -> CacheStats:
        return _stats("redis", self.local, self.available and not self.local.redis_dirty)

    async def aclose(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        with self._blocking_lock:
            blocking, self._blocking = self._blocking, None
        if blocking is not None:
            blocking.close()
        if client is not None:
            await client.aclose()


def make_layer(
    tier: str,
    config: CacheConfig,
    local: LocalCache,
    *,
    monotonic: Callable[[], float] = time.monotonic,
) -> Layer:
    """The layer ``config.backend`` names, over ``local``."""
    if config.backend == "redis":
        return RedisLayer(tier, config, local, monotonic=monotonic)
    return MemoryLayer(local)
