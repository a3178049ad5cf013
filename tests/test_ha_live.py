"""Several servers per tier, for real: a primary with two GTID replicas and a 3-node
Galera cluster of private mariadbds (tests/support/topologies.py), faults injected by
killing, freezing, lagging, demoting and promoting them.

What is checked: roles are discovered whatever the configured order; eventual reads land
on replicas (counted by the servers' ``Com_select``, which the router's own probes do not
touch: they use SHOW); read_your_writes holds with replicas stopped or not; a lagging or
dead replica gets no reads and reads never fail for it; a primary that turns read-only is
not written to again; a killed primary is replaced by the replica the test promotes, with
the same client; with semi-synchronous replication no acknowledged write is lost in that
failover (with asynchronous replication the loss is counted and reported: the server's
promise, not the library's); a Galera node killed or frozen during a bulk write from
several tasks loses no acknowledged write, and rejoins. Every fault test audits the rows:
nothing lost, nothing doubled, only documented errors, each call within its bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from async_db_client import DBClientFactory, DBInstance, NoServerError
from async_db_client.routing import PROBE_TIMEOUT
from tests.support.backends import HA_PASSWORD, HA_USER
from tests.support.live import MYSQL, connect, create_database, drop_database, require_mysql
from tests.support.mariadb_server import PrivateMariaDB
from tests.support.reliability import (
    DOCUMENTED,
    Outcome,
    audit,
    bulk_under_fault,
    call_bound,
    fault_pool,
    report,
)
from tests.support.topologies import (
    GaleraTopology,
    Node,
    ReplicationTopology,
    Topology,
    TopologyError,
)

pytestmark = [pytest.mark.live, pytest.mark.slow]

USER, PASSWORD = HA_USER, HA_PASSWORD
PATHS = [f"/ha/d{i // 50:02d}/r{i:04d}" for i in range(1_200)]
#: The fault starts once this many calls of a bulk write are done.
START_AFTER = 6


def _database(topology: Topology) -> Iterator[str]:
    topology.create_user(USER, PASSWORD)
    name = topology.create_database()
    try:
        yield name
    finally:
        with contextlib.suppress(TopologyError, pymysql.err.MySQLError):
            topology.drop_database(name)


@pytest.fixture
def repl_db(replication: ReplicationTopology) -> Iterator[str]:
    yield from _database(replication)


@pytest.fixture
def galera_db(galera: GaleraTopology) -> Iterator[str]:
    yield from _database(galera)


def config(
    topology: Topology,
    database: str,
    mode: str,
    *,
    hosts: list[str] | None = None,
    pool: dict[str, Any] | None = None,
    **remote: Any,
) -> dict[str, Any]:
    return {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "hosts": topology.hosts if hosts is None else hosts,
                "ha_mode": mode,
                "database": database,
                "user": USER,
                "password": PASSWORD,
                "pool": {"min_size": 1, "max_size": 8, "acquire_timeout": 10, **(pool or {})},
                **remote,
            },
        }
    }


@contextlib.asynccontextmanager
async def client(cfg: dict[str, Any]) -> AsyncIterator[DBInstance]:
    async with DBClientFactory(cfg).create_client() as db:
        await db.migrate()
        yield db


def record(path: str, version: str) -> dict[str, Any]:
    return {"path": path, "current_hash": version, "files": ["f"]}


def ha_call_bound(pool: dict[str, Any]) -> float:
    """A call's bound with several servers: the one-server bound, plus, per attempt, the
    wait for a server to take it (connect_retry_budget) and one discovery's probe."""
    return call_bound(pool) + (pool["retry_attempts"] + 1) * (
        pool["connect_retry_budget"] + PROBE_TIMEOUT
    )


def rows_on(node: Node, database: str) -> dict[str, tuple[str, str | None]]:
    """The hash records on one node (checked: never a path twice)."""
    with node.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COUNT(DISTINCT path_key) FROM `{database}`.hash_records")
        total, distinct = cursor.fetchone()
        assert total == distinct
        cursor.execute(f"SELECT path, current_hash, prev_hash FROM `{database}`.hash_records")
        return {path: (current, prev) for path, current, prev in cursor.fetchall()}


