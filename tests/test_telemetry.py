"""Telemetry (async_db_client.telemetry): OpenTelemetry spans and metrics read back with
the SDK's in-memory exporter and reader on the in-memory, SQLite and MariaDB backends;
error spans; a Prometheus scrape; statement logs; and nothing at all when off."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from async_db_client import (
    DBClientFactory,
    DBConnectionError,
    FakeClock,
    PoolTimeout,
    QueryTimeoutError,
    telemetry,
)
from async_db_client.sync import DBClientFactory as SyncDBClientFactory
from async_db_client.telemetry import hooks
from tests.support.live import MYSQL, connect, mysql_config
from tests.support.mariadb_server import free_port

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
RECORD = {"path": "/data/secret-name", "current_hash": "ab" * 32, "dirs": ["a"], "files": ["f"]}
LOCAL = {"remote_type": "local", "core_type": "local", "pipeline_type": "local"}


class Otel:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        matching = [s for s in self.finished() if s.name == name]
        assert len(matching) == 1, [s.name for s in self.finished()]
        return matching[0]

    def metrics(self) -> dict[str, Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            if scope.scope.name == "async_db_client"
            for metric in scope.metrics
        }

    def points(self, name: str) -> list[Any]:
        return list(self.metrics()[name].data.data_points)


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    telemetry.instrument(sdk.tracer_provider, sdk.meter_provider)
    try:
        yield sdk
    finally:
        telemetry.uninstrument()


def of_pool(points: Any, pool: str) -> list[Any]:
    """The data points of one pool (other tests' pools may still be alive)."""
    return [p for p in points if p.attributes.get("db.client.connection.pool.name") == pool]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --------------------------------------------------------------------- in memory


@pytest.mark.asyncio
async def test_in_memory_calls_are_client_spans_with_durations(otel: Otel) -> None:
    async with DBClientFactory({"database": LOCAL}, clock=FakeClock()).create_client() as db:
        assert await db.insert_or_update_hash(RECORD)
        result = await db.insert_or_update_hashes(
            [{**RECORD, "path": f"/data/{n}"} for n in range(3)] + [{"path": "bad"}]
        )
        assert result.stored == 3
        assert await db.get_hash_record(RECORD["path"]) is not None
        await db.put_site_heartbeat("site-1")
        await db.get_dashboard_content()
        assert await db.register_official_site("site-1")

    span = otel.span("insert_or_update_hash hash_records")
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attributes(span) == {
        "db.system.name": "inmemory",
        "db.collection.name": "hash_records",
        "db.operation.name": "insert_or_update_hash",
        "db.query.summary": "insert_or_update_hash hash_records",
        "async_db_client.tier": "remote",
    }
    bulk = attributes(otel.span("insert_or_update_hashes hash_records"))
    assert bulk["db.operation.batch.size"] == 4  # every item given, valid or not
    assert "db.operation.batch.size" not in attributes(otel.span("get_hash_record hash_records"))
    assert attributes(otel.span("put_site_heartbeat core_sites"))["async_db_client.tier"] == "core"
    dashboard = attributes(otel.span("get_dashboard_content core_baselines core_sites"))
    assert "db.collection.name" not in dashboard  # two tables
    assert (
        attributes(otel.span("register_official_site pipeline_sites"))["db.collection.name"]
        == "pipeline_sites"
    )
    # No statement text unless asked, and never a value.
    for finished in otel.finished():
        assert "db.query.text" not in attributes(finished)
        assert all("secret-name" not in str(v) for v in attributes(finished).values())

    duration = otel.metrics()["db.client.operation.duration"]
    assert duration.unit == "s"
    points = {p.attributes["db.operation.name"]: p for p in duration.data.data_points}
    assert set(points) >= {"insert_or_update_hash", "get_hash_record", "register_official_site"}
    point = points["get_hash_record"]
    assert tuple(point.explicit_bounds) == BUCKETS
    assert point.count == 1
    assert dict(point.attributes) == {
        "db.system.name": "inmemory",
        "db.collection.name": "hash_records",
        "db.operation.name": "get_hash_record",
        "db.query.summary": "get_hash_record hash_records",
    }


def test_the_sync_facade_is_traced_too(otel: Otel) -> None:
    with SyncDBClientFactory({"database": LOCAL}).create_client() as db:
        assert db.insert_or_update_hash(RECORD)
        assert db.get_hash_record(RECORD["path"]) is not None
    names = [s.name for s in otel.finished()]
    assert names == ["insert_or_update_hash hash_records", "get_hash_record hash_records"]


@pytest.mark.asyncio
async def test_spans_nest_under_the_callers_span(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("caller")
    async with DBClientFactory({"database": LOCAL}).create_client() as db:
        with tracer.start_as_current_span("scan") as parent:
            await db.get_hash_record("/x")
    child = otel.span("get_hash_record hash_records")
    assert child.parent is not None
    assert child.parent.span_id == parent.get_span_context().span_id


@pytest.mark.asyncio
async def test_uninstrument_stops_everything_and_leaves_the_hooks_empty() -> None:
    sdk = Otel()
    telemetry.instrument(sdk.tracer_provider, sdk.meter_provider, capture_statements=True)
    assert telemetry.is_instrumented()
    assert hooks.observe_call is not None and hooks.pool_observer is not None
    telemetry.uninstrument()
    telemetry.uninstrument()  # idempotent
    assert not telemetry.is_instrumented()
    assert (hooks.observe_call, hooks.pool_observer, hooks.run_statement) == (None, None, None)
    async with DBClientFactory({"database": LOCAL}).create_client() as db:
        await db.get_hash_record("/x")
    assert sdk.spans.get_finished_spans() == ()


# ------------------------------------------------------------------------ SQLite


@pytest.mark.asyncio
async def test_sqlite_spans_and_pool_metrics(otel: Otel, tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    tier = {"path": str(path), "pool": {"max_size": 1, "acquire_timeout": 0.2}}
    config = {"database": {"remote_type": "sqlite", "remote_config": tier}}
    async with DBClientFactory(config).create_client() as db:
        assert await db.insert_or_update_hash(RECORD)
        assert await db.get_hash_record(RECORD["path"]) is not None
        # A held connection makes the next acquire time out.
        pool = db.remote_db.store.executor.pool
        async with pool.connection():
            with pytest.raises(PoolTimeout):
                await db.get_hash_record(RECORD["path"])
            counts = {
                p.attributes["db.client.connection.state"]: p.value
                for p in of_pool(otel.points("db.client.connection.count"), str(path))
            }
            assert counts == {"idle": 0, "used": 1}

        [read] = [
            attributes(s)
            for s in otel.finished()
            if s.name == "get_hash_record hash_records" and s.status.status_code is StatusCode.UNSET
        ]
        assert read["db.system.name"] == "sqlite"
        assert read["db.namespace"] == str(path)
        assert "server.address" not in read
        failed = [s for s in otel.finished() if s.status.status_code is StatusCode.ERROR]
        assert len(failed) == 1
        assert attributes(failed[0])["error.type"] == "async_db_client.errors.PoolTimeout"
        assert "db.response.status_code" not in attributes(failed[0])

        metrics = otel.metrics()
        name = {"db.client.connection.pool.name": str(path)}
        for gauge, unit, value in (
            ("db.client.connection.max", "{connection}", 1),
            ("db.client.connection.idle.max", "{connection}", 1),
            ("db.client.connection.idle.min", "{connection}", 1),
            ("db.client.connection.pending_requests", "{request}", 0),
        ):
            assert metrics[gauge].unit == unit
            [point] = of_pool(metrics[gauge].data.data_points, str(path))
            assert (dict(point.attributes), point.value) == (name, value)
        counts = {
            p.attributes["db.client.connection.state"]: p.value
            for p in of_pool(metrics["db.client.connection.count"].data.data_points, str(path))
        }
        assert counts == {"idle": 1, "used": 0}
        assert metrics["db.client.connection.count"].unit == "{connection}"
        [timeouts] = of_pool(metrics["db.client.connection.timeouts"].data.data_points, str(path))
        assert (dict(timeouts.attributes), timeouts.value) == (name, 1)
        assert metrics["db.client.connection.timeouts"].unit == "{timeout}"
        for histogram in ("create_time", "wait_time", "use_time"):
            metric = metrics[f"db.client.connection.{histogram}"]
            assert metric.unit == "s"
            [point] = of_pool(metric.data.data_points, str(path))
            assert dict(point.attributes) == name
            assert tuple(point.explicit_bounds) == BUCKETS
            assert point.count >= 1
    # A closed client's pools are no longer reported.
    metrics = otel.metrics()
    assert "db.client.connection.max" not in metrics or not of_pool(
        metrics["db.client.connection.max"].data.data_points, str(path)
    )


@pytest.mark.asyncio
async def test_statement_text_only_when_asked_and_never_parameters(tmp_path: Path) -> None:
    sdk = Otel()
    telemetry.instrument(sdk.tracer_provider, sdk.meter_provider, capture_statements=True)
    try:
        tier = {"path": str(tmp_path / "t.db")}
        config = {"database": {"remote_type": "sqlite", "remote_config": tier}}
        async with DBClientFactory(config).create_client() as db:
            await db.migrate()
            assert await db.get_hash_record(RECORD["path"]) is None
    finally:
        telemetry.uninstrument()
    [span] = [s for s in sdk.spans.get_finished_spans() if s.name.startswith("get_hash_record")]
    text = attributes(span)["db.query.text"]
    assert text.startswith("SELECT ") and "FROM hash_records WHERE path_key = ?" in text
    assert "secret-name" not in text


# ---------------------------------------------------------------------- failures


@pytest.mark.asyncio
async def test_a_refused_connection_is_an_error_span(otel: Otel) -> None:
    port = free_port()  # nothing listens there
    tier = {
        "host": "127.0.0.1",
        "port": port,
        "database": "nowhere",
        "user": "u",
        "password": "not-in-any-span",
        "pool": {"connect_timeout": 0.5, "connect_retry_budget": 0.3, "min_size": 0},
    }
    config = {"database": {"remote_type": "mysql", "remote_config": tier}}
    async with DBClientFactory(config).create_client() as db:
        with pytest.raises(DBConnectionError):
            await db.get_hash_record("/x")
    span = otel.span("get_hash_record hash_records")
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span) == {
        "db.system.name": "mysql",  # no server answered to say it is MariaDB
        "db.namespace": "nowhere",
        "db.collection.name": "hash_records",
        "db.operation.name": "get_hash_record",
        "db.query.summary": "get_hash_record hash_records",
        "server.address": "127.0.0.1",
        "server.port": port,
        "async_db_client.tier": "remote",
        "error.type": "async_db_client.errors.DBConnectionError",
    }
    [point] = otel.points("db.client.operation.duration")
    assert point.attributes["error.type"] == "async_db_client.errors.DBConnectionError"
    assert not span.events  # no exception message: it could quote a value


# ------------------------------------------------------------------------ MariaDB


@pytest.mark.live
@pytest.mark.asyncio
async def test_mariadb_spans_and_metrics(otel: Otel, mysql_database: str) -> None:
    config = {"database": {"remote_type": "mysql", "remote_config": mysql_config(mysql_database)}}
    async with DBClientFactory(config).create_client() as db:
        assert await db.insert_or_update_hash(RECORD)
        assert await db.get_hash_record(RECORD["path"]) is not None
        with connect() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            (version,) = cursor.fetchone()
        system = "mariadb" if "mariadb" in version.lower() else "mysql"
        read = attributes(otel.span("get_hash_record hash_records"))
        assert read == {
            "db.system.name": system,
            "db.namespace": mysql_database,
            "db.collection.name": "hash_records",
            "db.operation.name": "get_hash_record",
            "db.query.summary": "get_hash_record hash_records",
            "server.address": MYSQL["host"],
            "server.port": MYSQL["port"],
            "async_db_client.tier": "remote",
        }
        # The first call connected inside its span: it says what the server turned out to be.
        assert attributes(otel.span("insert_or_update_hash hash_records"))["db.system.name"] == (
            system
        )
        pool_name = f"{MYSQL['host']}:{MYSQL['port']}/{mysql_database}"
        metrics = otel.metrics()
        [maximum] = of_pool(metrics["db.client.connection.max"].data.data_points, pool_name)
        assert maximum.value == 8
        durations = metrics["db.client.operation.duration"].data.data_points
        assert {p.attributes["db.system.name"] for p in durations} == {system}
        assert all(p.attributes["server.port"] == MYSQL["port"] for p in durations)


@pytest.mark.live
@pytest.mark.asyncio
async def test_a_query_timeout_is_an_error_span_with_the_servers_code(
    otel: Otel, mysql_database: str
) -> None:
    config = {
        "database": {
            "remote_type": "mysql",
            "remote_config": mysql_config(mysql_database, pool={"query_timeout": 0.5}),
        }
    }
    async with DBClientFactory(config).create_client() as db:
        await db.migrate()
        with connect(mysql_database) as locker, locker.cursor() as cursor:
            cursor.execute("LOCK TABLES hash_records WRITE")
            with pytest.raises(QueryTimeoutError) as raised:
                await db.get_hash_record("/locked")
    span = otel.span("get_hash_record hash_records")
    assert span.status.status_code is StatusCode.ERROR
    found = attributes(span)
    if raised.value.code is not None:  # the server ended it (MariaDB: max_statement_time)
        assert found["db.response.status_code"] == str(raised.value.code)
        assert found["error.type"] == str(raised.value.code)
    else:  # the client's own deadline
        assert "db.response.status_code" not in found
        assert found["error.type"] == "async_db_client.errors.QueryTimeoutError"


# --------------------------------------------------------------------- Prometheus


def cache_counts(otel: Otel) -> dict[str, int]:
    """The remote tier's memory-cache counters as OpenTelemetry last collected them (0
    for a counter without a point yet)."""
    metrics = otel.metrics() if otel.reader.get_metrics_data() is not None else {}
    counts = {}
    for field in ("hits", "misses", "entries"):
        name = f"async_db_client.cache.{field}"
        points = [] if name not in metrics else list(metrics[name].data.data_points)
        counts[field] = sum(
            p.value
            for p in points
            if p.attributes
            == {"async_db_client.tier": "remote", "async_db_client.cache.backend": "memory"}
        )
    return counts


def test_cache_counters_are_observed_once_per_cache_whatever_the_threads(
    otel: Otel, tmp_path: Path
) -> None:
    tier = {"path": str(tmp_path / "c.db"), "cache": {"backend": "memory"}}
    config = {"database": {"remote_type": "sqlite", "remote_config": tier}}
    before = cache_counts(otel)  # other tests' caches may still be alive: deltas only
    with SyncDBClientFactory(config).create_client() as db:
        assert db.insert_or_update_hash(RECORD)
        assert db.get_hash_record(RECORD["path"]) is not None  # a miss, then cached
        # Another thread: its own client and pools, the same cache (counted once).
        thread = threading.Thread(target=lambda: db.get_hash_record(RECORD["path"]))
        thread.start()
        thread.join()
        assert db.get_hash_record(RECORD["path"]) is not None
        after = cache_counts(otel)
        stats = db.cache_stats()["remote"]
    assert (stats.misses, stats.hits, stats.entries) == (1, 2, 1)
    assert {k: after[k] - before[k] for k in after} == {"hits": 2, "misses": 1, "entries": 1}


@pytest.mark.asyncio
async def test_a_prometheus_scrape(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    tier = {"path": str(tmp_path / "p.db"), "cache": {"backend": "memory"}}
    config = {"database": {"remote_type": "sqlite", "remote_config": tier, "core_type": "local"}}
    async with DBClientFactory(config).create_client() as db:
        collector = telemetry.PrometheusCollector(db)
        registry = CollectorRegistry()
        registry.register(collector)
        try:
            assert await db.insert_or_update_hash(RECORD)
            assert await db.get_hash_record(RECORD["path"]) is not None
            assert await db.get_hash_record(RECORD["path"]) is not None  # from the cache
            await db.put_site_heartbeat("site-1")
            exposition = generate_latest(registry).decode()
        finally:
            registry.unregister(collector)
            collector.close()
    assert hooks.observe_call is None  # the last collector closed
    assert "secret-name" not in exposition
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    duration = families["async_db_client_operation_duration_seconds"]
    assert duration.type == "histogram"
    buckets = {
        (s.labels["operation"], s.labels["le"]): s.value
        for s in duration.samples
        if s.name.endswith("_bucket")
    }
    assert [le for op, le in buckets if op == "get_hash_record"] == [
        *(str(b) for b in BUCKETS),
        "+Inf",
    ]
    assert buckets[("get_hash_record", "+Inf")] == 2
    cache = {
        name: [(s.labels, s.value) for s in families[f"async_db_client_cache_{name}"].samples]
        for name in ("hits", "misses", "entries")
    }
    assert cache == {
        "hits": [({"tier": "remote", "backend": "memory"}, 1.0)],
        "misses": [({"tier": "remote", "backend": "memory"}, 1.0)],
        "entries": [({"tier": "remote", "backend": "memory"}, 1.0)],
    }
    [count] = [
        s
        for s in duration.samples
        if s.name.endswith("_count") and s.labels["operation"] == "put_site_heartbeat"
    ]
    assert count.labels == {
        "tier": "core",
        "operation": "put_site_heartbeat",
        "system": "inmemory",
        "pool": "",
        "error_type": "",
    }
    pool = str(tmp_path / "p.db")
    connections = {
        s.labels["state"]: s.value for s in families["async_db_client_pool_connections"].samples
    }
    assert connections == {"idle": 1.0, "used": 0.0}
    assert families["async_db_client_pool_max_connections"].samples[0].labels == {"pool": pool}
    opened = families["async_db_client_pool_connections_opened"]
    assert opened.type == "counter"
    assert [s.name for s in opened.samples] == ["async_db_client_pool_connections_opened_total"]
    assert opened.samples[0].value >= 1
    assert "async_db_client_pool_acquire_wait_seconds" in families


# ------------------------------------------------------------------------ logging


@pytest.mark.asyncio
async def test_statement_logs_give_durations_never_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tier = {"path": str(tmp_path / "l.db")}
    config = {"database": {"remote_type": "sqlite", "remote_config": tier}}
    telemetry.log_statements(0.0)  # every statement is "slow"
    try:
        with caplog.at_level(logging.DEBUG, logger="async_db_client"):
            async with DBClientFactory(config).create_client() as db:
                assert await db.insert_or_update_hash(RECORD)
    finally:
        telemetry.log_statements(None)
    assert hooks.run_statement is None
    slow = [r for r in caplog.records if r.name == "async_db_client.statements"]
    assert any("slow statement" in r.getMessage() and "INSERT INTO hash_records" in r.getMessage()
               for r in slow)  # fmt: skip
    assert all(r.levelno == logging.INFO for r in slow)
    connects = [r.getMessage() for r in caplog.records if "connected in" in r.getMessage()]
    assert connects and all(r.startswith("pool sqlite://") for r in connects)
    assert "secret-name" not in caplog.text


def test_the_library_is_silent_by_default() -> None:
    library = logging.getLogger("async_db_client")
    assert any(isinstance(h, logging.NullHandler) for h in library.handlers)
    assert hooks.run_statement is None  # statement timing is off until asked


def test_cli_verbose_logs_connects_and_statement_durations(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    tree = tmp_path / "tree"
    (tree / "a").mkdir(parents=True)
    (tree / "a" / "f").write_text("x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNC_DB_CLIENT")}
    env["ASYNC_DB_CLIENT_DATA_DIR"] = str(tmp_path / "data")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "async_db_client", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    quiet = cli("scan", "--no-progress", "--json", str(tree))
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = cli("-v", "--slow", "0", "scan", "--no-progress", "--json", str(tree))
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO async_db_client.pool: pool sqlite://" in verbose.stderr
    assert "connected in" in verbose.stderr
    assert "slow statement" in verbose.stderr
    assert "DEBUG" not in verbose.stderr
    debug = cli("-vv", "get", "--json", str(tree / "a"))
    assert debug.returncode == 0, debug.stderr
    assert json.loads(debug.stdout)["path"] == str(tree / "a")
    lines = [ln for ln in debug.stderr.splitlines() if "async_db_client.statements" in ln]
    assert any(ln.startswith("DEBUG") and "FROM hash_records" in ln for ln in lines)
    duration = re.compile(r"DEBUG async_db_client\.statements: sqlite://\S+: \d+\.\d{4}s: \S")
    assert lines and all(duration.match(ln) for ln in lines), lines


def test_scan_serves_metrics_while_it_runs(tmp_path: Path) -> None:
    from async_db_client.cli.metrics import serving_metrics

    async def scrape() -> str:
        import urllib.request

        port = free_port()
        async with DBClientFactory({"database": LOCAL}).create_client() as db:
            with serving_metrics(db, port, "127.0.0.1"):
                await db.get_hash_record("/x")
                url = f"http://127.0.0.1:{port}/metrics"
                return await asyncio.to_thread(
                    lambda: urllib.request.urlopen(url, timeout=10).read().decode()
                )

    text = asyncio.run(scrape())
    assert (
        'async_db_client_operation_duration_seconds_count{error_type="",operation="get_hash_record"'
        in text
    )
    assert hooks.observe_call is None
