"""One site at full size on the live MariaDB: load rate, bytes per record and per index,
point reads and log writes on the full table (the numbers of docs/SCALE.md).

Into a fresh database of its own (``adc_scale_<pid>``, dropped at the end):

* ``load``    - N hash records (``ADC_SCALE_RECORDS``, default 1,000,000) of one
  site's directory tree through ``insert_or_update_hashes``, 500 records a call, one
  call at a time, as the scanner writes them (children before parents). The tree is
  synthetic and seeded, shaped after ``/usr`` on this machine: 7.9 files a directory
  (median 3, 99th percentile 78), file names of 21 characters, directory names of 9,
  paths 8 levels deep; every directory's ``dirs`` lists exactly its subdirectories'
  records, so ``untracked`` and ``orphans`` would find nothing.
* ``sizes``   - after ``ANALYZE TABLE``: ``information_schema.TABLES`` (data, indexes)
  and ``mysql.innodb_index_stats`` (pages of each index x page size), per record.
* ``rescan``  - a re-scan of part of the tree (``--rescan``, default a tenth): the same
  records upserted again on the full table, 1 % of them with a new hash (rotation), in
  the scanner's calls of 500; then ``rescan_bulk``, the same in calls of 4,000, which the
  library spreads over its 4 bulk connections.
* ``reads``   - ``get_hash_record`` of paths spread over the whole table, sequentially
  and from 64 tasks on a pool of 8; with the buffer pool's misses
  (``Innodb_buffer_pool_reads``) during each.
* ``logs``    - ``put_log`` sequentially and from 64 tasks; bytes per log entry.

Per phase, the cost on the server (page misses, bytes written to data files and redo, CPU
time of ``mariadbd`` from /proc) and the client's CPU time, per record.

The 1-minute load average is sampled every 2 s and reported per phase: on a shared
2-core machine the rates mean little without it.

Usage: ``python benchmarks/bench_scale.py [--records N]``; ``--private-buffer-pool 2G``
runs the same on a private ``mariadbd`` (tests/support/mariadb_server.py) with that
buffer pool, started and stopped by this script (results to ``scale_private.json``).
Writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from async_db_client import DBClientFactory, DBInstance  # noqa: E402
from benchmarks.bench_writes import HOST, PASSWORD, PORT, USER  # noqa: E402

DATABASE = f"adc_scale_{os.getpid()}"
BATCH = 500  # the scanner's batch_size
BULK_BATCH = 4_000  # 4 statements of 1,000 rows, one on each of the 4 bulk connections
POOL = 8
TASKS = 64
SITE_ROOT = "/srv/scan/site_0001"

# ---------------------------------------------------------------------- the tree


def _words(rng: random.Random, count: int) -> list[str]:
    consonants, vowels = "bcdfghklmnprstvwz", "aeiou"
    words = set()
    while len(words) < count:
        length = rng.choice((2, 2, 3, 3, 4))
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(length)))
    return sorted(words)


class Tree:
    """A site's directory tree of exactly ``size`` directories, generated lazily and
    deterministically (the same seed gives the same records), in scanner order."""

    EXTENSIONS = (".dat", ".csv", ".txt", ".json", ".log", ".png", ".jpg", ".pdf", ".h5",
                  ".xml", ".py", ".gz", ".tif", ".nc", ".bin", ".cfg")

    def __init__(self, size: int, seed: int = 13) -> None:
        self.size = size
        self.seed = seed
        rng = random.Random(seed)
        words = _words(rng, 400)
        # Name pools: siblings are drawn without replacement, so paths are unique.
        self.dir_names = sorted(
            {self._dir_name(rng, words) for _ in range(6000)}
        )
        self.file_names = sorted({self._file_name(rng, words) for _ in range(40000)})

    @staticmethod
    def _dir_name(rng: random.Random, words: list[str]) -> str:
        kind = rng.random()
        if kind < 0.4:
            return rng.choice(words)
        if kind < 0.7:
            return f"{rng.choice(words)}_{rng.randrange(100):02d}"
        if kind < 0.85:
            day = rng.randrange(1, 29)
            return f"{rng.randrange(2015, 2027)}-{rng.randrange(1, 13):02d}-{day:02d}"
        return f"{rng.choice(words)}-{rng.choice(words)}"

    def _file_name(self, rng: random.Random, words: list[str]) -> str:
        parts = [rng.choice(words) for _ in range(rng.choice((1, 2, 2, 3)))]
        if rng.random() < 0.6:
            parts.append(f"{rng.randrange(10**rng.randrange(1, 7))}")
        return "_".join(parts) + rng.choice(self.EXTENSIONS)

    def _subdir_count(self, rng: random.Random, depth: int) -> int:
        if depth <= 2:
            return rng.randint(4, 16)
        if rng.random() < min(0.92, 0.5 + 0.08 * (depth - 3)):
            return 0
        return 1 + int(rng.lognormvariate(0.4, 1.0))

    def _file_count(self, rng: random.Random) -> int:
        # floor(lognormal): median 3, mean ~8, 99th percentile ~78, as in /usr here
        return min(10_000, int(rng.lognormvariate(math.log(3.0), 1.4)))

    @staticmethod
    def _names(rng: random.Random, pool: list[str], count: int) -> list[str]:
        """``count`` distinct names, sorted as a listing is: a slice of the sorted pool
        at a random place (cheap: generating must not compete with the server)."""
        count = min(count, len(pool))
        start = rng.randrange(len(pool) - count + 1)
        return pool[start : start + count]

    def records(self, version: str = "v1", changed: float = 0.0) -> Iterator[dict[str, Any]]:
        """Every directory's record, children before parents. ``changed``: the share of
        directories whose hash differs from version ``v1``'s."""
        rng = random.Random(self.seed)
        budget = [self.size - 1]  # the root's record is the last one

        def record(path: str, dirs: list[str]) -> dict[str, Any]:
            files = self._names(rng, self.file_names, self._file_count(rng))
            linked = rng.randint(1, 3) if rng.random() < 0.05 else 0
            links = self._names(rng, self.file_names, linked)
            tag = version if changed and rng.random() < changed else "v1"
            return {
                "path": path,
                "current_hash": hashlib.sha256(f"{path}\0{tag}".encode()).hexdigest(),
                "dirs": dirs,
                "files": files,
                "links": links,
                "session_id": f"scale-{version}",
            }

        def walk(path: str, depth: int) -> Iterator[dict[str, Any]]:
            count = min(self._subdir_count(rng, depth), budget[0], len(self.dir_names))
            budget[0] -= count
            dirs = self._names(rng, self.dir_names, count)
            for name in dirs:
                yield from walk(f"{path}/{name}", depth + 1)
            yield record(path, dirs)

        top: list[str] = []
        names = iter(self.dir_names)
        while budget[0] > 0:
            name = next(names, None) or f"area_{len(top):05d}"
            top.append(name)
            budget[0] -= 1
            yield from walk(f"{SITE_ROOT}/{name}", 1)
        yield record(SITE_ROOT, sorted(top))


