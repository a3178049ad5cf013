"""The cache of hot reads (``async_db_client.cache``): its rules, one at a time.

Over the in-memory stores (counted, and gated where a test needs a read to stop
halfway), with the memory layer and with Redis (a private ``redis-server`` of the
session; each test has its own key prefix). No test waits for a time: events and
conditions only, and a fake monotonic clock where Redis's retry interval matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, FakeClock
from async_db_client.backends.memory import MemoryCoreStore, MemoryPipelineStore, MemoryRemoteStore
from async_db_client.cache import UNCACHED, LocalCache, ReplayInvalidation, cached_store
from async_db_client.cache.layers import make_layer
from async_db_client.cache.store import CACHED_STORES
from async_db_client.config import CacheConfig, parse_config
from async_db_client.errors import ConfigurationError, DBConnectionError
from async_db_client.models import HashRecord
from async_db_client.outbox import Outbox
from async_db_client.sync import DBClientFactory as SyncFactory
from async_db_client.tiers import (
    CoreRepository,
    CoreStore,
    PipelineRepository,
    PipelineStore,
    RemoteRepository,
    RemoteStore,
)
from tests.support.mariadb_server import free_port
from tests.support.redis_server import PrivateRedis

REPOS: dict[str, Any] = {
    "remote": RemoteRepository,
    "core": CoreRepository,
    "pipeline": PipelineRepository,
}


class FakeMonotonic:
    """The clock of Redis's retry interval, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Gated:
    """A store whose reads are counted, and whose next read may be held (after it read
    the database) until the test lets it go."""

    READS = ("fetch_record", "fetch_field", "dashboard", "record_count", "official_sites")

    def __init__(self, store: Any) -> None:
        self.store = store
        self.reads = 0
        self.hold: asyncio.Event | None = None
        self.holding = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.store, name)
        if name not in self.READS:
            return target

        async def read(*args: Any) -> Any:
            self.reads += 1
            value = await target(*args)
            hold, self.hold = self.hold, None
            if hold is not None:
                self.holding.set()
                await hold.wait()
            return value

        return read


def config(backend: str, url: str | None = None, **extra: Any) -> CacheConfig:
    if backend == "redis":
        assert url is not None
        extra = {"redis_url": url, "key_prefix": f"t{secrets.token_hex(4)}", **extra}
    return CacheConfig(backend=backend, **{"ttl": 30.0, **extra})  # type: ignore[arg-type]


def repo(
    tier: str,
    store: Any,
    cfg: CacheConfig,
    clock: FakeClock,
    monotonic: Callable[[], float] | None = None,
) -> Any:
    """A repository over ``store`` with its own cache (its own in-process entries)."""
    local = LocalCache(cfg.max_entries, cfg.ttl)
    layer = make_layer(tier, cfg, local, monotonic=monotonic or FakeMonotonic())
    return REPOS[tier](CACHED_STORES[tier](store, layer, clock=clock), clock=clock)


def stats(repository: Any) -> Any:
    return repository.store.stats()


