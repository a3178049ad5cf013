"""What telemetry costs on the hot path: µs per call of point reads, with and without
``async_db_client.telemetry.instrument()``.

Two workloads, each timed as the median of ``--rounds`` rounds of ``--calls`` calls:

* ``memory``: ``get_hash_record`` on the in-memory backend (nothing but the library's
  own code: the worst case for a relative overhead);
* ``mariadb``: ``get_hash_record`` on the live MariaDB server (127.0.0.1:3306 as root,
  override with ``ADC_TEST_MYSQL_*``), a database of its own dropped afterwards.

``--mode plain`` never instruments (so the same script measures a
checkout that has none, for a before/after comparison: run it with ``PYTHONPATH``
pointing at each checkout, alternately); ``--mode instrumented`` instruments with an
SDK tracer provider (spans go to a no-op span processor) and meter provider (an
in-memory reader), the costs a real exporter adds come on top; ``--mode
instrumented-noop`` instruments with the API's no-op providers (the library's own
share of that cost).

Usage: ``python benchmarks/bench_telemetry.py [--mode plain|instrumented] [--rounds 7]
[--calls 20000] [--skip-mariadb]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
from typing import Any

import async_db_client
from async_db_client import DBClientFactory

MYSQL = {
    "host": os.environ.get("ADC_TEST_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("ADC_TEST_MYSQL_PORT", "3306")),
    "user": os.environ.get("ADC_TEST_MYSQL_USER", "root"),
    "password": os.environ.get("ADC_TEST_MYSQL_PASSWORD", ""),
}
RECORD = {"path": "/bench", "current_hash": "ab" * 32, "dirs": ["a"], "files": ["f"]}


def instrument_noop() -> None:
    """The API's no-op providers: what the library itself adds per call."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import NoOpTracerProvider

    from async_db_client import telemetry

    telemetry.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())


def instrument() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from async_db_client import telemetry

    telemetry.instrument(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[InMemoryMetricReader()]),
    )


async def per_call_us(config: dict[str, Any], rounds: int, calls: int) -> list[float]:
    async with DBClientFactory(config).create_client() as db:
        await db.insert_or_update_hash(RECORD)
        for _ in range(min(calls, 200)):  # warm up: connections, caches
            await db.get_hash_record("/bench")
        results = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                await db.get_hash_record("/bench")
            results.append((time.perf_counter() - started) / calls * 1e6)
        return results


def mariadb_config(database: str) -> dict[str, Any]:
    tier = {**MYSQL, "database": database, "pool": {"min_size": 1, "max_size": 2}}
    return {"database": {"remote_type": "mysql", "remote_config": tier}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode", choices=("plain", "instrumented", "instrumented-noop"), default="plain"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--mariadb-calls", type=int, default=2000)
    parser.add_argument("--skip-mariadb", action="store_true")
    args = parser.parse_args()
    if args.mode == "instrumented":
        instrument()
    elif args.mode == "instrumented-noop":
        instrument_noop()
    out: dict[str, Any] = {"mode": args.mode, "package": os.path.dirname(async_db_client.__file__)}
    memory = asyncio.run(
        per_call_us({"database": {"remote_type": "local"}}, args.rounds, args.calls)
    )
    out["memory_us"] = round(statistics.median(memory), 3)
    if not args.skip_mariadb:
        import pymysql

        database = f"adc_bench_{os.getpid()}_{secrets.token_hex(3)}"
        admin = pymysql.connect(**MYSQL, autocommit=True)
        try:
            admin.cursor().execute(f"CREATE DATABASE `{database}`")
            config = mariadb_config(database)
            config["database"]["remote_config"]["auto_migrate"] = True
            mariadb = asyncio.run(per_call_us(config, args.rounds, args.mariadb_calls))
            out["mariadb_us"] = round(statistics.median(mariadb), 2)
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
            admin.close()
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
