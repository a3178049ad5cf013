"""Point reads and bulk upserts on the live MariaDB, per MySQL driver, as ratios in one run.

Point reads by primary key (``hash_records``, 20,000 records of ~600 bytes), for:

* ``raw_pymysql``        - PyMySQL, blocking: the floor a synchronous script had
* ``raw_aiomysql``       - aiomysql, ``cursor.execute`` + ``fetchall``
* ``raw_asyncmy``        - asyncmy the same way (its default: the text protocol)
* ``raw_asyncmy_prepared`` - asyncmy with a prepared statement (its best)
* ``lib_aiomysql`` / ``lib_asyncmy``   - ``get_hash_record`` through this library
* ``sync_aiomysql`` / ``sync_asyncmy`` - the same through ``async_db_client.sync``

each **sequentially** (one caller, one connection) and **concurrently**: 64 tasks on a
pool of 8 connections for the async contenders; for the blocking ones, 8 threads with a
connection each (the sync facade gives every thread a pool of its own, so 64 threads
would be 64 connections). The contenders alternate in rounds within one run (each round
runs every contender once, in a rotated order), so all of them meet the same moments of
a shared machine; a figure is the median of the rounds. Beside each rate, the client's
CPU time a read (``time.process_time``, every thread of the process): what a read costs
the client whatever else the machine runs. Then ``insert_or_update_hashes``
of the 20,000 records (insert into an empty table, then an update of every hash) through
the library with each driver, alternating the same way.

Then, where valgrind is installed, the instructions a sequential read costs each of
``raw_aiomysql``, ``lib_aiomysql``, ``raw_asyncmy_prepared`` and ``lib_asyncmy``
(:mod:`benchmarks.instructions`): the same comparison, unmoved by the machine's load.

Usage: ``python benchmarks/bench_reads.py [--rounds R] [--reads N]``; prints a table and
writes ``benchmarks/results/reads.json``. ``--count MODE N`` only makes N sequential
reads of contender MODE on the database a full run left (what callgrind runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiomysql
import asyncmy
import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import async_db_client.sync  # noqa: E402
from async_db_client import DBClientFactory, DBInstance  # noqa: E402
from async_db_client.dialects.mysql import MySQLDialect  # noqa: E402
from async_db_client.paths import path_key  # noqa: E402
from benchmarks import instructions  # noqa: E402
from benchmarks.bench_writes import HOST, PASSWORD, PORT, USER, make_records  # noqa: E402

DATABASE = "adc_bench_reads"
RECORDS = 20_000
POOL = 8  # connections of every concurrent contender
TASKS = 64  # concurrent async callers
THREADS = POOL  # concurrent blocking callers: one connection each
DRIVERS = ("aiomysql", "asyncmy")
SELECT = MySQLDialect().select_record.replace("?", "%s")


def config(driver: str, max_size: int = POOL) -> dict[str, Any]:
    pool = {"min_size": 1, "max_size": max_size, "acquire_timeout": 60}
    remote = {"host": HOST, "port": PORT, "database": DATABASE, "user": USER}
    remote |= {"password": PASSWORD, "driver": driver, "pool": pool}
    return {"database": {"remote_type": "mysql", "remote_config": remote}}


def raw_args() -> dict[str, Any]:
    return {"host": HOST, "port": PORT, "user": USER, "password": PASSWORD, "autocommit": True}


# A raw async driver's read of one row by key, on a connection of it.
Query = Callable[[Any, str], Awaitable[Any]]


async def text_query(conn: Any, key: str) -> Any:
    """As an application writes it: a cursor, ``%s`` parameters (the text protocol)."""
    async with conn.cursor() as cursor:
        await cursor.execute(SELECT, (key,))
        return await cursor.fetchall()


def prepared_query() -> Query:
    """asyncmy's prepared statement, prepared once per connection."""
    statements: dict[int, Any] = {}
    sql = MySQLDialect().select_record

    async def query(conn: Any, key: str) -> Any:
        stmt = statements.get(id(conn))
        if stmt is None:
            stmt = statements[id(conn)] = await conn.prepare(sql)
        return (await stmt.execute((key,))).rows

    return query


