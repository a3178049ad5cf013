"""Write and read throughput against the live MariaDB, as ratios within one run.

Compares, on the same server and data (N hash records of ~600 bytes, insert phase on an
empty table, then an update phase that rotates every hash):

* ``bulk``        - ``insert_or_update_hashes`` (this library)
* ``single``      - ``insert_or_update_hash`` in a loop (this library)
* ``seed_loop``   - the predecessor's way: one upsert and one COMMIT per record
* ``raw_4conn``   - the raw driver's best: hand-built 1,000-row upserts, 4 connections
* ``load_data``   - ``LOAD DATA LOCAL INFILE`` through the ``mariadb`` client (ceiling)

and point reads by primary key: ``get_hash_record`` sequentially vs a raw aiomysql
SELECT, and 64 concurrent ``get_hash_record`` tasks on a pool of 8.

Usage: ``python benchmarks/bench_writes.py [--records N] [--runs R]``; prints a table
and writes ``benchmarks/results/latest.json``. Slow methods run on a sample (``--sample``)
and are reported as rates, so the ratios stay comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from async_db_client import DBClientFactory, DBInstance  # noqa: E402
from async_db_client.dialects.mysql import MySQLDialect  # noqa: E402
from async_db_client.paths import parent_and_name, path_key  # noqa: E402

HOST = os.environ.get("ADC_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("ADC_TEST_MYSQL_PORT", "3306"))
USER = os.environ.get("ADC_TEST_MYSQL_USER", "root")
PASSWORD = os.environ.get("ADC_TEST_MYSQL_PASSWORD", "")
DATABASE = "adc_bench"


def make_records(n: int, version: str) -> list[dict[str, Any]]:
    """N records of ~600 bytes each: a path, 12 files, 6 dirs, 2 links, a SHA-256."""
    records = []
    for i in range(n):
        path = f"/srv/site/data/{i // 1000:03d}/dir_{i:07d}"
        records.append(
            {
                "path": path,
                "current_hash": hashlib.sha256(f"{path}:{version}".encode()).hexdigest(),
                "dirs": [f"subdir_{j:02d}" for j in range(6)],
                "files": [f"file_{j:03d}.dat" for j in range(12)],
                "links": ["latest", "previous"],
                "session_id": f"bench-{version}",
            }
        )
    return records


def raw_row(record: dict[str, Any], now: int) -> tuple[Any, ...]:
    parent = parent_and_name(record["path"])
    dumps = MySQLDialect().to_db_names
    return (
        path_key(record["path"]),
        record["path"],
        path_key(parent[0]) if parent else None,
        parent[1] if parent else None,
        record["current_hash"],
        now,
        now,
        dumps(record["dirs"]),
        dumps(record["files"]),
        dumps(record["links"]),
        None,
        record["session_id"],
    )


def config(**pool: Any) -> dict[str, Any]:
    return {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": HOST,
                "port": PORT,
                "database": DATABASE,
                "user": USER,
                "password": PASSWORD,
                "pool": {"min_size": 1, "max_size": 8, **pool},
            },
        }
    }


async def raw_connection(autocommit: bool = True) -> aiomysql.Connection:
    return await aiomysql.connect(
        host=HOST,
        port=PORT,
        user=USER,
        password=PASSWORD,
        db=DATABASE,
        charset="utf8mb4",
        autocommit=autocommit,
    )


async def truncate() -> None:
    conn = await raw_connection()
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("TRUNCATE TABLE hash_records")
    finally:
        conn.close()


# ------------------------------------------------------------------------ writers


async def write_bulk(db: DBInstance, records: list[dict[str, Any]]) -> None:
    result = await db.insert_or_update_hashes(records)
    assert result.stored == len(records), result.rejected[:3]


async def write_single(db: DBInstance, records: list[dict[str, Any]]) -> None:
    for record in records:
        assert await db.insert_or_update_hash(record)


async def write_seed_loop(db: DBInstance, records: list[dict[str, Any]]) -> None:
    """The predecessor: one upsert, then one COMMIT, per record, on one connection."""
    conn = await raw_connection(autocommit=False)
    sql = MySQLDialect().upsert_hashes(1).replace("?", "%s")
    now = int(time.time())
    try:
        async with conn.cursor() as cursor:
            for record in records:
                await cursor.execute(sql, raw_row(record, now))
                await conn.commit()
    finally:
        conn.close()


async def write_raw_4conn(db: DBInstance, records: list[dict[str, Any]]) -> None:
    """aiomysql at its best: 1,000-row VALUES lists, four connections in parallel."""
    now = int(time.time())
    rows = [raw_row(r, now) for r in records]
    batches = [rows[i : i + 1000] for i in range(0, len(rows), 1000)]
    dialect = MySQLDialect()
    pending = iter(batches)

    async def worker() -> None:
        conn = await raw_connection()
        try:
            async with conn.cursor() as cursor:
                for batch in pending:
                    sql = dialect.upsert_hashes(len(batch)).replace("?", "%s")
                    await cursor.execute(sql, [v for row in batch for v in row])
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(4)))


async def write_load_data(db: DBInstance, records: list[dict[str, Any]]) -> None:
    """The server's ceiling: LOAD DATA LOCAL INFILE through the mariadb client."""
    now = int(time.time())
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False, encoding="utf-8") as f:
        for record in records:
            row = raw_row(record, now)
            f.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
        name = f.name
    columns = (
        "path_key, path, parent_key, name, current_hash, current_dtg_first, "
        "current_dtg_latest, dirs, files, links, target_hash, session_id"
    )
    statement = (
        f"LOAD DATA LOCAL INFILE '{name}' REPLACE INTO TABLE hash_records "
        f"CHARACTER SET utf8mb4 ({columns})"
    )
    try:
        await asyncio.to_thread(
            subprocess.run,
            [
                "mariadb",
                "--local-infile=1",
                f"-h{HOST}",
                f"-P{PORT}",
                f"-u{USER}",
                *([f"-p{PASSWORD}"] if PASSWORD else []),
                DATABASE,
                "-e",
                statement,
            ],
            check=True,
        )
    finally:
        os.unlink(name)