# ---------------------------------------------------------------- measurement aids


class LoadSampler:
    """The 1-minute load average every ``every`` seconds, in a thread, by phase."""

    def __init__(self, every: float = 2.0) -> None:
        self.every = every
        self.phase = "setup"
        self.samples: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.setdefault(self.phase, []).append(os.getloadavg()[0])
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            phase: {"min": min(v), "mean": round(statistics.mean(v), 2), "max": max(v)}
            for phase, v in self.samples.items()
        }


class Server:
    """Raw queries on the server under test (sizes, status counters, settings)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def query(self, sql: str, args: Any = None, db: str | None = None) -> list[Any]:
        conn = await aiomysql.connect(
            host=self.host, port=self.port, user=USER, password=PASSWORD, db=db,
            autocommit=True,
        )
        try:
            async with conn.cursor() as cursor:
                await cursor.execute(sql, args)
                return list(await cursor.fetchall())
        finally:
            conn.close()

    async def status(self, *names: str) -> dict[str, int]:
        rows = await self.query(
            "SHOW GLOBAL STATUS WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")",
            names,
        )
        return {name: int(value) for name, value in rows}

    async def settings(self) -> dict[str, Any]:
        names = (
            "version", "innodb_buffer_pool_size", "innodb_page_size", "innodb_log_file_size",
            "innodb_flush_log_at_trx_commit", "innodb_flush_method", "log_bin", "sync_binlog",
        )
        (row,) = await self.query("SELECT " + ", ".join(f"@@{n}" for n in names))
        return dict(zip(names, row, strict=True))

    async def sizes(self, tables: list[str], records: dict[str, int]) -> dict[str, Any]:
        """Per table and per index, after ANALYZE TABLE: bytes, and bytes per row."""
        for table in tables:
            await self.query(f"ANALYZE TABLE {table}", db=DATABASE)
        (page,) = (await self.query("SELECT @@innodb_page_size"))[0]
        out: dict[str, Any] = {}
        for table in tables:
            (row,) = await self.query(
                "SELECT table_rows, avg_row_length, data_length, index_length, data_free"
                " FROM information_schema.TABLES WHERE table_schema = %s AND table_name = %s",
                (DATABASE, table),
            )
            rows, avg, data, index, free = (int(x) for x in row)
            n = records[table]
            indexes = {}
            for name, stat, value in await self.query(
                "SELECT index_name, stat_name, stat_value FROM mysql.innodb_index_stats"
                " WHERE database_name = %s AND table_name = %s"
                " AND stat_name IN ('size', 'n_leaf_pages')",
                (DATABASE, table),
            ):
                indexes.setdefault(name, {})[stat] = int(value)
            out[table] = {
                "rows": n,
                "table_rows_estimate": rows,
                "avg_row_length": avg,
                "data_length": data,
                "index_length": index,
                "data_free": free,
                "bytes_per_row_data": data / n,
                "bytes_per_row_indexes": index / n,
                "bytes_per_row_total": (data + index) / n,
                "indexes": {
                    name: {
                        "pages": v["size"],
                        "leaf_pages": v.get("n_leaf_pages"),
                        "bytes": v["size"] * page,
                        "bytes_per_row": v["size"] * page / n,
                    }
                    for name, v in indexes.items()
                },
            }
        return out


COUNTERS = (
    "Innodb_buffer_pool_read_requests",  # pages looked up
    "Innodb_buffer_pool_reads",  # ... that had to be read from disk (misses)
    "Innodb_data_read",  # bytes read from data files
    "Innodb_data_written",  # bytes written to data files (doublewrite included)
    "Innodb_os_log_written",  # bytes written to the redo log
)


class Meter:
    """What a phase cost: the server's counters, the server's and the client's CPU time.
    On a shared server, the counters and the server's CPU include other clients' work."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.pid: int | None = None

    async def setup(self) -> None:
        with contextlib.suppress(Exception):
            ((pid_file,),) = await self.server.query("SELECT @@pid_file")
            text = await asyncio.to_thread(Path(pid_file).read_text)
            self.pid = int(text.split()[0])

    def server_cpu(self) -> float | None:
        """User + system CPU seconds of mariadbd (all its threads), from /proc."""
        if self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def snapshot(self) -> tuple[dict[str, int], float | None, float]:
        return await self.server.status(*COUNTERS), self.server_cpu(), time.process_time()

    async def since(self, before: tuple[dict[str, int], float | None, float],
                    units: int) -> dict[str, Any]:
        """The phase's totals and their amounts per unit (record, read, entry)."""
        counters, server_cpu, client_cpu = await self.snapshot()
        out: dict[str, Any] = {
            name: counters[name] - before[0][name] for name in COUNTERS
        }
        out["client_cpu_s"] = client_cpu - before[2]
        if server_cpu is not None and before[1] is not None:
            out["server_cpu_s"] = server_cpu - before[1]
        out["per_unit"] = {name: value / units for name, value in out.items()}
        return out


