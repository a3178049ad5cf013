"""PostgreSQL through this library against raw asyncpg, as ratios in one run; and the
same library workload on MariaDB, for comparison.

Bulk upserts of RECORDS records (~600 bytes each, as in bench_writes.py), each round an
insert into an empty table and an update rotating every hash, by:

* ``lib``            - ``insert_or_update_hashes`` (COPY into a staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT`` merge per batch), ``bulk_connections: 1``;
* ``lib_parallel``   - the same with the default 4 bulk connections;
* ``raw_copy``       - raw asyncpg on one connection: the same rows (built from the same
  records, with the library's path keys and JSON), ``copy_records_to_table`` into the
  same temporary table and the same merge statement, in batches of the same size, a
  transaction each: the floor the library's path stands on;
* ``raw_executemany`` - raw asyncpg ``executemany`` of the single-row upsert (the same
  ON CONFLICT rotation), a transaction per batch;
* ``mariadb_lib``    - ``insert_or_update_hashes`` on the live MariaDB (aiomysql,
  ``bulk_connections: 1``), if it answers.

Point reads by primary key (one caller, one connection; and 64 tasks on 8 connections):
``lib`` (``get_hash_record``), ``raw`` (asyncpg ``fetchrow`` of the same statement,
concurrently through an asyncpg pool of 8), ``mariadb_lib``.

The contenders alternate in rounds (each round runs every contender once, in a rotated
order), so all meet the same moments of a shared machine; a figure is the median of the
rounds. Usage: ``python benchmarks/bench_postgres.py [--rounds R] [--reads N]``; prints a
table and writes ``benchmarks/results/postgres.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from async_db_client import DBClientFactory  # noqa: E402
from async_db_client.backends.sql.remote import COPY_ROWS  # noqa: E402
from async_db_client.dialects.postgresql import PostgreSQLDialect  # noqa: E402
from async_db_client.drivers.asyncpg import to_dollar_style  # noqa: E402
from async_db_client.models import HashRecord  # noqa: E402
from async_db_client.paths import parent_and_name, path_key  # noqa: E402
from benchmarks.bench_writes import HOST as MYSQL_HOST  # noqa: E402
from benchmarks.bench_writes import PASSWORD as MYSQL_PASSWORD  # noqa: E402
from benchmarks.bench_writes import PORT as MYSQL_PORT  # noqa: E402
from benchmarks.bench_writes import USER as MYSQL_USER  # noqa: E402
from benchmarks.bench_writes import make_records  # noqa: E402

PG = {
    "host": os.environ.get("ADC_TEST_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ADC_TEST_PG_PORT", "5432")),
    "user": os.environ.get("ADC_TEST_PG_USER", "postgres"),
    "password": os.environ.get("ADC_TEST_PG_PASSWORD", ""),
}
DATABASE = "adc_bench_pg"
RECORDS = 20_000
POOL = 8
TASKS = 64
DIALECT = PostgreSQLDialect()
MERGE = to_dollar_style(DIALECT.merge_staged())
UPSERT_ONE = to_dollar_style(DIALECT.upsert_hashes(1))
SELECT = to_dollar_style(DIALECT.select_record)
NOW = 1_700_000_000

#: Ratio name: (contender, baseline, measure, target or None).
TARGETS: dict[str, tuple[str, str, str, float | None]] = {
    "bulk lib / raw COPY + merge (1 connection)": ("lib", "raw_copy", "bulk", 0.9),
    "point reads lib / raw fetchrow (sequential)": ("lib", "raw", "sequential", 0.9),
    "point reads lib / raw fetchrow (concurrent)": ("lib", "raw", "concurrent", None),
    "bulk lib / raw executemany": ("lib", "raw_executemany", "bulk", None),
    "bulk lib, 4 connections / raw COPY": ("lib_parallel", "raw_copy", "bulk", None),
    "bulk PostgreSQL lib / MariaDB lib": ("lib", "mariadb_lib", "bulk", None),
    "point reads PostgreSQL lib / MariaDB lib": ("lib", "mariadb_lib", "sequential", None),
}


def pg_config(bulk_connections: int = 1) -> dict[str, Any]:
    pool = {"min_size": 1, "max_size": POOL, "acquire_timeout": 60}
    pool["bulk_connections"] = bulk_connections
    remote = {**PG, "database": DATABASE, "ssl": {"sslmode": "disable"}, "pool": pool}
    return {"database": {"remote_type": "postgresql", "remote_config": remote}}


def mysql_config() -> dict[str, Any]:
    pool = {"min_size": 1, "max_size": POOL, "acquire_timeout": 60, "bulk_connections": 1}
    remote = {"host": MYSQL_HOST, "port": MYSQL_PORT, "database": DATABASE}
    remote |= {"user": MYSQL_USER, "password": MYSQL_PASSWORD, "pool": pool}
    return {"database": {"remote_type": "mysql", "remote_config": remote}}


def rows_of(records: list[HashRecord]) -> list[tuple[Any, ...]]:
    """What the raw contenders send: the library's columns, keys and JSON, built from the
    records in the timed part as the library builds them."""
    names = DIALECT.to_db_names
    rows = []
    for r in records:
        parent = parent_and_name(r.path)
        rows.append(
            (
                path_key(r.path),
                r.path,
                path_key(parent[0]) if parent else None,
                parent[1] if parent else None,
                r.current_hash,
                NOW,
                NOW,
                names(r.dirs),
                names(r.files),
                names(r.links),
                r.target_hash,
                r.session_id,
            )
        )
    return rows


async def raw_copy(conn: Any, records: list[HashRecord]) -> None:
    for start in range(0, len(records), COPY_ROWS):
        rows = [(1, *row) for row in rows_of(records[start : start + COPY_ROWS])]
        async with conn.transaction():
            await conn.execute(DIALECT.create_staging())
            await conn.copy_records_to_table(
                DIALECT.staging_table, records=rows, columns=list(DIALECT.staging_columns)
            )
            await conn.execute(MERGE, 1)
            await conn.execute(DIALECT.drop_staging())


async def raw_executemany(conn: Any, records: list[HashRecord]) -> None:
    for start in range(0, len(records), COPY_ROWS):
        rows = rows_of(records[start : start + COPY_ROWS])
        async with conn.transaction():
            await conn.executemany(UPSERT_ONE, rows)


Bulk = Callable[[list[HashRecord]], Awaitable[None]]
Reads = Callable[[list[str], bool], Awaitable[None]]


class Bench:
    def __init__(self, with_mariadb: bool) -> None:
        self.with_mariadb = with_mariadb
        self.stack: list[Any] = []

    async def open(self) -> None:
        self.lib = await self._client(pg_config())
        self.lib_parallel = await self._client(pg_config(bulk_connections=4))
        self.raw_conn = await asyncpg.connect(**PG, database=DATABASE, ssl=False)
        self.raw_pool = await asyncpg.create_pool(
            **PG, database=DATABASE, ssl=False, min_size=POOL, max_size=POOL
        )
        self.mariadb = await self._client(mysql_config()) if self.with_mariadb else None

    async def _client(self, config: dict[str, Any]) -> Any:
        factory = DBClientFactory(config).create_client()
        db = await factory.__aenter__()
        self.stack.append(factory)
        await db.migrate()
        return db

    async def close(self) -> None:
        await self.raw_conn.close()
        await self.raw_pool.close()
        for factory in reversed(self.stack):
            await factory.__aexit__(None, None, None)

    def bulk_contenders(self) -> dict[str, Bulk]:
        async def lib(records: list[HashRecord]) -> None:
            await self.lib.insert_or_update_hashes(records)

        async def lib_parallel(records: list[HashRecord]) -> None:
            await self.lib_parallel.insert_or_update_hashes(records)

        contenders: dict[str, Bulk] = {
            "lib": lib,
            "lib_parallel": lib_parallel,
            "raw_copy": lambda records: raw_copy(self.raw_conn, records),
            "raw_executemany": lambda records: raw_executemany(self.raw_conn, records),
        }
        if self.mariadb is not None:
            mariadb = self.mariadb

            async def mariadb_lib(records: list[HashRecord]) -> None:
                await mariadb.insert_or_update_hashes(records)

            contenders["mariadb_lib"] = mariadb_lib
        return contenders

    def read_contenders(self) -> dict[str, Reads]:
        def library(db: Any) -> Reads:
            async def read(paths: list[str], concurrent: bool) -> None:
                if not concurrent:
                    for path in paths:
                        assert await db.get_hash_record(path) is not None
                    return
                queue = iter(paths)

                async def task() -> None:
                    for path in queue:
                        assert await db.get_hash_record(path) is not None

                await asyncio.gather(*(task() for _ in range(TASKS)))

            return read

        async def raw(paths: list[str], concurrent: bool) -> None:
            if not concurrent:
                for path in paths:
                    assert await self.raw_conn.fetchrow(SELECT, path_key(path)) is not None
                return
            queue = iter(paths)

            async def task() -> None:
                for path in queue:
                    async with self.raw_pool.acquire() as conn:
                        assert await conn.fetchrow(SELECT, path_key(path)) is not None

            await asyncio.gather(*(task() for _ in range(TASKS)))

        contenders: dict[str, Reads] = {"lib": library(self.lib), "raw": raw}
        if self.mariadb is not None:
            contenders["mariadb_lib"] = library(self.mariadb)
        return contenders


async def empty(bench: Bench) -> None:
    await bench.raw_conn.execute("TRUNCATE hash_records")
    if bench.mariadb is not None:
        await bench.mariadb.remote_db.store.executor.execute("DELETE FROM hash_records")


def rotated(names: list[str], round_: int) -> list[str]:
    shift = round_ % len(names)
    return names[shift:] + names[:shift]


async def measure(bench: Bench, rounds: int, reads: int) -> dict[str, dict[str, list[float]]]:
    first = [HashRecord(**r) for r in make_records(RECORDS, "a")]
    second = [HashRecord(**r) for r in make_records(RECORDS, "b")]
    # The inputs (40,000 records) are long-lived: out of the collector's way, or every
    # full collection the reads trigger scans them, and the contender that allocates
    # more a read (the library builds a validated record) pays for the benchmark's heap.
    gc.freeze()
    rates: dict[str, dict[str, list[float]]] = {"bulk": {}, "sequential": {}, "concurrent": {}}
    bulk = bench.bulk_contenders()
    for round_ in range(rounds):
        for name in rotated(sorted(bulk), round_):
            await empty(bench)
            started = time.perf_counter()
            await bulk[name](first)
            await bulk[name](second)
            elapsed = time.perf_counter() - started
            rates["bulk"].setdefault(name, []).append(2 * RECORDS / elapsed)
    # Reads on the records of the last bulk round (every contender's table holds them).
    await empty(bench)
    await bulk["lib"](first)
    if bench.mariadb is not None:
        await bulk["mariadb_lib"](first)
    paths = [r.path for r in first]
    read = bench.read_contenders()
    for round_ in range(rounds):
        sample = paths[(round_ * reads) % RECORDS :][:reads]
        for name in rotated(sorted(read), round_):
            for mode, count in (("sequential", reads), ("concurrent", 2 * reads)):
                chosen = (sample * 2)[:count]
                started = time.perf_counter()
                await read[name](chosen, mode == "concurrent")
                rates[mode].setdefault(name, []).append(count / (time.perf_counter() - started))
    return rates


async def setup(with_mariadb: bool) -> None:
    conn = await asyncpg.connect(**PG, database="postgres", ssl=False)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await conn.close()
    if with_mariadb:
        import pymysql

        args = {"host": MYSQL_HOST, "port": MYSQL_PORT, "user": MYSQL_USER}
        with pymysql.connect(**args, password=MYSQL_PASSWORD) as mysql, mysql.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")


def mariadb_answers() -> bool:
    try:
        import pymysql

        args = {"host": MYSQL_HOST, "port": MYSQL_PORT, "user": MYSQL_USER}
        pymysql.connect(**args, password=MYSQL_PASSWORD, connect_timeout=3).close()
    except Exception:
        return False
    return True


async def run(rounds: int, reads: int, with_mariadb: bool) -> dict[str, dict[str, list[float]]]:
    await setup(with_mariadb)
    bench = Bench(with_mariadb)
    await bench.open()
    try:
        return await measure(bench, rounds, reads)
    finally:
        await bench.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=2000, help="sequential reads a round")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/postgres.json")
    args = parser.parse_args()

    with_mariadb = mariadb_answers()
    load_before = os.getloadavg()
    rates = asyncio.run(run(args.rounds, args.reads, with_mariadb))
    median = {
        mode: {name: statistics.median(values) for name, values in by_name.items()}
        for mode, by_name in rates.items()
    }
    print(f"\nrecords/s (bulk: insert + rotate {RECORDS}), reads/s; median of {args.rounds}")
    print(f"{'contender':<18} {'bulk':>10} {'seq reads':>10} {'conc reads':>11}")
    for name in sorted(set(median["bulk"]) | set(median["sequential"])):
        cells = [median[mode].get(name) for mode in ("bulk", "sequential", "concurrent")]
        shown = [f"{c:>10,.0f}" if c is not None else f"{'-':>10}" for c in cells]
        print(f"{name:<18} {shown[0]} {shown[1]} {shown[2]:>11}")
    ratios: dict[str, float] = {}
    below: list[str] = []
    print("\nratios (target)")
    for label, (top, bottom, mode, target) in TARGETS.items():
        if top not in median[mode] or bottom not in median[mode]:
            continue
        value = median[mode][top] / median[mode][bottom]
        ratios[label] = round(value, 3)
        verdict = "" if target is None else ("ok" if value >= target else "BELOW TARGET")
        if verdict == "BELOW TARGET":
            below.append(label)
        print(f"{label:<48} {value:>6.2f}  {'>= ' + str(target) if target else '':<8} {verdict}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_average_before": load_before,
                    "load_average_after": os.getloadavg(),
                },
                "versions": {"asyncpg": version("asyncpg"), "aiomysql": version("aiomysql")},
                "records": RECORDS,
                "rounds": args.rounds,
                "reads_per_round": {"sequential": args.reads, "concurrent": 2 * args.reads},
                "rates": rates,
                "median": median,
                "ratios": ratios,
                "targets": {label: t[3] for label, t in TARGETS.items()},
                "below_target": below,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