WRITERS: dict[str, Callable[[DBInstance, list[dict[str, Any]]], Awaitable[None]]] = {
    "bulk": write_bulk,
    "single": write_single,
    "seed_loop": write_seed_loop,
    "raw_4conn": write_raw_4conn,
    "load_data": write_load_data,
}
SAMPLED = {"single", "seed_loop"}


async def measure_writes(db: DBInstance, name: str, n: int) -> dict[str, float]:
    writer = WRITERS[name]
    await truncate()
    v1, v2 = make_records(n, "v1"), make_records(n, "v2")
    start = time.perf_counter()
    await writer(db, v1)
    insert = n / (time.perf_counter() - start)
    start = time.perf_counter()
    await writer(db, v2)
    update = n / (time.perf_counter() - start)
    return {"insert": insert, "update": update}


# -------------------------------------------------------------------------- reads


async def measure_reads(db: DBInstance, n: int, rounds: int = 5) -> dict[str, float]:
    """Point reads by primary key. The library and the raw driver alternate in
    ``rounds`` rounds of n/rounds reads each (medians), so both see the same moments of
    a shared 2-core machine; then 64 concurrent tasks read all n."""
    await truncate()
    records = make_records(n, "r")
    await db.insert_or_update_hashes(records)
    paths = [r["path"] for r in records]
    size = max(1, n // rounds)
    chunks = [paths[i : i + size] for i in range(0, size * rounds, size)]
    sql = MySQLDialect().select_record.replace("?", "%s")
    ours: list[float] = []
    raw: list[float] = []
    conn = await raw_connection()
    try:
        for chunk in chunks:
            start = time.perf_counter()
            for path in chunk:
                assert await db.get_hash_record(path) is not None
            ours.append(len(chunk) / (time.perf_counter() - start))
            start = time.perf_counter()
            async with conn.cursor() as cursor:
                for path in chunk:
                    await cursor.execute(sql, (path_key(path),))
                    assert await cursor.fetchone() is not None
            raw.append(len(chunk) / (time.perf_counter() - start))
    finally:
        conn.close()

    queue = iter(paths)

    async def reader() -> None:
        for path in queue:
            assert await db.get_hash_record(path) is not None

    start = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(64)))
    concurrent = n / (time.perf_counter() - start)
    return {
        "get_sequential": statistics.median(ours),
        "raw_select_sequential": statistics.median(raw),
        "get_64_tasks": concurrent,
    }