async def until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition`` holds (a condition, not a time)."""
    while not condition():  # noqa: ASYNC110  (the condition is a counter, not an event)
        await asyncio.sleep(0)


@pytest.fixture(params=["memory", "redis"])
def cache_config(request: pytest.FixtureRequest) -> Callable[..., CacheConfig]:
    if request.param == "memory":
        return lambda **extra: config("memory", **extra)
    server: PrivateRedis = request.getfixturevalue("redis_server")
    return lambda **extra: config("redis", server.url, **extra)


@contextlib.asynccontextmanager
async def closing(*repos: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for r in repos:
            await r.aclose()


# --------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("cache", "key"),
    [
        ({"backend": "disk"}, "cache.backend"),
        ({"backend": "memory", "ttl": 0}, "cache.ttl"),
        ({"backend": "memory", "ttl": float("inf")}, "cache.ttl"),
        ({"backend": "memory", "max_entries": 0}, "cache.max_entries"),
        ({"backend": "memory", "redis_url": "redis://h"}, "cache.redis_url"),
        ({"backend": "redis"}, "cache.redis_url"),
        ({"backend": "redis", "redis_url": "http://:pw@h"}, "cache.redis_url"),
        (
            {"backend": "redis", "redis_url": "redis://h", "redis_timeout": -1},
            "cache.redis_timeout",
        ),
        ({"backend": "memory", "tll": 3}, "cache.tll"),
        ({"backend": "memory", "key_prefix": "a b"}, "cache.key_prefix"),
        ("memory", "cache"),
    ],
)
def test_bad_cache_settings_are_configuration_errors_naming_the_key(cache: Any, key: str) -> None:
    for tier, engine in (("remote", "local"), ("core", "mysql")):
        tier_config: dict[str, Any] = {"cache": cache}
        if engine == "mysql":
            tier_config |= {"host": "h", "database": "d", "user": "u"}
        with pytest.raises(ConfigurationError) as caught:
            parse_config({"database": {f"{tier}_type": engine, f"{tier}_config": tier_config}})
        assert caught.value.key == f"database.{tier}_config.{key}"


def test_the_redis_password_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-Pa55"
    url = f"redis://:{secret}@127.0.0.1:{free_port()}/0"
    parsed = parse_config(
        {"database": {"core_type": "local", "core_config": {"cache": {
            "backend": "redis", "redis_url": url, "redis_timeout": 0.5}}}}
    )  # fmt: skip
    cache = parsed.database.core_config.cache  # type: ignore[union-attr]
    assert cache is not None
    shown = [repr(parsed), str(parsed), cache.describe(), repr(cache)]
    with pytest.raises(ConfigurationError) as caught:
        parse_config({"database": {"core_type": "local", "core_config": {"cache": {
            "backend": "redis", "redis_url": url.replace("redis", "http", 1)}}}})  # fmt: skip
    shown.append(str(caught.value))

    async def use() -> None:
        async with DBClientFactory(parsed).create_client() as db:
            shown.append(repr(db.core_db))
            assert await db.get_hash_record_count() == 0  # Redis refused: the database
            shown.append(repr(db.cache_stats()))

    with caplog.at_level(logging.DEBUG, logger="async_db_client"):
        asyncio.run(use())
    shown += [record.getMessage() for record in caplog.records]
    assert any("Redis" in line and "127.0.0.1" in line for line in shown)
    assert not [line for line in shown if secret in line]


# ------------------------------------------------------------------ own writes


@pytest.mark.asyncio
async def test_own_writes_are_read_back_at_once(
    cache_config: Callable[..., CacheConfig], clock: FakeClock
) -> None:
    remote = repo("remote", MemoryRemoteStore(), cache_config(), clock)
    core = repo("core", MemoryCoreStore(), cache_config(), clock)
    pipeline = repo("pipeline", MemoryPipelineStore(), cache_config(), clock)
    async with closing(remote, core, pipeline):
        assert await remote.get_hash_record("/a") is None  # None is cached too
        assert await remote.get_hash_record("/a") is None
        assert stats(remote).hits == 1
        await remote.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
        assert await remote.get_single_field("/a", "current_hash") == "h1"
        await remote.insert_or_update_hashes(
            [{"path": "/a", "current_hash": "h2"}, {"path": "/b", "current_hash": "h1"}]
        )
        assert (await remote.get_hash_record("/a")).current_hash == "h2"
        assert await remote.set_target_hash("/a", "h9")
        assert await remote.get_single_field("/a", "target_hash") == "h9"
        stamp = 1_700_000_000
        await remote.restore_hash_records([{"path": "/a", "current_hash": "h7",
            "current_dtg_first": stamp, "current_dtg_latest": stamp}])  # fmt: skip
        assert await remote.get_single_field("/a", "current_hash") == "h7"

        assert (await core.get_dashboard_content()).live_current == 0
        assert await core.get_hash_record_count() == 0
        assert await core.get_log_count_last_24h("critical") == 0
        assert await core.get_sites() == []
        await core.put_site_heartbeat("s1", hash_record_count=5)
        assert (await core.get_dashboard_content()).live_current == 1
        assert await core.get_hash_record_count() == 5
        assert [s.site_id for s in await core.get_sites()] == ["s1"]
        await core.put_core_log({"summary_message": "m", "log_level": "CRITICAL"})
        assert await core.get_log_count_last_24h("critical") == 1
        assert (await core.get_dashboard_content()).crit_error_count == 1
        await core.put_site_root_hash("s1", "h1")
        await core.put_baseline("h1")
        assert (await core.get_dashboard_content()).sync_current == 1

        assert await pipeline.get_official_sites() == []
        assert await pipeline.register_official_site("s1")
        assert await pipeline.get_official_sites() == ["s1"]
        assert stats(core).invalidations >= 4 and stats(pipeline).invalidations == 1


@pytest.mark.asyncio
async def test_returned_lists_belong_to_the_caller(
    cache_config: Callable[..., CacheConfig], clock: FakeClock
) -> None:
    remote = repo("remote", MemoryRemoteStore(), cache_config(), clock)
    pipeline = repo("pipeline", MemoryPipelineStore(), cache_config(), clock)
    async with closing(remote, pipeline):
        await remote.insert_or_update_hash({"path": "/a", "current_hash": "h", "dirs": ["x"]})
        (await remote.get_hash_record("/a")).dirs.append("mutated")
        assert (await remote.get_hash_record("/a")).dirs == ["x"]
        await pipeline.register_official_site("s1")
        (await pipeline.get_official_sites()).append("s2")
        assert await pipeline.get_official_sites() == ["s1"]


@pytest.mark.asyncio
async def test_transactions_commit_invalidates_rollback_leaves_the_cache(
    cache_config: Callable[..., CacheConfig], clock: FakeClock
) -> None:
    remote = repo("remote", MemoryRemoteStore(), cache_config(), clock)
    async with closing(remote):
        await remote.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
        assert (await remote.get_hash_record("/a")).current_hash == "h1"
        with pytest.raises(KeyError):
            async with remote.transaction() as tx:
                await tx.insert_or_update_hash({"path": "/a", "current_hash": "h2"})
                # Inside: the transaction's own write, not the cache's entry.
                assert (await tx.get_hash_record("/a")).current_hash == "h2"
                raise KeyError
        before = stats(remote)
        assert before.bypassed == 1
        assert (await remote.get_hash_record("/a")).current_hash == "h1"
        after = stats(remote)
        assert (after.hits, after.misses) == (before.hits + 1, before.misses)  # untouched
        async with remote.transaction() as tx:
            await tx.insert_or_update_hash({"path": "/a", "current_hash": "h3"})
            await tx.set_target_hash("/b", "h1")
        assert (await remote.get_hash_record("/a")).current_hash == "h3"


@pytest.mark.asyncio
async def test_a_client_transaction_joins_and_invalidates_on_commit(clock: FakeClock) -> None:
    cfg = {"database": {"remote_type": "local",
                        "remote_config": {"cache": {"backend": "memory"}}}}  # fmt: skip
    async with DBClientFactory(cfg, clock=clock).create_client() as db:
        assert await db.get_hash_record("/a") is None
        async with db.transaction():
            await db.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
            assert await db.get_single_field("/a", "current_hash") == "h1"
        assert await db.get_single_field("/a", "current_hash") == "h1"
        assert db.cache_stats()["remote"].bypassed == 1


# ------------------------------------------------------------- single flight, races


@pytest.mark.asyncio
async def test_concurrent_misses_make_one_database_read(
    cache_config: Callable[..., CacheConfig], clock: FakeClock
) -> None:
    store = Gated(MemoryRemoteStore())
    remote = repo("remote", store, cache_config(), clock)
    core_store = Gated(MemoryCoreStore())
    core = repo("core", core_store, cache_config(), clock)
    async with closing(remote, core):
        store.hold = release = asyncio.Event()
        readers = [asyncio.create_task(remote.get_hash_record("/a")) for _ in range(20)]
        await store.holding.wait()
        # Every reader is past its lookup and waits on the one read: a condition, no sleep.
        await until(lambda: stats(remote).coalesced >= 19)
        release.set()
        assert await asyncio.gather(*readers) == [None] * 20
        assert store.reads == 1 and stats(remote).misses == 1

        core_store.hold = release = asyncio.Event()
        pollers = [asyncio.create_task(core.get_dashboard_content()) for _ in range(50)]
        await core_store.holding.wait()
        await until(lambda: stats(core).coalesced >= 49)
        release.set()
        assert len(set(await asyncio.gather(*pollers))) == 1
        assert core_store.reads == 1


@pytest.mark.asyncio
async def test_a_read_that_raced_a_write_never_puts_the_old_value_back(
    cache_config: Callable[..., CacheConfig], clock: FakeClock
) -> None:
    store = Gated(MemoryRemoteStore())
    remote = repo("remote", store, cache_config(), clock)
    async with closing(remote):
        await remote.insert_or_update_hash({"path": "/a", "current_hash": "old"})
        store.hold = release = asyncio.Event()
        slow = asyncio.create_task(remote.get_hash_record("/a"))
        await store.holding.wait()  # it has read "old" and not stored it yet
        await remote.insert_or_update_hash({"path": "/a", "current_hash": "new"})
        # A read after the write does not join the read from before it (which waits for
        # the test: joining it would never return; the bound only turns that into a
        # failure).
        async with asyncio.timeout(60):
            assert (await remote.get_hash_record("/a")).current_hash == "new"
        release.set()
        assert (await slow).current_hash == "old"  # concurrent with the write: allowed
        assert stats(remote).discarded_fills == 1
        assert (await remote.get_hash_record("/a")).current_hash == "new"
        assert (await remote.get_single_field("/a", "current_hash")) == "new"


@pytest.mark.asyncio
async def test_a_cancelled_reader_does_not_cancel_the_read_for_the_others(
    clock: FakeClock,
) -> None:
    store = Gated(MemoryRemoteStore())
    remote = repo("remote", store, config("memory"), clock)
    async with closing(remote):
        store.hold = release = asyncio.Event()
        first = asyncio.create_task(remote.get_hash_record("/a"))
        await store.holding.wait()
        second = asyncio.create_task(remote.get_hash_record("/a"))
        await until(lambda: stats(remote).coalesced >= 1)
        first.cancel()
        release.set()
        assert await second is None
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await remote.get_hash_record("/a") is None
        assert store.reads == 1


# ------------------------------------------------------- bounded memory, staleness


@pytest.mark.asyncio
async def test_least_recently_used_entries_are_evicted(clock: FakeClock) -> None:
    store = Gated(MemoryRemoteStore())
    remote = repo("remote", store, config("memory", max_entries=2), clock)
    async with closing(remote):
        for path in ("/a", "/b", "/a", "/c"):  # /b is the least recently used at /c
            await remote.get_hash_record(path)
        assert (stats(remote).evictions, stats(remote).entries) == (1, 2)
        reads = store.reads
        await remote.get_hash_record("/a")
        assert store.reads == reads
        await remote.get_hash_record("/b")
        assert store.reads == reads + 1


@pytest.mark.asyncio
async def test_memory_entries_live_at_most_ttl(clock: FakeClock) -> None:
    shared = MemoryRemoteStore()
    mine = repo("remote", shared, config("memory"), clock)
    other = repo("remote", shared, config("memory"), clock)
    async with closing(mine, other):
        assert await mine.get_hash_record("/a") is None
        await other.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
        clock.advance(29.999)
        assert await mine.get_hash_record("/a") is None  # another client's write: within ttl
        clock.advance(0.001)
        assert (await mine.get_hash_record("/a")).current_hash == "h1"
        assert stats(mine).expired == 1


@pytest.mark.asyncio
async def test_redis_clients_see_each_others_writes_on_their_next_read(
    redis_server: PrivateRedis, clock: FakeClock
) -> None:
    shared = MemoryCoreStore()
    cfg = config("redis", redis_server.url)
    a, b = repo("core", shared, cfg, clock), repo("core", shared, cfg, clock)
    async with closing(a, b):
        assert await a.get_hash_record_count() == 0
        assert await b.get_hash_record_count() == 0
        assert await a.get_hash_record_count() == 0
        assert stats(b).redis_hits == 1
        await b.put_site_heartbeat("s1", hash_record_count=7)
        assert await a.get_hash_record_count() == 7  # no clock move
        assert await b.get_hash_record_count() == 7


@pytest.mark.asyncio
async def test_redis_entries_also_live_at_most_ttl(
    redis_server: PrivateRedis, clock: FakeClock
) -> None:
    shared = MemoryRemoteStore()
    cfg = config("redis", redis_server.url)
    a = repo("remote", shared, cfg, clock)
    async with closing(a):
        assert await a.get_hash_record("/a") is None
        await shared.upsert_record(HashRecord(path="/a", current_hash="h"), 0)  # under it
        assert await a.get_hash_record("/a") is None
        clock.advance(30)
        assert (await a.get_hash_record("/a")).current_hash == "h"


# --------------------------------------------------------------- Redis failures


@pytest.mark.asyncio
async def test_redis_down_reads_go_to_the_database_counted_and_logged_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    monotonic = FakeMonotonic()
    shared = MemoryRemoteStore()
    cfg = config("redis", f"redis://127.0.0.1:{free_port()}/0", retry_interval=5.0)
    a = repo("remote", shared, cfg, clock, monotonic)
    async with closing(a):
        with caplog.at_level(logging.INFO, logger="async_db_client"):
            for n in range(3):
                await a.insert_or_update_hash({"path": "/a", "current_hash": f"h{n}"})
                assert await a.get_single_field("/a", "current_hash") == f"h{n}"
                monotonic.now += 10  # past the retry interval: Redis is tried again
        assert stats(a).redis_errors >= 3
        assert stats(a).redis_available is False
        warnings = [r for r in caplog.records if "Redis" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


@pytest.mark.asyncio
async def test_a_redis_that_does_not_answer_costs_a_bounded_wait(clock: FakeClock) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # reads nothing, answers nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    shared = MemoryRemoteStore()
    a = repo("remote", shared, config("redis", f"redis://127.0.0.1:{port}/0",
                                      redis_timeout=0.05), clock)  # fmt: skip
    try:
        async with closing(a):
            await a.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
            assert await a.get_single_field("/a", "current_hash") == "h1"
            assert stats(a).redis_errors >= 1
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_redis_killed_and_restarted_no_error_and_no_stale_read(clock: FakeClock) -> None:
    shared_remote, shared_core = MemoryRemoteStore(), MemoryCoreStore()
    with PrivateRedis() as server:
        cfg = config("redis", server.url, ttl=3600.0, retry_interval=1.0)
        monotonic = FakeMonotonic()
        a = repo("remote", shared_remote, cfg, clock, monotonic)
        b = repo("remote", shared_remote, cfg, clock, monotonic)
        core_a = repo("core", shared_core, cfg, clock, monotonic)
        core_b = repo("core", shared_core, cfg, clock, monotonic)
        async with closing(a, b, core_a, core_b):
            await a.insert_or_update_hash({"path": "/p", "current_hash": "h1"})
            await core_a.put_site_heartbeat("s1", hash_record_count=1)
            for client in (a, b, a, b):
                assert (await client.get_hash_record("/p")).current_hash == "h1"
            for client in (core_a, core_b, core_a):
                assert await client.get_hash_record_count() == 1
            assert stats(a).hits >= 1 and stats(b).redis_hits >= 1

            server.kill()
            for client in (a, b):  # no error: the database answers
                assert (await client.get_hash_record("/p")).current_hash == "h1"
            await b.insert_or_update_hash({"path": "/p", "current_hash": "h2"})  # lost
            await core_b.put_site_heartbeat("s1", hash_record_count=2)  # lost too
            for client in (a, b):
                assert (await client.get_hash_record("/p")).current_hash == "h2"
            assert await core_a.get_hash_record_count() == 2
            assert stats(b).redis_errors >= 1

            server.start()  # empty, on the same port
            monotonic.now += 10  # past every retry interval
            for _ in range(3):
                for client in (a, b):
                    assert (await client.get_hash_record("/p")).current_hash == "h2"
                for client in (core_a, core_b):
                    assert await client.get_hash_record_count() == 2
            assert stats(a).redis_available and stats(b).redis_available
            await a.insert_or_update_hash({"path": "/p", "current_hash": "h3"})
            assert (await b.get_hash_record("/p")).current_hash == "h3"
            hits = stats(b).hits
            assert (await b.get_hash_record("/p")).current_hash == "h3"
            assert stats(b).hits == hits + 1  # Redis in use again


@pytest.mark.asyncio
async def test_an_invalidation_lost_to_a_redis_outage_voids_every_shared_value(
    redis_server: PrivateRedis, clock: FakeClock
) -> None:
    """A writer whose increment did not reach Redis replaces the epoch before it uses
    Redis again: values others stored under the old epoch are never read again."""
    monotonic_a, monotonic_b = FakeMonotonic(), FakeMonotonic()
    shared = MemoryRemoteStore()
    cfg = config("redis", redis_server.url)
    a = repo("remote", shared, cfg, clock, monotonic_a)
    b = repo("remote", shared, cfg, clock, monotonic_b)
    async with closing(a, b):
        await a.insert_or_update_hash({"path": "/p", "current_hash": "h1"})
        assert (await a.get_hash_record("/p")).current_hash == "h1"
        layer = b.store.layer
        layer._retry_at = monotonic_b.now + 1  # b has just failed to reach Redis
        await b.insert_or_update_hash({"path": "/p", "current_hash": "h2"})
        assert (await b.get_hash_record("/p")).current_hash == "h2"  # from the database
        monotonic_b.now += 2
        assert (await b.get_hash_record("/p")).current_hash == "h2"  # epoch replaced
        assert (await a.get_hash_record("/p")).current_hash == "h2"


# ----------------------------------------------------------------------- the outbox


class _Down:
    """A remote store whose writes fail as an unreachable database's do, while ``down``."""

    def __init__(self, store: MemoryRemoteStore) -> None:
        self.store = store
        self.down = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        if self.down:
            raise DBConnectionError("database unreachable")
        await self.store.upsert_record(record, now)