def selects(topology: Topology) -> dict[str, int]:
    return {node.address: topology.com_select(node) for node in topology.nodes}


def hosts_of(described: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {host["address"]: host for host in described["remote"]["hosts"]}


async def until(db: DBInstance, condition: Any, what: str, timeout: float = 120.0) -> None:
    """Rediscover until ``condition(hosts)`` holds (a hang detector, not a speed test)."""
    async with asyncio.timeout(timeout):
        # Polling: the state is the servers', which no event of this process announces.
        while not condition(hosts_of(await db.topology())):  # noqa: ASYNC110
            await asyncio.sleep(0.2)


# ------------------------------------------------------------------------ replication


@pytest.mark.asyncio
async def test_roles_are_discovered_whatever_the_order(
    replication: ReplicationTopology, repl_db: str
) -> None:
    listed = list(reversed(replication.hosts))  # the replicas first
    async with client(config(replication, repl_db, "replication", hosts=listed)) as db:
        assert await db.insert_or_update_hash(record("/a", "h1"))
        described = await db.topology()
        hosts = hosts_of(described)
        assert described["remote"]["writer"] == replication.primary.address
        assert hosts[replication.primary.address]["role"] == "primary"
        assert hosts[replication.primary.address]["serves"] == ["writes"]
        for replica in replication.replicas:
            assert hosts[replica.address]["role"] == "replica"
            assert hosts[replica.address]["serves"] == ["reads"]
            assert hosts[replica.address]["lag_s"] is not None
        health = await db.health_check()
        assert health["local_db"] is True
        assert all(health[f"local_db@{address}"] for address in listed)
        roles = sorted(stats.role or "" for stats in db.pool_stats().values())
        assert roles == ["primary", "replica", "replica"]
    replication.wait_replicated()
    for node in replication.nodes:
        assert rows_on(node, repl_db)["/a"] == ("h1", None)


@pytest.mark.asyncio
async def test_eventual_reads_land_on_replicas(
    replication: ReplicationTopology, repl_db: str
) -> None:
    cfg = config(replication, repl_db, "replication", read_consistency="eventual")
    async with client(cfg) as db:
        await db.insert_or_update_hashes([record(f"/p{i}", "h") for i in range(50)])
        replication.wait_replicated()
        await db.topology()
        before = selects(replication)
        for i in range(300):
            assert await db.get_hash_record(f"/p{i % 50}") is not None
        after = selects(replication)
    spent = {address: after[address] - before[address] for address in after}
    on_replicas = sum(spent[r.address] for r in replication.replicas)
    assert sum(spent.values()) >= 300
    assert on_replicas / sum(spent.values()) >= 0.9, spent
    assert all(spent[r.address] >= 100 for r in replication.replicas), spent  # both used
    report("replication: eventual reads on replicas", reads=300, com_select=spent)


@pytest.mark.asyncio
@pytest.mark.parametrize("stopped", [0, 1, 2])
async def test_read_your_writes_with_replicas_stopped_or_not(
    replication: ReplicationTopology, repl_db: str, stopped: int
) -> None:
    async with client(config(replication, repl_db, "replication")) as db:
        await db.topology()  # the client believes every replica is fit...
        for replica in replication.replicas[:stopped]:
            replication.stop_sql_thread(replica)  # ...and then some stop applying
        for i in range(40):
            assert await db.insert_or_update_hash(record("/ryw", f"h{i}"))
            got = await db.get_hash_record("/ryw")
            assert got is not None and got["current_hash"] == f"h{i}"
            assert await db.get_single_field("/ryw", "current_hash") == f"h{i}"
        counters = (await db.topology())["remote"]["counters"]
    if stopped == 0:
        assert counters["reads_spread"] > 0 and counters["gtid_waits"] > 0
    report(f"replication: read_your_writes, {stopped} replica(s) stopped", **counters)


@pytest.mark.asyncio
async def test_a_lagging_replica_gets_no_reads(
    replication: ReplicationTopology, repl_db: str
) -> None:
    lagging, fit = replication.replicas
    cfg = config(
        replication, repl_db, "replication", read_consistency="eventual", max_replication_lag=1.0
    )
    async with client(cfg) as db:
        await db.insert_or_update_hash(record("/lag", "h1"))
        replication.wait_replicated()
        # Real lag: the replica applies each event 60 s after the primary wrote it.
        lagging.execute("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=60", "START SLAVE")
        try:
            await db.insert_or_update_hash(record("/lag", "h2"))

            def behind(hosts: dict[str, dict[str, Any]]) -> bool:
                lag = hosts[lagging.address]["lag_s"]
                return lag is not None and lag > 1.0

            await until(db, behind, "the delayed replica lagging by more than 1 s")
            hosts = hosts_of(await db.topology())
            assert hosts[lagging.address]["serves"] == []
            assert "max_replication_lag" in hosts[lagging.address]["why"]
            replication.wait_replicated([fit])
            before = selects(replication)
            for _ in range(100):
                got = await db.get_hash_record("/lag")
                assert got is not None and got["current_hash"] == "h2"  # never the stale one
            after = selects(replication)
            assert after[lagging.address] == before[lagging.address]
            assert after[fit.address] - before[fit.address] >= 90
        finally:
            lagging.execute("STOP SLAVE", "CHANGE MASTER TO MASTER_DELAY=0", "START SLAVE")


@pytest.mark.asyncio
async def test_a_killed_replica_costs_no_read(
    replication: ReplicationTopology, repl_db: str
) -> None:
    victim = replication.replicas[0]
    cfg = config(replication, repl_db, "replication", read_consistency="eventual")
    async with client(cfg) as db:
        await db.insert_or_update_hashes([record(f"/k{i}", "h") for i in range(20)])
        replication.wait_replicated()
        await db.topology()
        for i in range(40):
            assert await db.get_hash_record(f"/k{i % 20}") is not None
        replication.kill(victim)
        for i in range(200):  # every read answers: a failed one runs again elsewhere
            assert await db.get_hash_record(f"/k{i % 20}") is not None
        hosts = hosts_of(await db.topology())
        assert hosts[victim.address]["role"] == "down" and hosts[victim.address]["serves"] == []
        assert (await db.health_check())[f"local_db@{victim.address}"] is False
        replication.start(victim)
        await until(db, lambda h: h[victim.address]["serves"] == ["reads"], "replica back")


@pytest.mark.asyncio
async def test_a_primary_turned_read_only_is_never_written_again(
    replication: ReplicationTopology, repl_db: str
) -> None:
    old = replication.primary
    new = replication.replicas[0]
    cfg = config(replication, repl_db, "replication", pool={"connect_retry_budget": 1.5})
    async with client(cfg) as db:
        assert await db.insert_or_update_hash(record("/ro", "h1"))
        old.execute("SET GLOBAL read_only=1")  # demoted behind the client's back
        with pytest.raises(NoServerError) as info:
            await db.insert_or_update_hash(record("/ro", "h2"))
        assert old.address in str(info.value) and PASSWORD not in str(info.value)
        assert (await db.topology())["remote"]["writer"] is None
        replication.promote(new)  # a switchover, unknown to the client
        assert await db.insert_or_update_hash(record("/ro", "h3"))
        assert (await db.topology())["remote"]["writer"] == new.address
        old.execute("SET GLOBAL read_only=0")  # writable again: the client keeps the new one
        assert await db.insert_or_update_hash(record("/ro", "h4"))
        assert (await db.topology())["remote"]["writer"] == new.address
    assert rows_on(new, repl_db)["/ro"] == ("h4", "h3")
    assert rows_on(old, repl_db)["/ro"] == ("h1", None)  # nothing went there by mistake


@pytest.mark.asyncio
async def test_a_switchover_unseen_by_the_client_moves_the_next_write(
    replication: ReplicationTopology, repl_db: str
) -> None:
    old, new = replication.primary, replication.replicas[1]
    async with client(config(replication, repl_db, "replication")) as db:
        assert await db.insert_or_update_hash(record("/sw", "h1"))
        old.execute("SET GLOBAL read_only=1")
        replication.promote(new)
        # The client still thinks ``old`` is the primary: its write is refused (1290),
        # the roles are found again, and the same call lands on the new primary.
        assert await db.insert_or_update_hash(record("/sw", "h2"))
        assert (await db.topology())["remote"]["counters"]["writer_changes"] == 2
    assert rows_on(new, repl_db)["/sw"] == ("h2", "h1")
    assert rows_on(old, repl_db)["/sw"] == ("h1", None)


def _most_advanced(replicas: list[Node]) -> Node:
    """The replica that received the most of the dead primary's binlog."""

    def received(node: Node) -> int:
        position = node.slave_status().get("Gtid_IO_Pos") or ""
        return max((int(p.split("-")[2]) for p in position.split(",") if p.strip()), default=-1)

    return max(replicas, key=received)


@dataclass
class Write:
    paths: list[str]
    version: str
    stored: bool
    error: str | None
    seconds: float
    finished_at: float


async def write_until(
    db: DBInstance,
    writes: list[Write],
    under_way: asyncio.Event,
    failed_over: asyncio.Event,
    *,
    tasks: int = 4,
    per_call: int = 50,
) -> None:
    """Bulk writes from ``tasks`` tasks into ``writes``, each cycling through its share of
    PATHS: version v2 until ``failed_over`` is set, v3 from then on, until every task has
    stored three calls of v3; ``under_way`` is set at the first stored call. Driven by
    the events, not by time: the writes outlast any failover."""

    async def worker(group: list[str]) -> None:
        chunks = [group[i : i + per_call] for i in range(0, len(group), per_call)]
        stored_after = 0
        n = 0
        while stored_after < 3:
            chunk = chunks[n % len(chunks)]
            n += 1
            version = "v3" if failed_over.is_set() else "v2"
            began = time.monotonic()
            try:
                result = await db.insert_or_update_hashes(record(p, version) for p in chunk)
                stored, error = result.stored == len(chunk), None
            except DOCUMENTED as exc:
                stored, error = False, type(exc).__name__
            now = time.monotonic()
            writes.append(Write(chunk, version, stored, error, now - began, now))
            if stored:
                under_way.set()
                stored_after += version == "v3"

    await asyncio.gather(*(worker(PATHS[i::tasks]) for i in range(tasks)))


def audit_failover(
    rows: dict[str, tuple[str, str | None]], writes: list[Write]
) -> dict[str, int]:
    """Every path is in a state the writes explain, never doubled; acknowledged v3 writes
    (after the failover) are all there; returns the counts, with the acknowledged v2
    writes that are not (lost with the old primary)."""
    possible = {("v1", None), ("v2", "v1"), ("v3", "v2"), ("v3", "v1")}
    odd = [p for p in PATHS if rows.get(p) not in possible]
    assert not odd, f"{len(odd)} records in an impossible state, e.g. {odd[:3]}"
    acked = {
        version: {p for w in writes if w.stored and w.version == version for p in w.paths}
        for version in ("v2", "v3")
    }
    lost_after = [p for p in acked["v3"] if rows[p][0] != "v3"]
    assert not lost_after, f"{len(lost_after)} writes acknowledged after the failover are lost"
    lost_before = [p for p in acked["v2"] if rows[p] not in {("v2", "v1"), ("v3", "v2")}]
    return {
        "records": len(PATHS),
        "calls": len(writes),
        "failed_calls": sum(1 for w in writes if not w.stored),
        "acknowledged_before_failover": len(acked["v2"]),
        "acknowledged_after_failover": len(acked["v3"]),
        "lost_before_failover": len(lost_before),
        "lost_after_failover": 0,
        "duplicated": 0,  # the path is the primary key; rows_on counted distinct keys
    }


@pytest.mark.asyncio
@pytest.mark.parametrize("semi_sync", [False, True], ids=["async", "semi-sync"])
async def test_primary_killed_and_a_replica_promoted(
    replication: ReplicationTopology, repl_db: str, semi_sync: bool
) -> None:
    pool = fault_pool(connect_retry_budget=2.0, min_size=1)
    old = replication.primary
    async with client(config(replication, repl_db, "replication", pool=pool)) as db:
        first = await bulk_under_fault(db, PATHS, "v1", tasks=4, per_call=50)
        assert not first.failed_calls
        replication.wait_replicated()
        if semi_sync:  # an acknowledged commit is on a replica; never falls back to async
            replication.set_semi_sync(True, timeout_ms=600_000)
        writes: list[Write] = []
        under_way, failed_over = asyncio.Event(), asyncio.Event()
        promoted: list[Node] = []
        moments: dict[str, float] = {}

        async def failover() -> None:
            await under_way.wait()
            moments["killed"] = time.monotonic()
            await asyncio.to_thread(replication.kill, old)
            target = _most_advanced(replication.replicas)
            await asyncio.to_thread(replication.promote, target)
            promoted.append(target)
            moments["promoted"] = time.monotonic()
            failed_over.set()

        await asyncio.gather(failover(), write_until(db, writes, under_way, failed_over))
        assert (await db.topology())["remote"]["writer"] == promoted[0].address
        rows = rows_on(promoted[0], repl_db)
    assert max(w.seconds for w in writes) <= ha_call_bound(pool)
    counts = audit_failover(rows, writes)
    if semi_sync:
        assert counts["lost_before_failover"] == 0
    resumed = min(w.finished_at for w in writes if w.stored and w.version == "v3")
    report(
        f"replication: primary killed, replica promoted ({'semi-sync' if semi_sync else 'async'})",
        **counts,
        errors=sorted({w.error for w in writes if w.error}),
        slowest_call_s=round(max(w.seconds for w in writes), 2),
        writes_resumed_after_promotion_s=round(resumed - moments["promoted"], 2),
    )


# ---------------------------------------------------------------------------- galera


@pytest.mark.asyncio
async def test_galera_reads_see_writes_made_through_another_node(
    galera: GaleraTopology, galera_db: str
) -> None:
    async with client(config(galera, galera_db, "galera")) as db:
        described = await db.topology()
        assert all(h["role"] == "synced" for h in described["remote"]["hosts"])
        assert described["remote"]["writer"] == galera.hosts[0]
        before = selects(galera)
        for i in range(60):
            assert await db.insert_or_update_hash(record("/g", f"h{i}"))
            got = await db.get_hash_record("/g")  # round-robin: mostly another node
            assert got is not None and got["current_hash"] == f"h{i}"
        after = selects(galera)
    assert all(after[a] - before[a] >= 15 for a in after), (before, after)  # all three read


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", ["kill", "stop"])
async def test_galera_node_fault_during_a_bulk_write(
    galera: GaleraTopology, galera_db: str, fault: str
) -> None:
    pool = fault_pool(connect_retry_budget=2.0)
    victim = galera.nodes[0]  # the writer: writes must move to another node
    async with client(config(galera, galera_db, "galera", pool=pool)) as db:
        first = await bulk_under_fault(db, PATHS, "v1", tasks=4, per_call=50)
        assert not first.failed_calls
        assert (await db.topology())["remote"]["writer"] == victim.address
        moments: dict[str, float] = {}

        async def inject(outcome: Outcome) -> None:
            await outcome.progress(START_AFTER)
            moments["fault"] = time.monotonic()
            if fault == "kill":
                await asyncio.to_thread(galera.kill, victim)
            else:
                await asyncio.to_thread(galera.stop, victim)
            await asyncio.to_thread(galera.wait_evicted, victim)
            moments["evicted"] = time.monotonic()

        outcome = await bulk_under_fault(db, PATHS, "v2", inject, tasks=4, per_call=50)
        bound = ha_call_bound(pool)
        assert max(c.seconds for c in outcome.calls) <= bound
        again = await bulk_under_fault(db, PATHS, "v2", tasks=4, per_call=50)
        assert not again.failed_calls
        assert (await db.topology())["remote"]["writer"] != victim.address
        survivor = galera.nodes[1]
        counts = audit(rows_on(survivor, galera_db), PATHS, outcome)
        # The node comes back (SIGCONT, or a restart with a state transfer) and serves.
        if fault == "kill":
            await asyncio.to_thread(galera.start, victim)
        else:
            await asyncio.to_thread(galera.cont, victim)
        await until(db, lambda h: "reads" in h[victim.address]["serves"], "node rejoined")
        assert rows_on(victim, galera_db) == rows_on(survivor, galera_db)
    report(
        f"galera: writer node {'SIGKILLed' if fault == 'kill' else 'SIGSTOPped'} "
        "during a bulk write, then rejoining",
        **counts,
        errors=sorted({c.error for c in outcome.calls if c.error}),
        slowest_call_s=round(max(c.seconds for c in outcome.calls), 2),
        call_bound_s=round(bound, 1),
        eviction_s=round(moments["evicted"] - moments["fault"], 2),
    )


def test_cli_topology_and_health_name_each_server(
    replication: ReplicationTopology, repl_db: str, tmp_path: Path
) -> None:
    hosts = ", ".join(f'"{h}"' for h in replication.hosts)
    config = tmp_path / "ha.toml"
    config.write_text(
        f'[database]\nremote_type = "mysql"\n[database.remote_config]\nhosts = [{hosts}]\n'
        f'database = "{repl_db}"\nuser = "{USER}"\npassword = "{PASSWORD}"\n'
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "async_db_client", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert "Traceback" not in result.stderr and PASSWORD not in result.stdout + result.stderr
        return result

    migrated = cli("migrate", "--json")
    assert migrated.returncode == 0, migrated.stderr
    described = json.loads(cli("topology", "--json").stdout)["remote"]
    assert described["writer"] == replication.primary.address
    assert [h["role"] for h in described["hosts"]] == ["primary", "replica", "replica"]
    table = cli("topology")
    assert table.returncode == 0 and "writes go to " + replication.primary.address in table.stdout
    healthy = cli("health", "--json")
    assert healthy.returncode == 0
    assert json.loads(healthy.stdout) == {
        "remote": True,
        **{f"remote@{address}": True for address in replication.hosts},
    }
    victim = replication.replicas[1]
    replication.kill(victim)
    unhealthy = cli("health", "--json")
    assert unhealthy.returncode == 1
    assert json.loads(unhealthy.stdout)[f"remote@{victim.address}"] is False
    assert json.loads(unhealthy.stdout)["remote"] is True
    assert f"remote@{victim.address}: cannot connect" in unhealthy.stderr
    down = json.loads(cli("topology", "--json").stdout)["remote"]["hosts"][2]
    assert down["role"] == "down" and down["serves"] == [] and down["deny_listed_s"] > 0


# ------------------------------------------------------------------------ sequential


@pytest.mark.asyncio
async def test_sequential_moves_on_in_order_and_stays(private_server: PrivateMariaDB) -> None:
    require_mysql()
    database = create_database("adc_seq")
    try:
        private_server.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
        first = f"127.0.0.1:{private_server.port}"
        second = f"{MYSQL['host']}:{MYSQL['port']}"
        cfg = {
            "database": {
                "remote_type": "mysql",
                "remote_config": {
                    "hosts": [first, second],
                    "ha_mode": "sequential",
                    "database": database,
                    "user": MYSQL["user"],
                    "password": MYSQL["password"],
                    "pool": {"connect_retry_budget": 2.0, "acquire_timeout": 5},
                },
            }
        }
        async with client(cfg) as db:
            assert await db.insert_or_update_hash(record("/s", "h1"))
            assert (await db.topology())["remote"]["writer"] == first
            private_server.kill()
            # The same call moves on, and first migrates the next server (auto_migrate).
            assert await db.insert_or_update_hash(record("/s2", "h1"))
            described = await db.topology()
            assert described["remote"]["writer"] == second
            assert hosts_of(described)[first]["role"] == "down"
            private_server.start()
            await until(db, lambda h: h[first]["role"] == "standby", "first server back")
            assert await db.insert_or_update_hash(record("/s3", "h1"))
            assert (await db.topology())["remote"]["writer"] == second  # stays
        with connect(database) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT path FROM hash_records ORDER BY path")
            assert [row[0] for row in cursor.fetchall()] == ["/s2", "/s3"]
    finally:
        drop_database(database)