def config(host: str, port: int) -> dict[str, Any]:
    pool = {"min_size": 1, "max_size": POOL, "acquire_timeout": 120}
    remote = {"host": host, "port": port, "database": DATABASE, "user": USER}
    remote |= {"password": PASSWORD, "pool": pool}
    return {"database": {"remote_type": "mysql", "remote_config": remote}}


# ------------------------------------------------------------------------ phases


def head(tree: Tree, count: int, version: str) -> Iterator[dict[str, Any]]:
    """The first ``count`` records of a re-scan, 1 % of them with a new hash."""
    return (r for _, r in zip(range(count), tree.records(version, 0.01), strict=False))


async def write(db: DBInstance, records: Iterator[dict[str, Any]], keep: list[str],
                stride: int, batch_size: int = BATCH) -> dict[str, float]:
    """Calls of ``batch_size`` records, one at a time; every ``stride``-th path is kept.
    Rates over the calls' time, and over the wall time (which includes generating the
    records)."""
    count, in_calls = 0, 0.0
    start = time.perf_counter()
    batch: list[dict[str, Any]] = []

    async def flush() -> None:
        nonlocal in_calls
        t = time.perf_counter()
        result = await db.insert_or_update_hashes(batch)
        in_calls += time.perf_counter() - t
        assert result.stored == len(batch), result.rejected[:3]
        batch.clear()

    for record in records:
        if stride and count % stride == 0:
            keep.append(record["path"])
        batch.append(record)
        count += 1
        if len(batch) >= batch_size:
            await flush()
            if count % 100_000 == 0:
                print(f"  {count:,} records, {count / in_calls:,.0f}/s in calls", flush=True)
    if batch:
        await flush()
    wall = time.perf_counter() - start
    return {
        "records": count,
        "seconds_in_calls": in_calls,
        "seconds_wall": wall,
        "records_per_s": count / in_calls,
        "records_per_s_wall": count / wall,
        "batch": batch_size,
    }