class _HeldReplay:
    """The replayer's store: applies nothing until ``go`` is set (from the test)."""

    def __init__(self, store: MemoryRemoteStore, go: threading.Event) -> None:
        self.store = store
        self.go = go

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        await asyncio.to_thread(self.go.wait, 60)
        await self.store.upsert_record(record, now)


@pytest.mark.asyncio
async def test_queued_writes_invalidate_and_so_do_their_replays(
    tmp_path: Path, clock: FakeClock, cache_config: Callable[..., CacheConfig]
) -> None:
    data = MemoryRemoteStore()
    go = threading.Event()
    path = str(tmp_path / "outbox.db")
    outbox = Outbox(
        _Down(data),
        path,
        make_store=lambda pools: ReplayInvalidation(_HeldReplay(data, go), path),
    )
    remote = RemoteRepository(cached_store("remote", outbox, cache_config(), clock), clock=clock)
    async with closing(remote):
        assert await remote.get_hash_record("/a") is None
        assert await remote.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
        assert await outbox.pending() == 1
        assert stats(remote).invalidations == 1
        # Not in the database yet: the cache may hold None again, as the database says.
        assert await remote.get_hash_record("/a") is None
        go.set()
        assert await outbox.flush(timeout=60) == 0
        assert (await remote.get_hash_record("/a")).current_hash == "h1"


