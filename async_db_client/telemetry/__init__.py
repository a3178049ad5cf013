"""Telemetry: OpenTelemetry traces and metrics, a Prometheus collector, statement logs.

Nothing here runs until asked: the library's hot paths check one module attribute
(:mod:`.hooks`), None until :func:`instrument`, a :class:`PrometheusCollector` or
:func:`log_statements` turns something on.

**OpenTelemetry** (``pip install 'async_db_client[otel]'``, ``opentelemetry-api`` only;
bring your own SDK and exporter)::

    from async_db_client import telemetry
    telemetry.instrument()            # the global tracer and meter providers
    telemetry.instrument(tracer_provider=tp, meter_provider=mp, capture_statements=True)
    telemetry.uninstrument()

It follows the stable database client conventions:

* one ``CLIENT`` span per public call (``get_hash_record``, ``insert_or_update_hashes``,
  ...), named ``{operation} {table}`` (``insert_or_update_hash hash_records``, also its
  ``db.query.summary``), with ``db.system.name`` (``mariadb`` or ``mysql`` as the server
  says at connect; ``microsoft.sql_server``; ``sqlite``; ``inmemory`` for the in-memory
  fakes), ``db.namespace`` (the database; SQLite: the file path; the one configured,
  not re-read per call), ``db.collection.name`` (when the call works on one table),
  ``db.operation.name`` (the method's name), ``server.address``, ``server.port``,
  ``db.operation.batch.size`` on bulk calls of two items or more, and the custom
  ``async_db_client.tier``. A failed call has status ERROR, ``error.type`` and, when
  the server reported an error number, ``db.response.status_code``: ``error.type`` is
  that number (``1062``) if there is one, else the exception's qualified class name
  (``async_db_client.errors.DBConnectionError``). Exception messages are not recorded
  (a server's message may quote a value). ``db.query.text`` (the statements, with
  ``?`` placeholders, joined by ``; ``) only with ``capture_statements=True``;
  parameters never. A retried call is one span.
* ``db.client.operation.duration`` (histogram, ``s``, the conventions' buckets) with
  the span's attributes (without the tier);
* the pools' ``db.client.connection.count`` (``state`` idle/used), ``.max``,
  ``.idle.min`` (``min_size``), ``.idle.max`` (``max_size``), ``.pending_requests``
  (observed at collection time), ``.timeouts`` (counter), ``.create_time``,
  ``.wait_time``, ``.use_time`` (histograms, ``s``), each with
  ``db.client.connection.pool.name`` = ``host:port/database`` (SQLite: the file path;
  ``#2`` when one client has two pools to one target).

**Prometheus** (``pip install 'async_db_client[prometheus]'``)::

    registry.register(telemetry.PrometheusCollector(db))

**Logs**: :func:`log_statements` times every statement (``async_db_client.statements``
logger: DEBUG for each, INFO over the threshold); the command line's ``-v`` turns it
on. The library's loggers have a NullHandler and are silent until configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _calls, hooks
from .target import MEMORY, DBTarget

if TYPE_CHECKING:
    from .prometheus import PrometheusCollector

__all__ = [
    "MEMORY",
    "DBTarget",
    "PrometheusCollector",
    "hooks",
    "instrument",
    "is_instrumented",
    "log_statements",
    "uninstrument",
]

_otel: Any = None


def instrument(
    tracer_provider: Any = None, meter_provider: Any = None, *, capture_statements: bool = False
) -> None:
    """Report every client's calls and pools to OpenTelemetry, from now on, in this
    process. ``None`` providers mean the global ones. Calling it again replaces the
    providers. ``capture_statements`` adds ``db.query.text`` (never parameters)."""
    global _otel
    try:
        from ._otel import OtelSink
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "async_db_client.telemetry.instrument() needs opentelemetry-api: "
            "pip install 'async_db_client[otel]'"
        ) from exc
    if _otel is not None:
        _otel.active = False
    _otel = OtelSink(tracer_provider, meter_provider)
    _calls.set_sink("otel", _otel, _otel, statement_text=capture_statements)


def uninstrument() -> None:
    """Stop reporting to OpenTelemetry (observable instruments already registered with a
    meter report nothing from now on). Idempotent."""
    global _otel
    if _otel is not None:
        _otel.active = False
        _otel = None
    _calls.set_sink("otel", None, statement_text=False)


def is_instrumented() -> bool:
    """True between :func:`instrument` and :func:`uninstrument`."""
    return _otel is not None


def log_statements(slow_threshold: float | None = 1.0) -> None:
    """Time every statement the library runs and log it on ``async_db_client.statements``:
    at DEBUG each one with its duration, at INFO those that took ``slow_threshold``
    seconds or more. Statements are logged with their ``?`` placeholders, never their
    parameters, cut at 200 characters. ``None`` stops it."""
    _calls.set_statement_log(slow_threshold)


def __getattr__(name: str) -> Any:
    if name == "PrometheusCollector":
        from .prometheus import PrometheusCollector

        return PrometheusCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
