"""``hosts`` on PostgreSQL with streaming replication: a private primary and its
``pg_basebackup`` standbys (:class:`~tests.support.postgres_topology.PostgresReplication`).

What :mod:`async_db_client.routing` promises, on real servers: reads outside a
transaction go to the standbys (counted by the standbys' own statistics); an idle
standby is not lagging; read_your_writes holds (a standby read waits, bounded, for the
write's WAL position, else reads on the primary), also while replay is paused; a server
that refuses a write for being read-only (25006) is rediscovered and the write lands on
the primary; a killed standby is deny-listed and reads go on; after the primary is
killed and a synchronous standby promoted, writes resume there and nothing acknowledged
is lost; the CLI's ``topology`` names each server's role. Waits are for conditions,
never for a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, DBInstance, routing
from async_db_client.errors import AsyncDBClientError
from async_db_client.models import HashRecord
from tests.support.postgres_topology import PostgresReplication, require_pg_topology
from tests.support.reliability import report
from tests.support.waiting import eventually

pytestmark = [pytest.mark.live, pytest.mark.asyncio, pytest.mark.slow]

DATABASE = "adc_pgha"


@pytest.fixture
def pg_replication(request: pytest.FixtureRequest) -> Iterator[PostgresReplication]:
    """A fresh primary with standbys, as the test's marker
    ``pg_topology(standbys=, synchronous=)`` says (the test may kill or promote)."""
    require_pg_topology()
    marker = request.node.get_closest_marker("pg_topology")
    kwargs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    with PostgresReplication(**kwargs) as topology:
        topology.create_database(DATABASE)
        yield topology


def config(topology: PostgresReplication, **tier: Any) -> dict[str, Any]:
    pool = {"min_size": 0, "max_size": 4, "acquire_timeout": 10, **tier.pop("pool", {})}
    return {
        "database": {
            "remote_type": "postgresql",
            "remote_config": {
                "hosts": topology.hosts,
                "database": DATABASE,
                "user": "postgres",
                "ssl": {"sslmode": "disable"},
                "pool": pool,
                **tier,
            },
        }
    }


@contextlib.asynccontextmanager
async def client(cfg: dict[str, Any]) -> AsyncIterator[Any]:
    async with DBClientFactory(cfg).create_client() as db:
        await db.migrate()
        yield db


def counters(described: dict[str, Any]) -> dict[str, int]:
    return dict(described["remote"]["counters"])


@pytest.mark.pg_topology(standbys=2)
async def test_eventual_reads_land_on_the_standbys(pg_replication: PostgresReplication) -> None:
    topology = pg_replication
    async with client(config(topology, read_consistency="eventual")) as db:
        assert await db.insert_or_update_hash(HashRecord(path="/r", current_hash="h"))
        await asyncio.to_thread(topology.wait_replayed)
        described = await db.topology()
        roles = {h["address"]: (h["role"], h["serves"]) for h in described["remote"]["hosts"]}
        assert roles[topology.address(topology.nodes[0])] == ("primary", ["writes"])
        for standby in topology.standbys:
            assert roles[topology.address(standby)] == ("standby", ["reads"])
        before = {
            s.port: await asyncio.to_thread(topology.scans, s, DATABASE, "hash_records")
            for s in topology.standbys
        }
        spread = counters(described)["reads_spread"]
        reads = 40
        for _ in range(reads):
            record = await db.get_hash_record("/r")
            assert record is not None and record.current_hash == "h"
        assert counters(await db.topology())["reads_spread"] - spread == reads

        async def served() -> dict[int, int] | None:
            now = {
                s.port: await asyncio.to_thread(topology.scans, s, DATABASE, "hash_records")
                - before[s.port]
                for s in topology.standbys
            }
            # Each standby's statistics are flushed a moment after its reads.
            return now if sum(now.values()) >= reads and all(now.values()) else None

        per_standby = await eventually(served, what="the standbys' scans of hash_records")
        print(f"reads served by the standbys: {per_standby}")
        report(
            "postgresql: eventual reads on standbys",
            reads=reads,
            reads_spread=reads,
            standby_scans={f"127.0.0.1:{port}": n for port, n in per_standby.items()},
        )


@pytest.mark.pg_topology(standbys=1)
async def test_an_idle_standby_is_not_lagging_however_old_its_last_transaction(
    pg_replication: PostgresReplication,
) -> None:
    """The lag is 0 while a standby has replayed what it received: an idle primary's
    standby is current, though its last replayed transaction grows older, and WAL without
    a transaction (a checkpoint) does not make it look as old as that transaction."""
    topology = pg_replication
    standby = topology.standbys[0]
    async with client(config(topology, read_consistency="eventual", max_replication_lag=0.5)) as db:
        assert await db.insert_or_update_hash(HashRecord(path="/idle", current_hash="h"))
        await asyncio.to_thread(topology.wait_replayed)
        age = "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp()) > 1"
        await eventually(
            lambda: _sql_true(standby, age),
            what="the standby's last replayed transaction older than 1 s",
        )
        assert topology.primary is not None
        await asyncio.to_thread(topology.primary.sql, "CHECKPOINT")
        await asyncio.to_thread(topology.primary.sql, "SELECT pg_switch_wal()")
        described = await db.topology()
        host = {h["address"]: h for h in described["remote"]["hosts"]}[topology.address(standby)]
        assert (host["role"], host["lag_s"], host["serves"]) == ("standby", 0.0, ["reads"])
        spread = counters(described)["reads_spread"]
        record = await db.get_hash_record("/idle")
        assert record is not None and counters(await db.topology())["reads_spread"] == spread + 1


async def _sql_true(node: Any, query: str) -> bool:
    return await asyncio.to_thread(node.sql, query) == "t"


@pytest.mark.pg_topology(standbys=2)
async def write_then_read(db: DBInstance, prefix: str, iterations: int) -> None:
    """Each write's record read back at once returns that write."""
    for i in range(iterations):
        assert await db.insert_or_update_hash(HashRecord(path="/k", current_hash=f"{prefix}{i}"))
        record = await db.get_hash_record("/k")
        assert record is not None and record.current_hash == f"{prefix}{i}", i