# A contender reads the given paths and returns when all were found. ``Async`` ones run
# on the benchmark's event loop; the blocking ones in the main thread, between loop runs.
Async = Callable[[list[str]], Awaitable[None]]
Blocking = Callable[[list[str]], None]


class Contenders:
    """The connections and clients of every contender, opened once."""

    def __init__(self, runner: asyncio.Runner, paths: list[str]) -> None:
        self.runner = runner
        self.paths = paths
        self.keys = {path: path_key(path) for path in paths}  # the raw drivers' keys
        self.sequential: dict[str, Async | Blocking] = {}
        self.concurrent: dict[str, Async | Blocking] = {}
        self._close: list[Callable[[], Any]] = []

    # ------------------------------------------------------------------ opening

    async def open_async(self) -> None:
        one = await aiomysql.connect(db=DATABASE, charset="utf8mb4", **raw_args())
        many = await aiomysql.create_pool(
            minsize=POOL, maxsize=POOL, db=DATABASE, charset="utf8mb4", **raw_args()
        )
        self._close += [one.close, self._pool_closer(many)]
        self._raw("raw_aiomysql", one, many, text_query)

        one = await asyncmy.connect(database=DATABASE, charset="utf8mb4", **raw_args())
        many = await asyncmy.create_pool(
            minsize=POOL, maxsize=POOL, database=DATABASE, charset="utf8mb4", **raw_args()
        )
        self._close += [one.close, self._pool_closer(many)]
        self._raw("raw_asyncmy", one, many, text_query)
        self._raw("raw_asyncmy_prepared", one, many, prepared_query())

        for driver in DRIVERS:
            db = DBClientFactory(config(driver)).create_client()
            await db.migrate()
            await asyncio.gather(*(db.get_hash_record("/warm") for _ in range(POOL)))
            self._close.append(lambda db=db: self.runner.run(db.aclose()))
            self.sequential[f"lib_{driver}"] = self._library(db, 1)
            self.concurrent[f"lib_{driver}"] = self._library(db, TASKS)

    def open_blocking(self) -> None:
        self.sequential["raw_pymysql"] = self._pymysql(self._pymysql_connection())
        self.concurrent["raw_pymysql"] = self._threads(self._pymysql_per_thread())
        for driver in DRIVERS:
            factory = async_db_client.sync.DBClientFactory(config(driver, max_size=1))
            db = factory.create_client()
            self._close.append(db.close)
            self.sequential[f"sync_{driver}"] = self._sync(db)
            self.concurrent[f"sync_{driver}"] = self._threads(self._sync(db))

    def close(self) -> None:
        for close in reversed(self._close):
            close()

    def _pool_closer(self, pool: Any) -> Callable[[], None]:
        """Closes a raw driver's pool and waits for its connections (else they close
        from the garbage collector, after the loop, each with a traceback)."""

        def close() -> None:
            pool.close()
            self.runner.run(pool.wait_closed())

        return close

    # ------------------------------------------------------------------ raw drivers

    def _raw(self, name: str, one: Any, pool: Any, query: Query) -> None:
        """A raw async driver: ``query`` on one connection, and from TASKS tasks on a
        pool, each read on a connection acquired for it."""
        keys = self.keys

        async def sequential(paths: list[str]) -> None:
            for path in paths:
                assert await query(one, keys[path])

        async def concurrent(paths: list[str]) -> None:
            pending = iter(paths)

            async def task() -> None:
                for path in pending:
                    async with pool.acquire() as conn:
                        assert await query(conn, keys[path])

            await asyncio.gather(*(task() for _ in range(TASKS)))

        self.sequential[name] = sequential
        self.concurrent[name] = concurrent

    def _pymysql(self, conn: Any) -> Blocking:
        def read(paths: list[str]) -> None:
            keys = self.keys
            with conn.cursor() as cursor:
                for path in paths:
                    cursor.execute(SELECT, (keys[path],))
                    assert cursor.fetchall()

        return read

    def _pymysql_connection(self) -> Any:
        conn = pymysql.connect(database=DATABASE, charset="utf8mb4", **raw_args())
        self._close.append(conn.close)
        return conn

    def _pymysql_per_thread(self) -> Blocking:
        """Each thread reads on a connection of its own (as the sync facade's do)."""
        local = threading.local()

        def read(paths: list[str]) -> None:
            if not hasattr(local, "read"):
                local.read = self._pymysql(self._pymysql_connection())
            local.read(paths)

        return read

    # ------------------------------------------------------------------ the library

    @staticmethod
    def _library(db: DBInstance, tasks: int) -> Async:
        async def read(paths: list[str]) -> None:
            pending = iter(paths)

            async def task() -> None:
                for path in pending:
                    assert await db.get_hash_record(path) is not None

            await asyncio.gather(*(task() for _ in range(tasks)))

        return read

    @staticmethod
    def _sync(db: Any) -> Blocking:
        def read(paths: list[str]) -> None:
            for path in paths:
                assert db.get_hash_record(path) is not None

        return read

    def _threads(self, read_one: Blocking) -> Blocking:
        """``read_one`` in THREADS threads, each on its share of the paths. The threads
        live as long as the contender and each has read once before any timing (the
        sync facade opens a thread's client on the thread's first call)."""
        executor = ThreadPoolExecutor(THREADS)
        self._close.append(executor.shutdown)
        everyone = threading.Barrier(THREADS)  # so that each warm-up takes its own thread

        def warm_up(path: str) -> None:
            everyone.wait()
            read_one([path])

        list(executor.map(warm_up, self.paths[:THREADS]))

        def read(paths: list[str]) -> None:
            list(executor.map(read_one, [paths[i::THREADS] for i in range(THREADS)]))

        return read

    # ------------------------------------------------------------------ timing

    def rate(self, contender: Async | Blocking, paths: list[str]) -> tuple[float, float]:
        """Reads a second, and this process's CPU time a read in µs (all its threads):
        what the client costs, whatever else the machine runs."""
        start, cpu = time.perf_counter(), time.process_time()
        result = contender(paths)
        if result is not None:
            self.runner.run(result)  # type: ignore[arg-type]
        elapsed, used = time.perf_counter() - start, time.process_time() - cpu
        return len(paths) / elapsed, 1e6 * used / len(paths)


