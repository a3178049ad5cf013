"""What the sync facade costs per call: in-memory ``get_hash_record`` awaited on the
async client, called through ``async_db_client.sync`` (the calling thread runs its own
loop), and, for comparison, the same async call handed to a loop in another thread (the
design the facade replaced: ``asyncio.run_coroutine_threadsafe(...).result()``, and anyio's
``BlockingPortal.call``).

The in-memory backend does nothing but the library's own work, so the differences are
the facade's overhead alone (issue 12's target: sync minus async ≤ 25 µs). Contenders
alternate within each round (rotated order), medians of ``--rounds`` rounds of
``--calls`` calls; results in ``benchmarks/results/sync.json``.

Where valgrind is installed, the same two calls are also counted in instructions
(``valgrind --tool=callgrind``, the difference between runs of 200 and 1,200 calls, so
start-up cancels out): a figure the machine's load does not move.

Usage: ``python benchmarks/bench_sync.py [--rounds 7] [--calls 20000]``; with
``--count async|sync_facade N`` it only makes N calls (what callgrind runs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anyio.from_thread import start_blocking_portal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from async_db_client import DBClientFactory
from async_db_client.sync import DBClientFactory as SyncFactory
from benchmarks import instructions

CONFIG = {"database": {"remote_type": "local", "core_type": "local", "pipeline_type": "local"}}
RECORD = {"path": "/bench", "current_hash": "ab" * 32, "dirs": ["a"], "files": ["f"]}
RESULTS = Path(__file__).resolve().parent / "results" / "sync.json"


def timed(call: Callable[[], object], calls: int) -> float:
    """µs per call of ``call`` made ``calls`` times in a row."""
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def count(mode: str, calls: int) -> None:
    """Make ``calls`` in-memory reads, awaited or through the facade (under callgrind)."""
    sdb = SyncFactory(CONFIG).create_client()
    sdb.insert_or_update_hash(RECORD)
    sdb.get_hash_record("/bench")
    if mode == "async":
        adb = sdb.async_client

        async def reads() -> None:
            for _ in range(calls):
                await adb.get_hash_record("/bench")

        sdb._lane().run(reads())
    else:
        for _ in range(calls):
            sdb.get_hash_record("/bench")
    sdb.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--count", nargs=2, metavar=("MODE", "N"))
    args = parser.parse_args()
    if args.count:
        count(args.count[0], int(args.count[1]))
        return

    # The async client on a loop of this thread: each round is one run of that loop, so
    # a call costs the library's own work only.
    loop = asyncio.new_event_loop()
    adb = loop.run_until_complete(DBClientFactory(CONFIG).create_client().__aenter__())
    loop.run_until_complete(adb.insert_or_update_hash(RECORD))

    async def async_round(calls: int) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            await adb.get_hash_record("/bench")
        return (time.perf_counter() - started) / calls * 1e6

    sdb = SyncFactory(CONFIG).create_client()
    sdb.insert_or_update_hash(RECORD)

    # A loop in another thread, as a portal-based facade would use.
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    tdb = asyncio.run_coroutine_threadsafe(
        DBClientFactory(CONFIG).create_client().__aenter__(), other
    ).result()
    asyncio.run_coroutine_threadsafe(tdb.insert_or_update_hash(RECORD), other).result()

    with start_blocking_portal() as portal:
        pdb = portal.call(DBClientFactory(CONFIG).create_client().__aenter__)
        portal.call(pdb.insert_or_update_hash, RECORD)

        contenders: dict[str, Callable[[int], float]] = {
            "async": lambda n: loop.run_until_complete(async_round(n)),
            "sync_facade": lambda n: timed(lambda: sdb.get_hash_record("/bench"), n),
            "thread_handoff": lambda n: timed(
                lambda: asyncio.run_coroutine_threadsafe(
                    tdb.get_hash_record("/bench"), other
                ).result(),
                n,
            ),
            "anyio_portal": lambda n: timed(lambda: portal.call(pdb.get_hash_record, "/bench"), n),
        }
        names = list(contenders)
        for name in names:  # warm up
            contenders[name](min(args.calls, 500))
        per_call: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                per_call[name].append(contenders[name](args.calls))
        portal.call(pdb.aclose)

    asyncio.run_coroutine_threadsafe(tdb.aclose(), other).result()
    other.call_soon_threadsafe(other.stop)
    thread.join()
    other.close()
    sdb.close()
    loop.run_until_complete(adb.aclose())
    loop.close()

    median = {name: statistics.median(values) for name, values in per_call.items()}
    # Paired by round: the machine's load moves both members of a pair alike.
    overhead = statistics.median(
        s - a for s, a in zip(per_call["sync_facade"], per_call["async"], strict=True)
    )
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "rounds": args.rounds,
        "calls": args.calls,
        "us_per_call": per_call,
        "median_us_per_call": {k: round(v, 2) for k, v in median.items()},
        "sync_overhead_us": round(overhead, 2),
        "target_sync_overhead_us": 25,
        "instructions_per_call": instructions.per_call(__file__, ("async", "sync_facade")),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    shown = ("median_us_per_call", "sync_overhead_us", "instructions_per_call")
    print(json.dumps({k: result[k] for k in shown}))


if __name__ == "__main__":
    main()