async def reads(db: DBInstance, meter: Meter, paths: list[str], sequential: int,
                concurrent: int) -> dict[str, Any]:
    rng = random.Random(7)
    out: dict[str, Any] = {}
    for name, n, tasks in (("sequential", sequential, 1), ("concurrent", concurrent, TASKS)):
        chosen = [rng.choice(paths) for _ in range(n)]
        queue = iter(chosen)
        before = await meter.snapshot()

        async def reader(queue: Iterator[str] = queue) -> None:
            for path in queue:
                assert await db.get_hash_record(path) is not None, path

        start = time.perf_counter()
        await asyncio.gather(*(reader() for _ in range(tasks)))
        seconds = time.perf_counter() - start
        cost = await meter.since(before, n)
        out[name] = {
            "reads": n,
            "tasks": tasks,
            "reads_per_s": n / seconds,
            "buffer_pool_misses_per_read": cost["per_unit"]["Innodb_buffer_pool_reads"],
            "cost": cost,
        }
    return out


async def logs(db: DBInstance, sequential: int, concurrent: int) -> dict[str, Any]:
    def entry(i: int) -> dict[str, Any]:
        return {
            "log_level": ("INFO", "INFO", "INFO", "WARNING", "ERROR")[i % 5],
            "site_id": "site_0001",
            "session_id": f"scale-{i // 1000}",
            "summary_message": f"scan of {SITE_ROOT}/area_{i % 97:03d}: {i} directories",
            "detailed_message": "permission denied: " + "/".join(["segment"] * 20),
        }

    out: dict[str, Any] = {}
    start = time.perf_counter()
    for i in range(sequential):
        assert await db.put_log(entry(i)) is not None
    out["sequential"] = {"entries": sequential, "entries_per_s": sequential / (
        time.perf_counter() - start)}
    queue = iter(range(sequential, sequential + concurrent))

    async def writer() -> None:
        for i in queue:
            assert await db.put_log(entry(i)) is not None

    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(TASKS)))
    out["concurrent"] = {"entries": concurrent, "tasks": TASKS,
                         "entries_per_s": concurrent / (time.perf_counter() - start)}
    return out


def payload(tree: Tree, sample: int = 20_000) -> dict[str, float]:
    """What the records carry, on average, before the database stores them."""
    n = path = dirs = files = names = 0
    for record in tree.records():
        n += 1
        path += len(record["path"])
        dirs += len(json.dumps(record["dirs"]))
        files += len(json.dumps(record["files"]))
        names += len(record["files"])
        if n >= sample:
            break
    return {
        "sampled": n,
        "path_chars": path / n,
        "dirs_json_chars": dirs / n,
        "files_json_chars": files / n,
        "files_per_dir": names / n,
    }


