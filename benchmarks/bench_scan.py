"""Scanner throughput against ``find ROOT -type f -print0 | xargs -0 sha256sum``, as
ratios within one run.

Three measurements, each the median of ``--rounds`` rounds:

* ``small``: a full (uncached) scan of a tree of many small files (``--small-root``,
  default /usr/share), page cache warmed first;
* ``large``: a full scan of ``--large-count`` files of ``--large-mb`` MiB each, written
  to a temporary directory (deleted afterwards);
* ``cached``: re-scans of the small tree with a scan cache filled by a first scan
  (every file unchanged: files/s is what counts), alternating with ``find -printf`` of
  every file's size and mtime (no target: it shows what the machine gives that run).

In every round of ``small`` and ``large`` the scanner and the baseline both run, in
alternating order (scanner first in odd rounds, baseline first in even ones), so both
meet the same machine state. The scanner stores its records in an in-memory client
(``{'database': {'remote_type': 'local'}}``), so the database is not what is measured.
Ratios are speeds: baseline seconds / scanner seconds (above 1: the scanner is faster).

Usage: ``python benchmarks/bench_scan.py [--small-root DIR] [--rounds 3] [--skip-large]``;
prints a table and writes ``benchmarks/results/scan.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from async_db_client import DBClientFactory  # noqa: E402
from async_db_client.scanner import ScanResult, scan  # noqa: E402

LOCAL = {"database": {"remote_type": "local"}}
TARGETS = {"small": 0.8, "large": 1.5, "cached_files_per_s": 50_000}


def baseline_command(root: str) -> str:
    return f"find {shlex.quote(root)} -type f -print0 | xargs -0 sha256sum > /dev/null"


def run_baseline(root: str) -> float:
    """Seconds of ``find | xargs sha256sum`` (exit 123: some file unreadable; counted)."""
    started = time.perf_counter()
    done = subprocess.run(["sh", "-c", baseline_command(root)], stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 123):
        raise SystemExit(f"baseline failed with exit status {done.returncode}")
    return seconds


async def run_scanner(
    root: str, *, concurrency: int | None, cache: str | None = None
) -> tuple[float, ScanResult]:
    """Seconds of one scan into a fresh in-memory client (client set-up not timed)."""
    options: dict[str, Any] = {} if concurrency is None else {"concurrency": concurrency}
    async with DBClientFactory(LOCAL).create_client() as db:
        started = time.perf_counter()
        result = await scan(db, root, cache=cache, **options)
        seconds = time.perf_counter() - started
    if result.root_hash is None:
        raise SystemExit(f"{root} could not be read")
    return seconds, result


def tree_totals(root: str) -> tuple[int, int]:
    """Regular files (not followed through links) and their bytes, as find sees them."""
    files = size = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if info.st_mode & 0o170000 == 0o100000:
                files += 1
                size += info.st_size
    return files, size


def warm(root: str) -> None:
    """Read every file once so both sides meet a warm page cache."""
    command = f"find {shlex.quote(root)} -type f -print0 | xargs -0 cat > /dev/null"
    subprocess.run(["sh", "-c", command], stderr=subprocess.DEVNULL, check=False)


async def compare(root: str, rounds: int, concurrency: int | None) -> dict[str, Any]:
    """Alternating rounds of scanner and baseline on ``root``; medians and ratios."""
    files, size = tree_totals(root)
    warm(root)
    await run_scanner(root, concurrency=concurrency)  # warms dentries, inodes, imports
    scanner_s: list[float] = []
    baseline_s: list[float] = []
    root_hashes = set()
    counted = None
    for n in range(rounds):
        order = ("scanner", "baseline") if n % 2 == 0 else ("baseline", "scanner")
        for side in order:
            if side == "scanner":
                seconds, result = await run_scanner(root, concurrency=concurrency)
                scanner_s.append(seconds)
                root_hashes.add(result.root_hash)
                counted = result.counters
            else:
                baseline_s.append(run_baseline(root))
    assert counted is not None
    scanner = statistics.median(scanner_s)
    baseline = statistics.median(baseline_s)
    return {
        "root": root,
        "files": files,
        "bytes": size,
        "scanner_files": counted.files,
        "scanner_bytes": counted.bytes_seen,
        "unreadable": counted.unreadable,
        "root_hash_stable": len(root_hashes) == 1,
        "scanner_seconds": [round(s, 3) for s in scanner_s],
        "baseline_seconds": [round(s, 3) for s in baseline_s],
        "scanner_median_s": round(scanner, 3),
        "baseline_median_s": round(baseline, 3),
        "scanner_files_per_s": round(counted.files / scanner),
        "scanner_mb_per_s": round(counted.bytes_seen / scanner / 1e6, 1),
        "baseline_files_per_s": round(files / baseline),
        "baseline_mb_per_s": round(size / baseline / 1e6, 1),
        "ratio_of_medians": round(baseline / scanner, 2),
        "ratio_per_round": [round(b / s, 2) for s, b in zip(scanner_s, baseline_s, strict=True)],
        "baseline_command": baseline_command(root),
    }


def stat_command(root: str) -> str:
    return f"find {shlex.quote(root)} -type f -printf '%s %T@\\n' > /dev/null"


def run_stat_baseline(root: str) -> float:
    """Seconds of ``find -printf`` of every file's size and mtime: a re-scan's floor."""
    started = time.perf_counter()
    subprocess.run(["sh", "-c", stat_command(root)], stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


async def cached_rescans(root: str, rounds: int, concurrency: int | None) -> dict[str, Any]:
    """Re-scans with a filled cache, alternating with ``find -printf`` (context only)."""
    with tempfile.TemporaryDirectory(prefix="bench-scan-cache-") as scratch:
        cache = os.path.join(scratch, "scan-cache.db")
        await run_scanner(root, concurrency=concurrency, cache=cache)  # fills the cache
        seconds: list[float] = []
        finds: list[float] = []
        result = None
        for n in range(rounds):
            if n % 2:
                finds.append(run_stat_baseline(root))
            spent, result = await run_scanner(root, concurrency=concurrency, cache=cache)
            seconds.append(spent)
            if not n % 2:
                finds.append(run_stat_baseline(root))
    assert result is not None
    median = statistics.median(seconds)
    find_median = statistics.median(finds)
    c = result.counters
    return {
        "root": root,
        "files": c.files,
        "files_cached": c.files_cached,
        "files_hashed": c.files_hashed,
        "directories": c.directories,
        "seconds": [round(s, 3) for s in seconds],
        "median_s": round(median, 3),
        "files_per_s": round(c.files / median),
        "directories_per_s": round(c.directories / median),
        "find_printf_seconds": [round(s, 3) for s in finds],
        "find_printf_files_per_s": round(c.files / find_median),
        "find_printf_command": stat_command(root),
    }


def make_large_tree(directory: str, count: int, mib: int) -> None:
    block = os.urandom(16 * 1024 * 1024)
    for n in range(count):
        with open(os.path.join(directory, f"large-{n}.bin"), "wb") as handle:
            written = 0
            while written < mib * 1024 * 1024:
                chunk = block[: min(len(block), mib * 1024 * 1024 - written)]
                # Vary each chunk a little so no two are alike.
                handle.write(n.to_bytes(4, "little") + written.to_bytes(8, "little"))
                handle.write(chunk[12:])
                written += len(chunk)


def print_table(results: dict[str, Any]) -> None:
    print()
    print("| tree | scanner | find \\| xargs sha256sum | ratio (speed) | target |")
    print("|---|---|---|---|---|")
    for key, label in (("small", "small files"), ("large", "large files")):
        r = results.get(key)
        if r is None:
            continue
        print(
            f"| {label}: {r['files']:,} files, {r['bytes'] / 1e6:,.0f} MB "
            f"| {r['scanner_median_s']:.2f} s ({r['scanner_files_per_s']:,} files/s, "
            f"{r['scanner_mb_per_s']:,} MB/s) "
            f"| {r['baseline_median_s']:.2f} s ({r['baseline_files_per_s']:,} files/s, "
            f"{r['baseline_mb_per_s']:,} MB/s) "
            f"| {r['ratio_of_medians']:.2f} (rounds: "
            f"{', '.join(f'{x:.2f}' for x in r['ratio_per_round'])}) "
            f"| >= {TARGETS[key]} |"
        )
    c = results.get("cached")
    if c is not None:
        print(
            f"| cached rescan: {c['files']:,} files, {c['directories']:,} dirs "
            f"| {c['median_s']:.2f} s ({c['files_per_s']:,} files/s) "
            f"| (find -printf size, mtime: {c['find_printf_files_per_s']:,} files/s) | "
            f"| >= {TARGETS['cached_files_per_s']:,} files/s |"
        )


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "when": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "targets": TARGETS,
    }
    print(f"small tree {args.small_root} ...", flush=True)
    results["small"] = await compare(args.small_root, args.rounds, args.concurrency)
    if not args.skip_cached:
        print("cached rescans ...", flush=True)
        results["cached"] = await cached_rescans(args.small_root, args.rounds, args.concurrency)
    if not args.skip_large:
        print(f"large tree ({args.large_count} x {args.large_mb} MiB) ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="bench-scan-large-") as scratch:
            make_large_tree(scratch, args.large_count, args.large_mb)
            results["large"] = await compare(scratch, args.rounds, args.concurrency)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-root", default="/usr/share")
    parser.add_argument("--large-count", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=None, help="[default: scan's]")
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--skip-cached", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "scan.json"))
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    print_table(results)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {output}")


if __name__ == "__main__":
    main()