# ------------------------------------------------------------------ construction


def _primitives(protocol: type) -> set[str]:
    names = set()
    for klass in protocol.__mro__:
        if klass.__module__.startswith("async_db_client.tiers"):
            names |= {n for n, v in vars(klass).items() if inspect.isfunction(v)}
    return {n for n in names if not n.startswith("_")}


@pytest.mark.parametrize(
    ("tier", "protocol"),
    [("remote", RemoteStore), ("core", CoreStore), ("pipeline", PipelineStore)],
)
def test_every_store_primitive_is_intercepted_or_known_to_be_uncached(
    tier: str, protocol: type
) -> None:
    """A new primitive in a store protocol fails here until it is either intercepted by
    the cache (a write that invalidates, a cached read) or listed in UNCACHED."""
    wrapper = CACHED_STORES[tier]
    ours = [k for k in wrapper.__mro__ if k.__module__ == "async_db_client.cache.store"]
    intercepted = {n for n in _primitives(protocol) if any(n in vars(k) for k in ours)}
    assert _primitives(protocol) - intercepted == UNCACHED[tier]
    assert not intercepted & UNCACHED[tier]


def test_the_sync_facade_threads_share_one_memory_cache() -> None:
    cfg = {"database": {"remote_type": "local",
                        "remote_config": {"cache": {"backend": "memory"}}}}  # fmt: skip
    with SyncFactory(cfg).create_client() as db:
        assert db.get_hash_record("/a") is None
        results: list[Any] = []

        def writer() -> None:
            db.insert_or_update_hash({"path": "/a", "current_hash": "h1"})
            results.append(db.get_single_field("/a", "current_hash"))

        thread = threading.Thread(target=writer)
        thread.start()
        thread.join()
        assert results == ["h1"]
        assert db.get_single_field("/a", "current_hash") == "h1"  # this thread's client
        assert db.cache_stats()["remote"].invalidations == 1