async def test_read_your_writes_also_while_replay_is_paused(
    pg_replication: PostgresReplication,
) -> None:
    topology = pg_replication
    # Lag never takes the paused standbys out of routing here: every read after a write
    # meets the bounded wait, then the primary.
    async with client(config(topology, max_replication_lag=3600)) as db:
        assert await db.insert_or_update_hash(HashRecord(path="/k", current_hash="start"))
        iterations = 200
        await write_then_read(db, "h", iterations)
        running = counters(await db.topology())
        assert running["reads_spread"] >= iterations // 2  # the standbys served reads

        for standby in topology.standbys:
            await asyncio.to_thread(topology.pause_replay, standby)
        paused_iterations = 5
        await write_then_read(db, "p", paused_iterations)
        paused = counters(await db.topology())
        timeouts = paused["gtid_wait_timeouts"] - running["gtid_wait_timeouts"]
        waits = paused["gtid_waits"] - running["gtid_waits"]
        on_primary = paused["reads_on_writer"] - running["reads_on_writer"]
        print(
            f"read_your_writes: {iterations} correct while replaying ({running}), "
            f"{paused_iterations} correct while paused, {timeouts} bounded waits timed out, "
            f"{on_primary} straight to the primary"
        )
        # No wait on a paused standby ever succeeds; each paused read waited in vain, or
        # (a standby's probe failed on a loaded machine) went to the primary at once.
        assert waits == timeouts and timeouts + on_primary == paused_iterations
        report(
            "postgresql: read_your_writes, replay paused",
            reads=iterations + paused_iterations,
            **{k: paused[k] for k in ("reads_spread", "gtid_waits", "gtid_wait_timeouts")},
        )

        for standby in topology.standbys:
            await asyncio.to_thread(topology.resume_replay, standby)
        record = await db.get_hash_record("/k")
        assert record is not None and record.current_hash == f"p{paused_iterations - 1}"