def setup(runner: asyncio.Runner) -> list[str]:
    """A fresh database with RECORDS records; their paths."""
    with pymysql.connect(**raw_args()) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    records = make_records(RECORDS, "r")

    async def load() -> None:
        async with DBClientFactory(config("aiomysql")).create_client() as db:
            await db.migrate()
            result = await db.insert_or_update_hashes(records)
            assert result.stored == RECORDS

    runner.run(load())
    return [r["path"] for r in records]


def rotated(names: list[str], round_: int) -> list[str]:
    """Every contender once per round, starting from a different one each round."""
    shift = round_ % len(names)
    return names[shift:] + names[:shift]


def measure_reads(
    runner: asyncio.Runner, paths: list[str], rounds: int, n: int
) -> dict[str, dict[str, list[float]]]:
    contenders = Contenders(runner, paths)
    runner.run(contenders.open_async())
    contenders.open_blocking()
    rates: dict[str, dict[str, list[float]]] = {
        "sequential": {},
        "concurrent": {},
        "cpu_us_sequential": {},
        "cpu_us_concurrent": {},
    }
    try:
        for round_ in range(rounds):
            print(f"reads: round {round_ + 1}/{rounds}", flush=True)
            for mode, group, size in (
                ("sequential", contenders.sequential, n),
                ("concurrent", contenders.concurrent, 2 * n),
            ):
                start = (round_ * size) % len(paths)
                sample = (paths + paths)[start : start + size]
                for name in rotated(sorted(group), round_):
                    rate, cpu = contenders.rate(group[name], sample)
                    rates[mode].setdefault(name, []).append(rate)
                    rates[f"cpu_us_{mode}"].setdefault(name, []).append(cpu)
    finally:
        contenders.close()
    return rates