async def one_run(records: int, sample: int) -> dict[str, Any]:
    async with DBClientFactory(config()).create_client() as db:
        await db.migrate()
        result: dict[str, Any] = {"writes": {}, "reads": {}}
        for name in WRITERS:
            n = min(sample, records) if name in SAMPLED else records
            result["writes"][name] = await measure_writes(db, name, n)
        result["reads"] = await measure_reads(db, min(sample, records))
        result["pool"] = {k: v.as_dict() for k, v in db.pool_stats().items()}
        return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    writes = {
        name: {
            phase: statistics.median(r["writes"][name][phase] for r in runs)
            for phase in ("insert", "update")
        }
        for name in WRITERS
    }
    reads = {k: statistics.median(r["reads"][k] for r in runs) for k in runs[0]["reads"]}
    return {"writes": writes, "reads": reads}


def ratios(m: dict[str, Any]) -> dict[str, float]:
    w, r = m["writes"], m["reads"]
    out = {}
    for phase in ("insert", "update"):
        out[f"bulk_vs_raw_4conn_{phase}"] = w["bulk"][phase] / w["raw_4conn"][phase]
        out[f"bulk_vs_seed_loop_{phase}"] = w["bulk"][phase] / w["seed_loop"][phase]
        out[f"bulk_vs_load_data_{phase}"] = w["bulk"][phase] / w["load_data"][phase]
    out["get_vs_raw_select"] = r["get_sequential"] / r["raw_select_sequential"]
    out["get_64_tasks_vs_sequential"] = r["get_64_tasks"] / r["get_sequential"]
    return out


TARGETS = {
    "bulk_vs_raw_4conn_insert": 0.9,
    "bulk_vs_raw_4conn_update": 0.9,
    "bulk_vs_seed_loop_insert": 12.0,
    "bulk_vs_seed_loop_update": 12.0,
    "get_vs_raw_select": 0.8,
    "get_64_tasks_vs_sequential": 1.5,
}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/latest.json")
    args = parser.parse_args()

    setup = await aiomysql.connect(host=HOST, port=PORT, user=USER, password=PASSWORD)
    async with setup.cursor() as cursor:
        await cursor.execute("SHOW DATABASES LIKE %s", (DATABASE,))
        if not await cursor.fetchone():
            await cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    setup.close()

    runs = []
    for run in range(args.runs):
        print(f"run {run + 1}/{args.runs} ...", flush=True)
        runs.append(await one_run(args.records, args.sample))
    medians = median_of(runs)
    measured = ratios(medians)

    print(
        f"\nrecords/s, median of {args.runs} runs ({args.records} records; "
        f"single and seed_loop on {min(args.sample, args.records)})"
    )
    print(f"{'method':<12} {'insert':>10} {'update':>10}")
    for name, phases in medians["writes"].items():
        print(f"{name:<12} {phases['insert']:>10,.0f} {phases['update']:>10,.0f}")
    print("\npoint reads/s")
    for name, value in medians["reads"].items():
        print(f"{name:<24} {value:>10,.0f}")
    print("\nratios (target)")
    failed = []
    for name, value in measured.items():
        target = TARGETS.get(name)
        verdict = "" if target is None else ("ok" if value >= target else "BELOW TARGET")
        if verdict == "BELOW TARGET":
            failed.append(name)
        shown = f">= {target}" if target is not None else ""
        print(f"{name:<30} {value:>7.2f}  {shown:<8} {verdict}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "records": args.records,
                "sample": min(args.sample, args.records),
                "runs": runs,
                "median": medians,
                "ratios": measured,
                "targets": TARGETS,
                "below_target": failed,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
