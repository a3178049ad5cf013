"""A Prometheus collector of a client's calls and pools (the ``prometheus`` extra).

::

    from prometheus_client import CollectorRegistry, start_http_server
    from async_db_client.telemetry import PrometheusCollector

    registry = CollectorRegistry()
    registry.register(PrometheusCollector(db))
    start_http_server(9464, registry=registry)

Everything is read when Prometheus scrapes, in base units (seconds), counters ending in
``_total``, and labels bounded by the configuration: ``pool`` (``host:port/database``,
SQLite: the file, ``""`` for the in-memory tiers), ``tier``, ``operation`` (a method
name), ``system`` (``mariadb``, ``sqlite``, ...), ``state`` (idle/used) and
``error_type`` (see :func:`async_db_client.telemetry._calls.classify`; ``""`` when the
call succeeded):

* ``async_db_client_operation_duration_seconds`` (histogram, the OpenTelemetry
  conventions' buckets): the client's public calls. Calls are counted from the moment
  the first collector is made, for every target of this client (two clients of one
  target share the series; the in-memory tiers of all clients share ``pool=""``);
* ``async_db_client_pool_connections{state}``, ``..._pool_max_connections``,
  ``..._pool_min_connections``, ``..._pool_pending_requests`` (gauges);
* ``async_db_client_pool_acquires_total``, ``..._pool_acquire_wait_seconds_total``,
  ``..._pool_timeouts_total``, ``..._pool_connections_opened_total``,
  ``..._pool_connect_errors_total``, ``..._pool_connections_lost_total``,
  ``..._pool_connections_discarded_total``, ``..._pool_bad_returns_total``,
  ``..._pool_retries_total`` (the counters of ``db.pool_stats()``);
* ``async_db_client_cache_hits_total{tier, backend}``, ``..._cache_misses_total``,
  ``..._cache_coalesced_total``, ``..._cache_evictions_total``, ``..._cache_expired_total``,
  ``..._cache_invalidations_total``, ``..._cache_discarded_fills_total``,
  ``..._cache_bypassed_total``, ``..._cache_redis_hits_total``,
  ``..._cache_redis_errors_total`` and the gauge ``..._cache_entries`` (the counters of
  ``db.cache_stats()``, for the tiers with a ``cache``).
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..cache.local import COUNTERS as CACHE_COUNTERS
from . import _calls
from ._calls import ObservedCall, pool_label
from .target import MEMORY, target_of

__all__ = ["BUCKETS", "PrometheusCollector"]

PREFIX = "async_db_client"
#: ``db.client.operation.duration``'s buckets (seconds), ``+Inf`` added by Prometheus.
BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)

#: (PoolStats field, metric name without ``_total``, help).
COUNTERS = (
    ("acquired_total", "pool_acquires", "Connections handed out."),
    ("acquire_wait_total_s", "pool_acquire_wait_seconds", "Time spent waiting for one."),
    ("acquire_timeouts", "pool_timeouts", "Acquires that gave up (timeout, too many waiting)."),
    ("connections_opened", "pool_connections_opened", "Connections opened."),
    ("connection_errors", "pool_connect_errors", "Connect attempts that failed."),
    ("connections_lost", "pool_connections_lost", "Connections found dead."),
    ("connections_discarded", "pool_connections_discarded", "Connections closed, not reused."),
    ("bad_returns", "pool_bad_returns", "Returned connections that could not be reset."),
    ("retries", "pool_retries", "Operations retried (lost connection, deadlock)."),
)




class _Series:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.total = 0.0


class _Operations:
    """Durations of every observed call in the process, by labels (one per process)."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], _Series] = {}
        self.lock = threading.Lock()

    def start(self, call: ObservedCall) -> None:
        return None

    def end(
        self, call: ObservedCall, duration: float, error: tuple[str, str | None] | None
    ) -> None:
        key = (*call.info.labels, "" if error is None else error[0])
        with self.lock:
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = _Series()
            series.buckets[bisect_left(BUCKETS, duration)] += 1
            series.count += 1
            series.total += duration


_operations = _Operations()
_collectors: weakref.WeakSet[PrometheusCollector] = weakref.WeakSet()