def measure_bulk(runner: asyncio.Runner, rounds: int) -> dict[str, dict[str, list[float]]]:
    """insert_or_update_hashes of RECORDS records per driver: insert, then update."""
    v1, v2 = make_records(RECORDS, "v1"), make_records(RECORDS, "v2")
    rates: dict[str, dict[str, list[float]]] = {"insert": {}, "update": {}}

    async def one(driver: str) -> None:
        with pymysql.connect(database=DATABASE, **raw_args()) as conn, conn.cursor() as cursor:
            cursor.execute("TRUNCATE TABLE hash_records")
        async with DBClientFactory(config(driver)).create_client() as db:
            await db.migrate()
            for phase, records in (("insert", v1), ("update", v2)):
                start = time.perf_counter()
                result = await db.insert_or_update_hashes(records)
                elapsed = time.perf_counter() - start
                assert result.stored == RECORDS, result.rejected[:3]
                rates[phase].setdefault(driver, []).append(RECORDS / elapsed)

    for round_ in range(rounds):
        print(f"bulk: round {round_ + 1}/{rounds}", flush=True)
        for driver in rotated(list(DRIVERS), round_):
            runner.run(one(driver))
    return rates


#: The contenders counted in instructions (see :func:`count`).
COUNTED = ("raw_aiomysql", "lib_aiomysql", "raw_asyncmy_prepared", "lib_asyncmy")


