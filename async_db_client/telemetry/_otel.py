"""The OpenTelemetry sink: a span and a duration per public call, the pool's metrics.

Imported by :func:`async_db_client.telemetry.instrument` only, so ``opentelemetry-api``
is needed only by those who instrument (the ``otel`` extra).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from .. import __version__
from ..cache.local import COUNTERS as CACHE_COUNTERS
from . import hooks
from ._calls import ObservedCall, pool_label

__all__ = ["DURATION_BUCKETS", "OtelSink"]

#: The bucket boundaries the conventions give for ``db.client.operation.duration``
#: (also used for the pool's create, wait and use times).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
SCOPE = "async_db_client"


def _live_pools() -> Iterator[tuple[str, Any]]:
    """The open pools of this process with their bounded names (``host:port/db``)."""
    for pool in list(hooks.POOLS):
        if not pool.closed:
            yield pool_label(pool.name), pool


class OtelSink:
    """Spans and metrics through the given (or the global) providers."""

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.active = True
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        buckets = list(DURATION_BUCKETS)

        def seconds(name: str, description: str) -> Any:
            """A histogram of durations, in :data:`DURATION_BUCKETS`."""
            return meter.create_histogram(
                name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
            )

        self.duration = seconds(
            "db.client.operation.duration", "Duration of database client operations."
        )
        self.create_time = seconds(
            "db.client.connection.create_time", "The time it took to create a new connection."
        )
        self.wait_time = seconds(
            "db.client.connection.wait_time",
            "The time it took to obtain an open connection from the pool.",
        )
        self.use_time = seconds(
            "db.client.connection.use_time",
            "The time between borrowing a connection and returning it to the pool.",
        )
        self.timeouts = meter.create_counter(
            "db.client.connection.timeouts",
            unit="{timeout}",
            description="The number of connection timeouts that have occurred trying to "
            "obtain a connection from the pool.",
        )
        gauges = (
            ("db.client.connection.count", "{connection}", self._count,
             "The number of connections that are currently in state described by the "
             "state attribute."),
            ("db.client.connection.max", "{connection}", self._max,
             "The maximum number of open connections allowed."),
            ("db.client.connection.idle.max", "{connection}", self._idle_max,
             "The maximum number of idle open connections allowed."),
            ("db.client.connection.idle.min", "{connection}", self._idle_min,
             "The minimum number of idle open connections allowed."),
            ("db.client.connection.pending_requests", "{request}", self._pending,
             "The number of current pending requests for an open connection."),
        )  # fmt: skip
        for name, unit, callback, description in gauges:
            meter.create_observable_up_down_counter(
                name, callbacks=[callback], unit=unit, description=description
            )
        # The caches' counters (no convention covers a client-side cache): monotonic sums
        # of the live caches' counts, by tier and backend, read at collection time; the
        # entries they hold, a gauge.
        cache_instruments: list[tuple[Callable[..., object], str, str, str]] = [
            (meter.create_observable_counter, field, "{event}", description)
            for field, description in CACHE_COUNTERS.items()
        ]
        cache_instruments.append(
            (
                meter.create_observable_up_down_counter,
                "entries",
                "{entry}",
                "Entries held in this process.",
            )
        )
        for create, field, unit, description in cache_instruments:
            create(
                f"async_db_client.cache.{field}",
                callbacks=[functools.partial(self._cache_counts, field)],
                unit=unit,
                description=description,
            )
        #: Checkout time of each borrowed connection (loop time), for use_time.
        self._borrowed: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ calls

    def start(self, call: ObservedCall) -> None:
        info = call.info
        attributes: Mapping[str, Any] = info.span_attributes
        if call.batch >= 2:  # the conventions: a batch has two operations or more
            attributes = {**attributes, "db.operation.batch.size": call.batch}
        span = self.tracer.start_span(info.name, kind=SpanKind.CLIENT, attributes=attributes)
        call.span = span
        call.state = otel_context.attach(trace.set_span_in_context(span))

    def end(
        self, call: ObservedCall, duration: float, error: tuple[str, str | None] | None
    ) -> None:
        span = call.span
        if span is None:  # start failed
            return
        info = call.info
        attributes: Any = info.metric_attributes
        system = info.target.system
        if system != info.system:  # the first call connected and met MariaDB
            span.set_attribute("db.system.name", system)
            attributes = {**attributes, "db.system.name": system}
        if call.statements:
            span.set_attribute("db.query.text", "; ".join(call.statements))
        if error is not None:
            error_type, status_code = error
            attributes = {**attributes, "error.type": error_type}
            span.set_attribute("error.type", error_type)
            if status_code is not None:
                attributes["db.response.status_code"] = status_code
                span.set_attribute("db.response.status_code", status_code)
            span.set_status(Status(StatusCode.ERROR))
        try:
            self.duration.record(duration, attributes)
        finally:
            otel_context.detach(call.state)
            span.end()

    # ------------------------------------------------------------------ pools

    def connected(self, pool: Any, seconds: float) -> None:
        self.create_time.record(seconds, {"db.client.connection.pool.name": pool_label(pool.name)})

    def acquired(self, pool: Any, conn: Any, waited: float, now: float) -> None:
        self._borrowed[conn] = now
        self.wait_time.record(waited, {"db.client.connection.pool.name": pool_label(pool.name)})

    def released(self, pool: Any, conn: Any, now: float) -> None:
        since = self._borrowed.pop(conn, None)
        if since is not None:
            self.use_time.record(
                now - since, {"db.client.connection.pool.name": pool_label(pool.name)}
            )

    def timed_out(self, pool: Any) -> None:
        self.timeouts.add(1, {"db.client.connection.pool.name": pool_label(pool.name)})

    # Observable gauges: read from the live pools at collection time, summed by name
    # (two clients on one target have two pools of the same name).

    def _by_name(self, value: Any) -> dict[str, int]:
        totals: dict[str, int] = {}
        if self.active:
            for name, pool in _live_pools():
                totals[name] = totals.get(name, 0) + value(pool)
        return totals

    def _observe(self, value: Any, **extra: str) -> Iterable[Observation]:
        return [
            Observation(total, {"db.client.connection.pool.name": name, **extra})
            for name, total in self._by_name(value).items()
        ]

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            *self._observe(lambda p: p.get_stats().idle, **{"db.client.connection.state": "idle"}),
            *self._observe(
                lambda p: p.get_stats().in_use, **{"db.client.connection.state": "used"}
            ),
        ]

    def _max(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda p: p.settings.max_size)

    def _idle_max(self, options: CallbackOptions) -> Iterable[Observation]:
        # Idle connections are kept up to max_size (those above min_size close after
        # max_idle seconds).
        return self._observe(lambda p: p.settings.max_size)

    def _idle_min(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda p: p.settings.min_size)

    def _pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda p: p.get_stats().waiting)

    def _cache_counts(self, field: str, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[str, str], int] = {}
        # Counted per LocalCache, which holds the counts: the sync facade's per-thread
        # clients have layers of their own over one shared LocalCache.
        seen: set[int] = set()
        if self.active:
            for cache in list(hooks.CACHES):
                if not cache.closed and id(cache.layer.local) not in seen:
                    seen.add(id(cache.layer.local))
                    stats = cache.stats()
                    key = (cache.tier, stats.backend)
                    totals[key] = totals.get(key, 0) + getattr(stats, field)
        return [
            Observation(total, {"async_db_client.tier": tier, "async_db_client.cache.backend": b})
            for (tier, b), total in totals.items()
        ]