class PrometheusCollector(Collector):
    """The calls and pools of ``client`` (an async ``DBInstance`` or a sync facade
    client), for ``registry.register(...)``. Observing calls starts with the first
    collector made and stops when :meth:`close` closed the last."""

    def __init__(self, client: Any) -> None:
        self.client = client
        _collectors.add(self)
        _calls.set_sink("prometheus", _operations)

    def close(self) -> None:
        """Stop observing calls for this collector (unregister it from your registry)."""
        _collectors.discard(self)
        if not _collectors:
            _calls.set_sink("prometheus", None)

    def _pool_stats(self) -> dict[str, Any]:
        stats = self.client.pool_stats()
        return {pool_label(name): s for name, s in stats.items()}

    def _pools_of_client(self) -> set[str]:
        """The bounded pool names of the client's configured tiers ("" in memory)."""
        factory = getattr(self.client, "_factory", None)  # the sync facade's client
        if factory is not None:
            database = factory.config.database
            configs = [database.tier(tier) for tier in ("remote", "core", "pipeline")]
            targets = [target_of(config) for config in configs if config is not None]
        else:
            repos = (self.client.remote_db, self.client.core_db, self.client.pipeline_db)
            targets = [
                getattr(repo.store, "target", None) or MEMORY for repo in repos if repo is not None
            ]
        return {target.pool_name or "" for target in targets}

    def describe(self) -> Iterator[Metric]:
        yield from self._families({}, {})
        yield from self._cache_families({})

    def collect(self) -> Iterator[Metric]:
        wanted = self._pools_of_client()
        with _operations.lock:
            series = {
                key: (list(s.buckets), s.count, s.total)
                for key, s in _operations.series.items()
                if key[3] in wanted
            }
        yield from self._families(series, self._pool_stats())
        yield from self._cache_families(self.client.cache_stats())

    def _cache_families(self, caches: dict[str, Any]) -> Iterator[Metric]:
        labels = ("tier", "backend")
        counters = [
            (CounterMetricFamily(f"{PREFIX}_cache_{field}", text, labels=labels), field)
            for field, text in CACHE_COUNTERS.items()
        ]
        entries = GaugeMetricFamily(
            f"{PREFIX}_cache_entries", "Entries held in this process.", labels=labels
        )
        for tier, stats in sorted(caches.items()):
            for counter, field in counters:
                counter.add_metric([tier, stats.backend], getattr(stats, field))
            entries.add_metric([tier, stats.backend], stats.entries)
        for counter, _ in counters:
            yield counter
        yield entries

    def _families(
        self, series: dict[tuple[str, ...], tuple[list[int], int, float]], pools: dict[str, Any]
    ) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            f"{PREFIX}_operation_duration_seconds",
            "Duration of the client's public calls (retries included).",
            labels=("tier", "operation", "system", "pool", "error_type"),
            unit="seconds",
        )
        for key, (buckets, count, total) in sorted(series.items()):
            cumulative, running = [], 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), buckets, strict=True):
                running += n
                cumulative.append((bound, float(running)))
            duration.add_metric(list(key), cumulative, total)
            assert running == count
        yield duration
        connections = GaugeMetricFamily(
            f"{PREFIX}_pool_connections",
            "Open connections by state (idle, used).",
            labels=("pool", "state"),
        )
        gauges = [
            (GaugeMetricFamily(f"{PREFIX}_pool_max_connections", "max_size.", labels=("pool",)),
             "max_size"),
            (GaugeMetricFamily(f"{PREFIX}_pool_min_connections", "min_size.", labels=("pool",)),
             "min_size"),
            (GaugeMetricFamily(f"{PREFIX}_pool_pending_requests",
                               "Tasks waiting for a connection.", labels=("pool",)), "waiting"),
        ]  # fmt: skip
        counters = [
            (CounterMetricFamily(f"{PREFIX}_{name}", help_text, labels=("pool",)), field)
            for field, name, help_text in COUNTERS
        ]
        for pool, stats in sorted(pools.items()):
            connections.add_metric([pool, "idle"], stats.idle)
            connections.add_metric([pool, "used"], stats.in_use)
            for gauge, field in gauges:
                gauge.add_metric([pool], getattr(stats, field))
            for counter, field in counters:
                counter.add_metric([pool], getattr(stats, field))
        yield connections
        for gauge, _ in gauges:
            yield gauge
        for counter, _ in counters:
            yield counter