def count(mode: str, reads: int) -> None:
    """``reads`` sequential reads of one contender (a ``COUNTED`` one), nothing else."""
    with pymysql.connect(database=DATABASE, **raw_args()) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT path FROM hash_records ORDER BY path_key LIMIT 500")
        paths = [row[0] for row in cursor.fetchall()]
    paths = (paths * (reads // len(paths) + 1))[:reads]
    with asyncio.Runner() as runner:
        contenders = Contenders(runner, paths)
        runner.run(contenders.open_async())
        try:
            runner.run(contenders.sequential[mode](paths))  # type: ignore[arg-type]
        finally:
            contenders.close()


def medians(rates: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {
        mode: {name: statistics.median(values) for name, values in group.items()}
        for mode, group in rates.items()
    }


#: The issue's targets: (numerator, denominator, mode, at least).
TARGETS = {
    "lib_asyncmy_vs_raw_aiomysql": ("lib_asyncmy", "raw_aiomysql", "sequential", 1.5),
    "sync_asyncmy_vs_raw_pymysql": ("sync_asyncmy", "raw_pymysql", "sequential", 1.0),
    "sync_aiomysql_vs_raw_pymysql": ("sync_aiomysql", "raw_pymysql", "sequential", 0.75),
    # "Async point reads >= 0.9x the raw driver underneath" (asyncmy: its text protocol,
    # as an application writes a query; the prepared statement is below, untargeted).
    "lib_aiomysql_vs_raw_aiomysql": ("lib_aiomysql", "raw_aiomysql", "sequential", 0.9),
    "lib_asyncmy_vs_raw_asyncmy": ("lib_asyncmy", "raw_asyncmy", "sequential", 0.9),
}
#: Reported beside them, without a target.
RATIOS = {
    "lib_asyncmy_vs_raw_aiomysql_concurrent": (
        "lib_asyncmy", "raw_aiomysql", "concurrent", None,
    ),
    "lib_asyncmy_vs_lib_aiomysql": ("lib_asyncmy", "lib_aiomysql", "sequential", None),
    "lib_asyncmy_vs_lib_aiomysql_concurrent": (
        "lib_asyncmy", "lib_aiomysql", "concurrent", None,
    ),
    "lib_asyncmy_vs_raw_asyncmy_prepared": (
        "lib_asyncmy", "raw_asyncmy_prepared", "sequential", None,
    ),
    "sync_asyncmy_vs_raw_pymysql_concurrent": (
        "sync_asyncmy", "raw_pymysql", "concurrent", None,
    ),
    # Reads per second of client CPU (the inverse of CPU a read): the load-proof view.
    "cpu_lib_asyncmy_vs_raw_aiomysql": (
        "raw_aiomysql", "lib_asyncmy", "cpu_us_sequential", None,
    ),
    "cpu_lib_aiomysql_vs_raw_aiomysql": (
        "raw_aiomysql", "lib_aiomysql", "cpu_us_sequential", None,
    ),
    "cpu_sync_asyncmy_vs_raw_pymysql": (
        "raw_pymysql", "sync_asyncmy", "cpu_us_sequential", None,
    ),
    "bulk_asyncmy_vs_aiomysql_insert": ("asyncmy", "aiomysql", "insert", None),
    "bulk_asyncmy_vs_aiomysql_update": ("asyncmy", "aiomysql", "update", None),
}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reads", type=int, default=2000, help="sequential reads a round")
    parser.add_argument("--bulk-rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/reads.json")
    parser.add_argument("--count", nargs=2, metavar=("MODE", "N"))
    args = parser.parse_args()
    if args.count:
        count(args.count[0], int(args.count[1]))
        return 0

    load_before = os.getloadavg()
    with asyncio.Runner() as runner:
        paths = setup(runner)
        reads = measure_reads(runner, paths, args.rounds, args.reads)
        bulk = measure_bulk(runner, args.bulk_rounds)
    measured = {**medians(reads), **medians(bulk)}
    print("instructions a read (callgrind) ...", flush=True)
    counted = instructions.per_call(__file__, COUNTED, small=100, large=600)

    ratios: dict[str, float] = {}
    below: list[str] = []
    print(f"\npoint reads/s, and client CPU µs a read, median of {args.rounds} rounds")
    print(f"{'contender':<22} {'sequential':>11} {'concurrent':>11} {'cpu seq':>8} {'cpu conc':>8}")
    for name in sorted(measured["sequential"]):
        seq, conc = measured["sequential"][name], measured["concurrent"][name]
        cpu = measured["cpu_us_sequential"][name], measured["cpu_us_concurrent"][name]
        print(f"{name:<22} {seq:>11,.0f} {conc:>11,.0f} {cpu[0]:>8.0f} {cpu[1]:>8.0f}")
    print(f"\ninsert_or_update_hashes, {RECORDS} records, records/s, median of {args.bulk_rounds}")
    for driver in DRIVERS:
        insert, update = measured["insert"][driver], measured["update"][driver]
        print(f"{driver:<22} {insert:>11,.0f} {update:>11,.0f}")
    print("\nratios (target)")
    for name, (top, bottom, mode, target) in {**TARGETS, **RATIOS}.items():
        value = measured[mode][top] / measured[mode][bottom]
        ratios[name] = value
        verdict = "" if target is None else ("ok" if value >= target else "BELOW TARGET")
        if verdict == "BELOW TARGET":
            below.append(name)
        shown = f">= {target}" if target is not None else ""
        print(f"{name:<40} {value:>6.2f}  {shown:<8} {verdict}")
    if counted is not None:
        print("\ninstructions a sequential read (callgrind)")
        for name, value in counted.items():
            print(f"{name:<22} {value:>11,}")

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
                # Installed versions (PyMySQL's __version__ mimics mysqlclient's).
                "versions": {name: version(name) for name in ("aiomysql", "asyncmy", "PyMySQL")},
                "records": RECORDS,
                "rounds": args.rounds,
                "reads_per_round": {"sequential": args.reads, "concurrent": 2 * args.reads},
                "rates": {**reads, **bulk},
                "median": measured,
                "ratios": ratios,
                "targets": {name: t[3] for name, t in TARGETS.items()},
                "below_target": below,
                "instructions_per_read": counted,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