@pytest.mark.pg_topology(standbys=1)
async def test_a_read_only_server_refusing_a_write_is_rediscovered(
    pg_replication: PostgresReplication, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = pg_replication
    old, new = topology.nodes
    # No periodic discovery: only the refused write can tell the client what changed.
    monkeypatch.setattr(routing, "REFRESH_INTERVAL", 1e9)
    async with client(config(topology)) as db:
        assert await db.insert_or_update_hash(HashRecord(path="/before", current_hash="h"))
        assert (await db.topology())["remote"]["writer"] == topology.address(old)
        discoveries = counters(await db.topology())["discoveries"]
        await asyncio.to_thread(topology.promote, new)
        await asyncio.to_thread(topology.make_read_only, old)

        assert await db.insert_or_update_hash(HashRecord(path="/after", current_hash="h"))

        described = await db.topology()
        assert described["remote"]["writer"] == topology.address(new)
        hosts = {h["address"]: h for h in described["remote"]["hosts"]}
        assert hosts[topology.address(old)]["role"] == "read-only"
        assert counters(described)["discoveries"] > discoveries
    query = "SELECT count(*) FROM hash_records WHERE path = '/after'"
    assert await asyncio.to_thread(new.sql, query, DATABASE) == "1"
    assert await asyncio.to_thread(old.sql, query, DATABASE) == "0"


@pytest.mark.pg_topology(standbys=1, synchronous=True)
async def test_promotion_after_the_primary_is_killed_loses_nothing_acknowledged(
    pg_replication: PostgresReplication,
) -> None:
    """Synchronous replication: a commit is acknowledged once the standby flushed it, so
    the promoted standby has every acknowledged write. (With asynchronous replication the
    writes of the last moments before the kill, not yet sent, would be lost.)"""
    topology = pg_replication
    standby = topology.standbys[0]
    cfg = config(topology, pool={"connect_retry_budget": 120, "retry_attempts": 20})
    acknowledged: list[str] = []
    failed: list[str] = []
    stop = asyncio.Event()
    async with client(cfg) as db:

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                path = f"/w/{n}"
                n += 1
                try:
                    await db.insert_or_update_hash(HashRecord(path=path, current_hash="h"))
                except AsyncDBClientError:
                    failed.append(path)  # not acknowledged: may or may not be there
                else:
                    acknowledged.append(path)

        task = asyncio.create_task(writer())
        try:
            await eventually(lambda: len(acknowledged) >= 50, what="50 writes before")
            await asyncio.to_thread(topology.kill_primary)
            at_kill = len(acknowledged)
            await asyncio.to_thread(topology.promote, standby)
            await eventually(
                lambda: len(acknowledged) >= at_kill + 50, what="50 writes after the promotion"
            )
        finally:
            stop.set()
            await task
        assert (await db.topology())["remote"]["writer"] == topology.address(standby)
    present = set(
        (await asyncio.to_thread(standby.sql, "SELECT path FROM hash_records", DATABASE)).split()
    )
    lost = [path for path in acknowledged if path not in present]
    doubled = await asyncio.to_thread(
        standby.sql,
        "SELECT count(*) FROM (SELECT path FROM hash_records GROUP BY path "
        "HAVING count(*) > 1) AS d",
        DATABASE,
    )
    print(
        f"promotion audit: {len(acknowledged)} acknowledged ({at_kill} before the kill), "
        f"{len(failed)} failed, lost {len(lost)}, doubled {doubled}"
    )
    report(
        "postgresql: primary killed, standby promoted (synchronous)",
        acknowledged_before_failover=at_kill,
        lost_before_failover=len([p for p in acknowledged[:at_kill] if p not in present]),
        acknowledged_after_failover=len(acknowledged) - at_kill,
        lost_after_failover=len([p for p in acknowledged[at_kill:] if p not in present]),
        duplicated=int(doubled),
        failed_calls=len(failed),
    )
    assert lost == []
    assert doubled == "0"


async def test_cli_topology_names_the_primary_and_the_standbys(
    pg_replication_topology: PostgresReplication, tmp_path: Path
) -> None:
    topology = pg_replication_topology
    database = "adc_pg_cli"
    if database not in await asyncio.to_thread(
        topology.nodes[0].sql, "SELECT string_agg(datname, ' ') FROM pg_database"
    ):
        await asyncio.to_thread(topology.create_database, database)
    hosts = ", ".join(f'"{h}"' for h in reversed(topology.hosts))
    config = tmp_path / "pg.toml"
    config.write_text(
        f'[database]\nremote_type = "postgresql"\n[database.remote_config]\nhosts = [{hosts}]\n'
        f'database = "{database}"\nuser = "postgres"\nssl = {{ sslmode = "disable" }}\n'
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "async_db_client", "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},
        )

    migrated = await asyncio.to_thread(cli, "migrate", "--json")
    assert migrated.returncode == 0, migrated.stderr
    shown = await asyncio.to_thread(cli, "topology", "--json")
    described = json.loads(shown.stdout)["remote"]
    primary = topology.address(topology.nodes[0])
    assert described["writer"] == primary and described["mode"] == "replication"
    roles = {h["address"]: h["role"] for h in described["hosts"]}
    assert roles == {
        primary: "primary",
        **{topology.address(s): "standby" for s in topology.standbys},
    }
    table = await asyncio.to_thread(cli, "topology")
    assert table.returncode == 0 and f"writes go to {primary}" in table.stdout
    assert "standby" in table.stdout


@pytest.mark.pg_topology(standbys=2)
async def test_a_killed_standby_is_deny_listed_and_reads_go_on(
    pg_replication: PostgresReplication,
) -> None:
    topology = pg_replication
    victim = topology.standbys[0]
    address = topology.address(victim)
    async with client(config(topology, read_consistency="eventual")) as db:
        assert await db.insert_or_update_hash(HashRecord(path="/d", current_hash="h"))
        await asyncio.to_thread(topology.wait_replayed)
        for _ in range(4):  # pooled connections on both standbys
            assert await db.get_hash_record("/d") is not None
        await asyncio.to_thread(victim.kill)
        for _ in range(20):
            record = await db.get_hash_record("/d")
            assert record is not None and record.current_hash == "h"
        host = {h["address"]: h for h in (await db.topology())["remote"]["hosts"]}[address]
        assert host["role"] == "down" and host["serves"] == []

        await asyncio.to_thread(victim.start)

        async def serves_again() -> bool:
            hosts = {h["address"]: h for h in (await db.topology())["remote"]["hosts"]}
            return hosts[address]["serves"] == ["reads"]

        await eventually(serves_again, what=f"{address} serving reads again")
