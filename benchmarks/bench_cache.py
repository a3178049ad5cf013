"""The cache of hot reads on MariaDB: point reads and a polled dashboard, with the cache
off, with the memory cache and with the Redis cache, all in one run.

Two measurements:

* ``get_hash_record``: one task reads ``--paths`` stored paths round-robin for
  ``--seconds`` (after one warming pass), on three clients: uncached, memory cache,
  Redis cache. Each of ``--rounds`` rounds runs the three in a rotating order; the
  medians give reads/s and the ratios cached / uncached (targets: memory 20x, Redis 2x).
* ``dashboard``: 50 tasks poll ``get_dashboard_content`` in a loop for ``--seconds``
  while one writer sends a heartbeat every 0.5 s (each one invalidates the cache). The
  database queries are counted on the server, for the benchmark's own user only: its
  ``SELECT_COMMANDS`` in ``information_schema.USER_STATISTICS`` (``userstat`` is turned
  on for the run and back to what it was after; the server may be shared, and the
  global ``Com_select`` counts everybody's).

Usage: ``python benchmarks/bench_cache.py [--seconds 3] [--rounds 3]
[--redis-url redis://127.0.0.1:6379/0]``; prints a table and writes
``benchmarks/results/cache.json``. MariaDB on 127.0.0.1:3306 as root (no password);
the database ``adc_bench_cache`` and its user are created, filled and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from async_db_client import DBClientFactory, DBInstance  # noqa: E402

HOST, PORT, ADMIN = "127.0.0.1", 3306, "root"
DATABASE = USER = "adc_bench_cache"
PASSWORD = secrets.token_hex(12)
TARGETS = {"memory_vs_uncached": 20.0, "redis_vs_uncached": 2.0}
VARIANTS = ("uncached", "memory", "redis")


def server_connection() -> pymysql.connections.Connection:
    return pymysql.connect(host=HOST, port=PORT, user=ADMIN, password="", autocommit=True)


def selects() -> int:
    """SELECT statements the server ran for the benchmark's user, so far."""
    with server_connection() as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT SELECT_COMMANDS FROM information_schema.USER_STATISTICS WHERE USER = %s",
            (USER,),
        )
        row = cursor.fetchone()
        return 0 if row is None else int(row[0])


def config(variant: str, redis_url: str, prefix: str) -> dict[str, Any]:
    tier: dict[str, Any] = {
        "host": HOST,
        "port": PORT,
        "database": DATABASE,
        "user": USER,
        "password": PASSWORD,
        "pool": {"min_size": 1, "max_size": 10},
    }
    if variant == "memory":
        tier["cache"] = {"backend": "memory", "ttl": 30.0, "max_entries": 100_000}
    elif variant == "redis":
        tier["cache"] = {"backend": "redis", "redis_url": redis_url, "ttl": 30.0,
                         "key_prefix": prefix}  # fmt: skip
    return {"database": {"remote_type": "mysql", "remote_config": tier,
                         "core_type": "mysql", "core_config": tier}}  # fmt: skip


async def point_reads(db: DBInstance, paths: list[str], seconds: float) -> float:
    """Reads/s of ``get_hash_record`` over ``paths``, round-robin, one task."""
    for path in paths:  # warm: every path read once
        assert await db.get_hash_record(path) is not None
    reads = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for path in paths[:100]:
            await db.get_hash_record(path)
        reads += 100
        paths = paths[100:] + paths[:100]
    return reads / (time.perf_counter() - started)


async def poll_dashboard(db: DBInstance, seconds: float, tasks: int = 50) -> dict[str, float]:
    """50 pollers and one writer for ``seconds``: polls/s and server SELECTs/s."""
    await db.get_dashboard_content()
    stop = asyncio.Event()
    polls = 0

    async def poller() -> None:
        nonlocal polls
        while not stop.is_set():
            await db.get_dashboard_content()
            polls += 1
            # A web handler has I/O of its own between polls: a hit that never suspends
            # must not keep the others (the writer) from running.
            await asyncio.sleep(0)

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await db.put_site_heartbeat(f"s{n % 20}", hash_record_count=n)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)

    before = await asyncio.to_thread(selects)
    started = time.perf_counter()
    workers = [asyncio.create_task(poller()) for _ in range(tasks)]
    workers.append(asyncio.create_task(writer()))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    after = await asyncio.to_thread(selects)
    return {"polls_per_s": polls / elapsed, "selects_per_s": (after - before) / elapsed}


