"""With the cache on, every answer is one the database gave within the rules.

A hypothesis state machine drives two cached clients and one uncached client (the
oracle) over the same database: random writes of all three tiers by either cached
client, reads, transactions that commit or roll back, and clock moves (the fake clock
the caches' ``ttl`` is measured by). After each read by a cached client the oracle
reads the same thing at once; those answers are the history of what the database held
at each step. A cached answer must be in that history, no older than the rules allow:

* never older than the reader's own last write of that key (own writes: at once),
* with ``redis``, never older than anybody's last write of that key (next read),
* never read more than ``ttl`` ago (other writers, with ``memory``).

Run on the in-memory stores and on MariaDB, with the memory and the Redis cache (a
private ``redis-server``; each example has its own key prefix and empty tables).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from async_db_client import FakeClock
from async_db_client.backends.memory import MemoryCoreStore, MemoryPipelineStore, MemoryRemoteStore
from async_db_client.backends.registry import build_tier
from async_db_client.cache import LocalCache
from async_db_client.cache.layers import make_layer
from async_db_client.cache.store import CACHED_STORES
from async_db_client.config import CacheConfig, MySQLConfig
from async_db_client.pool_manager import PoolManager
from async_db_client.tiers import CoreRepository, PipelineRepository, RemoteRepository
from tests.conftest import START
from tests.support.live import TABLES, empty_tables, mysql_config

TTL = 10.0
TIERS = ("remote", "core", "pipeline")
REPOS: dict[str, Any] = {
    "remote": RemoteRepository,
    "core": CoreRepository,
    "pipeline": PipelineRepository,
}
MEMORY_STORES: dict[str, Any] = {
    "remote": MemoryRemoteStore,
    "core": MemoryCoreStore,
    "pipeline": MemoryPipelineStore,
}
PATHS = ["/p0", "/p1", "/p2"]
HASHES = ["h1", "h2", "h3"]
SITES = ["s1", "s2"]
LEVELS = ["CRITICAL", "INFO"]
FIELDS = ["current_hash", "prev_hash", "target_hash", "current_dtg_latest", "prev_dtg_latest"]
#: Clock moves: within ttl, exactly ttl, past it, and onto the dashboard's 35-minute edge.
MOVES = [0.5, 3.0, TTL - 0.5, TTL, TTL + 1.0, 35 * 60.0]
CLIENTS = st.sampled_from([0, 1])


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value


class World:
    """The clients of one example: ``cached[i][tier]`` and ``oracle[tier]``."""

    def __init__(self, db: str, cache: CacheConfig, database: str | None) -> None:
        self.clock = FakeClock(START)
        self.cached: list[dict[str, Any]] = []
        self.oracle: dict[str, Any] = {}
        self.pools: list[PoolManager] = []
        self.db = db
        self.database = database
        self.cache = cache

    async def open(self) -> None:
        if self.db == "memory":
            raw = {tier: MEMORY_STORES[tier]() for tier in TIERS}
            self.oracle = {t: REPOS[t](raw[t], clock=self.clock) for t in TIERS}
            for _ in range(2):
                self.cached.append({t: self._cached(t, raw[t]) for t in TIERS})
            return
        assert self.database is not None
        tier_config = mysql_config(self.database, pool={"min_size": 0, "max_size": 4})
        cache = self.cache.model_dump(mode="python")
        if self.cache.redis_url is not None:
            cache["redis_url"] = self.cache.redis_url.get_secret_value()
        for with_cache in (False, True, True):
            pools = PoolManager()
            self.pools.append(pools)
            config = MySQLConfig(**tier_config, cache=cache if with_cache else None)
            repos = {t: build_tier(t, config, pools, self.clock) for t in TIERS}
            if with_cache:
                self.cached.append(repos)
            else:
                self.oracle = repos
        for tier in TIERS:
            await self.oracle[tier].migrate()
            empty_tables(self.database, tier)

    def _cached(self, tier: str, store: Any) -> Any:
        local = LocalCache(self.cache.max_entries, self.cache.ttl)
        layer = make_layer(tier, self.cache, local)
        return REPOS[tier](CACHED_STORES[tier](store, layer, clock=self.clock), clock=self.clock)

    async def close(self) -> None:
        for repos in [*self.cached, self.oracle]:
            for repo in repos.values():
                await repo.aclose()
        for pools in self.pools:
            await pools.aclose()


def machine(db: str, cache: CacheConfig, database: str | None) -> type[RuleBasedStateMachine]:
    shared_redis = cache.backend == "redis"

    class CacheDifferential(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            prefix = {"key_prefix": f"d{secrets.token_hex(5)}"} if shared_redis else {}
            self.world = World(db, cache.model_copy(update=prefix), database)
            self.run(self.world.open())
            self.step = 0
            self.times: list[float] = []
            self.history: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
            self.own: list[dict[str, int]] = [{}, {}]
            self.anyone: dict[str, int] = {}
            self.reads = 0

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        def teardown(self) -> None:
            try:
                self.run(self.world.close())
            finally:
                self.loop.close()

        # ------------------------------------------------------------ the bookkeeping

        def _tick(self) -> None:
            self.step += 1
            self.times.append(self.world.clock.now().timestamp())

        def _wrote(self, client: int, groups: list[str]) -> None:
            for group in groups:
                self.own[client][group] = self.step
                self.anyone[group] = self.step

        def _allowed(self, client: int, entry: tuple[Any, ...], group: str, now: Any) -> list[Any]:
            """The oracle's answers that a cached read may give now (``now`` recorded)."""
            floor = self.own[client].get(group, -1)
            if shared_redis:
                floor = max(floor, self.anyone.get(group, -1))
            oldest = self.times[-1] - TTL
            answers = self.history.setdefault(entry, [])
            answers.append((self.step, now))
            return [
                answer for step, answer in answers if step > floor and self.times[step - 1] > oldest
            ]

        def _check(
            self, client: int, entry: tuple[Any, ...], group: str, got: Any, truth: Any
        ) -> None:
            self.reads += 1
            allowed = self._allowed(client, entry, group, _dump(truth))
            assert _dump(got) in allowed, (
                f"client {client} read {entry} = {_dump(got)!r}; the database said "
                f"{_dump(truth)!r} now, and within the rules one of {allowed!r}"
            )

        def _record_check(self, client: int, path: str, field: str | None) -> None:
            self._tick()
            repo = self.world.cached[client]["remote"]
            oracle = self.world.oracle["remote"]
            if field is None:
                got = self.run(repo.get_hash_record(path))
                self._check(client, ("r", path), "r:" + path, got,
                            self.run(oracle.get_hash_record(path)))  # fmt: skip
                return
            got = self.run(repo.get_single_field(path, field))
            truth = self.run(oracle.get_hash_record(path))
            allowed = self._allowed(client, ("r", path), "r:" + path, _dump(truth))
            fields = [None if record is None else record[field] for record in allowed]
            self.reads += 1
            assert got in fields, f"client {client} read {path}.{field} = {got!r}: not in {fields}"

        # -------------------------------------------------------------------- reads

        @rule(client=CLIENTS, path=st.sampled_from(PATHS))
        def read_record(self, client: int, path: str) -> None:
            self._record_check(client, path, None)

        @rule(client=CLIENTS, path=st.sampled_from(PATHS), field=st.sampled_from(FIELDS))
        def read_field(self, client: int, path: str, field: str) -> None:
            self._record_check(client, path, field)

        @rule(client=CLIENTS, what=st.sampled_from(["dashboard", "count", "sites", *LEVELS]))
        def read_core(self, client: int, what: str) -> None:
            self._tick()
            repo, oracle = self.world.cached[client]["core"], self.world.oracle["core"]
            if what == "dashboard":
                call: Any = lambda r: r.get_dashboard_content()  # noqa: E731
            elif what == "count":
                call = lambda r: r.get_hash_record_count()  # noqa: E731
            elif what == "sites":
                call = lambda r: r.get_sites()  # noqa: E731
            else:
                call = lambda r: r.get_log_count_last_24h(what)  # noqa: E731
            got = self.run(call(repo))
            self._check(client, ("core", what), "core", got, self.run(call(oracle)))

        @rule(client=CLIENTS)
        def read_official(self, client: int) -> None:
            self._tick()
            got = self.run(self.world.cached[client]["pipeline"].get_official_sites())
            truth = self.run(self.world.oracle["pipeline"].get_official_sites())
            self._check(client, ("official",), "official", got, truth)

        # ------------------------------------------------------------------- writes

        @rule(client=CLIENTS, path=st.sampled_from(PATHS), hash_=st.sampled_from(HASHES))
        def put(self, client: int, path: str, hash_: str) -> None:
            self._tick()
            repo = self.world.cached[client]["remote"]
            assert self.run(repo.insert_or_update_hash({"path": path, "current_hash": hash_}))
            self._wrote(client, ["r:" + path])

        @rule(
            client=CLIENTS,
            items=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(HASHES)),
                           min_size=1, max_size=4),
        )  # fmt: skip
        def bulk(self, client: int, items: list[tuple[str, str]]) -> None:
            self._tick()
            records = [{"path": p, "current_hash": h} for p, h in items]
            result = self.run(self.world.cached[client]["remote"].insert_or_update_hashes(records))
            assert result.stored == len(records)
            self._wrote(client, ["r:" + p for p, _ in items])

        @rule(client=CLIENTS, path=st.sampled_from(PATHS),
              hash_=st.sampled_from([*HASHES, None]))  # fmt: skip
        def target(self, client: int, path: str, hash_: str | None) -> None:
            self._tick()
            self.run(self.world.cached[client]["remote"].set_target_hash(path, hash_))
            self._wrote(client, ["r:" + path])

        @rule(client=CLIENTS, path=st.sampled_from(PATHS), hash_=st.sampled_from(HASHES))
        def restore(self, client: int, path: str, hash_: str) -> None:
            self._tick()
            stamp = int(self.times[-1])
            record = {"path": path, "current_hash": hash_, "prev_hash": "h1",
                      "current_dtg_first": stamp - 5, "current_dtg_latest": stamp}  # fmt: skip
            self.run(self.world.cached[client]["remote"].restore_hash_records([record]))
            self._wrote(client, ["r:" + path])

        @rule(
            client=CLIENTS,
            kind=st.sampled_from(["heartbeat", "root", "baseline", "log"]),
            site=st.sampled_from(SITES),
            hash_=st.sampled_from(HASHES),
            number=st.integers(0, 3),
        )
        def core_write(self, client: int, kind: str, site: str, hash_: str, number: int) -> None:
            self._tick()
            self.run(self._core_write(self.world.cached[client]["core"], kind, site, hash_,
                                      number))  # fmt: skip
            self._wrote(client, ["core"])

        async def _core_write(self, repo: Any, kind: str, site: str, hash_: str, n: int) -> None:
            if kind == "heartbeat":
                await repo.put_site_heartbeat(site, hash_record_count=n)
            elif kind == "root":
                await repo.put_site_root_hash(site, hash_)
            elif kind == "baseline":
                await repo.put_baseline(hash_)
            else:
                await repo.put_core_log(
                    {"summary_message": "m", "log_level": LEVELS[n % 2], "site_id": site}
                )

        @rule(client=CLIENTS, site=st.sampled_from(SITES), register=st.booleans())
        def pipeline_write(self, client: int, site: str, register: bool) -> None:
            self._tick()
            repo = self.world.cached[client]["pipeline"]
            if register:
                self.run(repo.register_official_site(site))
                self._wrote(client, ["official"])
            else:  # writes that touch nothing cached
                self.run(repo.enqueue_pipeline_update("/p0", site))
                self.run(repo.put_pipeline_site_completion(site))

        @rule(
            client=CLIENTS,
            tier=st.sampled_from(TIERS),
            items=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(HASHES)),
                           min_size=1, max_size=3),
            commit=st.booleans(),
        )  # fmt: skip
        def transaction(
            self, client: int, tier: str, items: list[tuple[str, str]], commit: bool
        ) -> None:
            self._tick()
            repo = self.world.cached[client][tier]
            groups = self.run(self._transaction(repo, tier, items, commit))
            if commit:
                self._wrote(client, groups)

        async def _transaction(
            self, repo: Any, tier: str, items: list[tuple[str, str]], commit: bool
        ) -> list[str]:
            groups: list[str] = []
            try:
                async with repo.transaction() as tx:
                    for n, (path, hash_) in enumerate(items):
                        if tier == "remote":
                            await tx.insert_or_update_hash({"path": path, "current_hash": hash_})
                            # Inside, the transaction's own write: the cache is bypassed.
                            assert await tx.get_single_field(path, "current_hash") == hash_
                            groups.append("r:" + path)
                        elif tier == "core":
                            await tx.put_site_heartbeat(SITES[n % 2], hash_record_count=n + 1)
                            assert (await tx.get_hash_record_count()) >= n + 1
                            groups.append("core")
                        else:
                            await tx.register_official_site(SITES[n % 2])
                            assert SITES[n % 2] in await tx.get_official_sites()
                            groups.append("official")
                    if not commit:
                        raise _RollBack
            except _RollBack:
                return []
            return groups

        # ---------------------------------------------------------------- the clock

        @rule(seconds=st.sampled_from(MOVES))
        def clock(self, seconds: float) -> None:
            self.world.clock.advance(seconds)

        @invariant()
        def nothing_failed(self) -> None:
            for repos in self.world.cached:
                for repo in repos.values():
                    stats = repo.store.stats()
                    assert stats.redis_errors == 0, stats

    return CacheDifferential


class _RollBack(Exception):
    pass


CASES = [
    pytest.param("memory", "memory", id="memory-db-memory-cache"),
    pytest.param("memory", "redis", id="memory-db-redis-cache"),
    pytest.param("mysql", "memory", id="mariadb-memory-cache", marks=pytest.mark.live),
    pytest.param("mysql", "redis", id="mariadb-redis-cache", marks=pytest.mark.live),
]


@pytest.mark.parametrize(("db", "backend"), CASES)
def test_cached_answers_are_the_databases_within_the_rules(
    db: str, backend: str, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("mysql_database") if db == "mysql" else None
    extra: dict[str, Any] = {}
    if backend == "redis":
        # A generous bound: a Redis error would fail the invariant, not the rules.
        extra = {"redis_url": request.getfixturevalue("redis_server").url, "redis_timeout": 5.0}
    cache = CacheConfig(backend=backend, ttl=TTL, **extra)  # type: ignore[arg-type]
    examples = 40 if db == "memory" else 8
    run_state_machine_as_test(
        machine(db, cache, database),
        settings=settings(
            max_examples=examples,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    if database is not None:
        for tier in TIERS:
            assert TABLES[tier]
            empty_tables(database, tier)