async def run(args: argparse.Namespace, host: str, port: int, load: LoadSampler) -> dict[str, Any]:
    server = Server(host, port)
    tree = Tree(args.records)
    await server.query(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
    try:
        results: dict[str, Any] = {"server": await server.settings()}
        meter = Meter(server)
        await meter.setup()
        results["server"]["pid_seen"] = meter.pid is not None
        results["payload"] = payload(tree)
        async with DBClientFactory(config(host, port)).create_client() as db:
            await db.migrate()
            paths: list[str] = []
            stride = max(1, args.records // 50_000)
            load.phase = "load"
            print(f"load: {args.records:,} records into {DATABASE} on {host}:{port}", flush=True)
            before = await meter.snapshot()
            results["load"] = await write(db, tree.records(), paths, stride)
            results["load"]["cost"] = await meter.since(before, args.records)
            load.phase = "sizes"
            results["sizes"] = await server.sizes(["hash_records"], {"hash_records": args.records})
            load.phase = "reads"
            print("reads", flush=True)
            results["reads"] = await reads(db, meter, paths, args.reads, args.concurrent_reads)
            if args.rescan:
                load.phase = "rescan"
                print(f"rescan: {args.rescan:,} records", flush=True)
                before = await meter.snapshot()
                results["rescan"] = await write(db, head(tree, args.rescan, "v2"), [], 0)
                results["rescan"]["cost"] = await meter.since(before, args.rescan)
                # The same records once more, in calls of BULK_BATCH: what larger calls,
                # spread by the library over its bulk connections, get from the server.
                load.phase = "rescan_bulk"
                before = await meter.snapshot()
                results["rescan_bulk"] = await write(
                    db, head(tree, args.rescan, "v3"), [], 0, batch_size=BULK_BATCH
                )
                results["rescan_bulk"]["cost"] = await meter.since(before, args.rescan)
            load.phase = "logs"
            print("logs", flush=True)
            results["logs"] = await logs(db, args.logs, args.concurrent_logs)
            load.phase = "sizes"
            results["sizes"] |= await server.sizes(
                ["remote_logs"], {"remote_logs": args.logs + args.concurrent_logs}
            )
        return results
    finally:
        load.phase = "teardown"
        if not args.keep:
            await server.query(f"DROP DATABASE IF EXISTS {DATABASE}")


def report(r: dict[str, Any]) -> None:
    h = r["sizes"]["hash_records"]
    print(f"\nload: {r['load']['records_per_s']:,.0f} records/s in the calls "
          f"({r['load']['records_per_s_wall']:,.0f}/s wall, records generated between calls)")
    for phase in ("load", "rescan", "rescan_bulk"):
        if phase in r:
            c = r[phase]["cost"]["per_unit"]
            print(f"  {phase:<11} per record: {c['Innodb_buffer_pool_reads']:.2f} page misses, "
                  f"{c['Innodb_data_written']:,.0f} B data + {c['Innodb_os_log_written']:,.0f} B "
                  f"redo written, server CPU {1e6 * c.get('server_cpu_s', 0):,.0f} us, "
                  f"client CPU {1e6 * c['client_cpu_s']:,.0f} us")
    if "rescan" in r:
        print(f"rescan: {r['rescan']['records_per_s']:,.0f} records/s in the calls; "
              f"in calls of {BULK_BATCH:,}: {r['rescan_bulk']['records_per_s']:,.0f}/s")
    print(f"hash_records: {h['bytes_per_row_total']:,.0f} bytes/record "
          f"(data {h['bytes_per_row_data']:,.0f}, indexes {h['bytes_per_row_indexes']:,.0f})")
    for name, v in h["indexes"].items():
        print(f"  {name:<28} {v['bytes'] / 2**20:>9,.1f} MiB  {v['bytes_per_row']:>7,.1f} B/record")
    lg = r["sizes"]["remote_logs"]
    print(f"remote_logs: {lg['bytes_per_row_total']:,.0f} bytes/entry")
    for name, v in r["reads"].items():
        print(f"reads {name:<11} {v['reads_per_s']:>8,.0f}/s  "
              f"({v['buffer_pool_misses_per_read']:.2f} buffer pool misses a read)")
    for name, v in r["logs"].items():
        print(f"put_log {name:<11} {v['entries_per_s']:>6,.0f}/s")
    print("load average (1 min) by phase:", r["load_average"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--records", type=int, default=int(os.environ.get("ADC_SCALE_RECORDS", "1000000"))
    )
    parser.add_argument("--rescan", type=int, default=None, help="default: records / 10")
    parser.add_argument("--reads", type=int, default=5_000)
    parser.add_argument("--concurrent-reads", type=int, default=10_000)
    parser.add_argument("--logs", type=int, default=2_000)
    parser.add_argument("--concurrent-logs", type=int, default=5_000)
    parser.add_argument("--private-buffer-pool", metavar="SIZE", default=None,
                        help="run on a private mariadbd with this buffer pool (e.g. 2G)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.rescan is None:
        args.rescan = args.records // 10
    name = "scale_private.json" if args.private_buffer_pool else "scale.json"
    output = args.output or ROOT / "benchmarks/results" / name

    with contextlib.ExitStack() as stack:
        load = stack.enter_context(LoadSampler())
        host, port = HOST, PORT
        if args.private_buffer_pool:
            from tests.support.mariadb_server import PrivateMariaDB

            server = stack.enter_context(PrivateMariaDB((
                f"--innodb-buffer-pool-size={args.private_buffer_pool}",
                "--innodb-log-file-size=512M",
            )))
            host, port = "127.0.0.1", server.port
            print(f"private mariadbd pid {server.process.pid} on port {port}", flush=True)
        started = time.gmtime()
        results = asyncio.run(run(args, host, port, load))
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", started),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "private_buffer_pool": args.private_buffer_pool,
        "records": args.records,
        "batch": BATCH,
        **results,
        "load_average": load.summary(),
    }
    report(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