def setup_database(paths: int) -> str:
    """Create the database and its user, turn ``userstat`` on; its previous value."""
    with server_connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cursor.execute(f"DROP USER IF EXISTS '{USER}'@'%'")
        cursor.execute(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")  # hex digits
        cursor.execute(f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'%'")
        cursor.execute("SELECT @@GLOBAL.userstat")
        row = cursor.fetchone()
        cursor.execute("SET GLOBAL userstat = ON")
    return "ON" if row and int(row[0]) else "OFF"


def teardown_database(userstat: str) -> None:
    with server_connection() as conn, conn.cursor() as cursor:
        cursor.execute(f"SET GLOBAL userstat = {userstat}")
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"DROP USER IF EXISTS '{USER}'@'%'")


async def forget_redis_keys(redis_url: str, prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await client.aclose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/cache.json")
    args = parser.parse_args()

    userstat = setup_database(args.paths)
    paths = [f"/bench/dir{n:05d}" for n in range(args.paths)]
    prefix = f"adc-bench-{secrets.token_hex(4)}"
    clients = {
        variant: DBClientFactory(config(variant, args.redis_url, prefix)).create_client()
        for variant in VARIANTS
    }
    try:
        writer = clients["uncached"]
        await writer.migrate()
        result = await writer.insert_or_update_hashes(
            {"path": p, "current_hash": f"{n:064x}", "dirs": ["a", "b"], "files": ["f"] * 5}
            for n, p in enumerate(paths)
        )
        assert result.stored == len(paths)

        reads: dict[str, list[float]] = {v: [] for v in VARIANTS}
        dashboard: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for round_ in range(args.rounds):
            order = VARIANTS[round_ % 3 :] + VARIANTS[: round_ % 3]
            print(f"round {round_ + 1}/{args.rounds}: {', '.join(order)}", flush=True)
            for variant in order:
                reads[variant].append(await point_reads(clients[variant], paths, args.seconds))
            for variant in order:
                dashboard[variant].append(await poll_dashboard(clients[variant], args.seconds))
        stats = {v: {t: s.as_dict() for t, s in clients[v].cache_stats().items()}
                 for v in VARIANTS}  # fmt: skip
    finally:
        for client in clients.values():
            await client.aclose()
        await forget_redis_keys(args.redis_url, prefix)
        teardown_database(userstat)

    median_reads = {v: statistics.median(values) for v, values in reads.items()}
    median_dashboard = {
        v: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for v, runs in dashboard.items()
    }
    ratios = {
        "memory_vs_uncached": median_reads["memory"] / median_reads["uncached"],
        "redis_vs_uncached": median_reads["redis"] / median_reads["uncached"],
    }
    below = [name for name, value in ratios.items() if value < TARGETS[name]]

    print(f"\nget_hash_record, one task, {args.paths} paths: reads/s (median of {args.rounds})")
    for variant in VARIANTS:
        print(f"  {variant:<10} {median_reads[variant]:>12,.0f}")
    for name, value in ratios.items():
        verdict = "ok" if value >= TARGETS[name] else "BELOW TARGET"
        print(f"  {name:<20} {value:>8.1f}x  (>= {TARGETS[name]:g}x) {verdict}")
    print("\ndashboard, 50 polling tasks + a heartbeat every 0.5 s")
    print(f"  {'':<10} {'polls/s':>12} {'SELECTs/s':>12}   (counted by the server)")
    for variant in VARIANTS:
        row = median_dashboard[variant]
        print(f"  {variant:<10} {row['polls_per_s']:>12,.0f} {row['selects_per_s']:>12,.0f}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "paths": args.paths,
                "seconds": args.seconds,
                "rounds": args.rounds,
                "get_hash_record_reads_per_s": reads,
                "get_hash_record_median": median_reads,
                "ratios": ratios,
                "targets": TARGETS,
                "below_target": below,
                "dashboard": dashboard,
                "dashboard_median": median_dashboard,
                "cache_stats": stats,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {args.output}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
