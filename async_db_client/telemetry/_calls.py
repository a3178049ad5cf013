"""Observing public calls and statements: what every sink (OpenTelemetry, Prometheus,
the statement log) shares, and the switch that installs the hooks.

A call is described once per (target, tier, operation) by a cached :class:`CallInfo`:
its span name, its attributes, its Prometheus labels. :class:`ObservedCall` is the
context manager a tier call runs in while anything observes; sinks subscribe through
:func:`set_sink` and the hooks of :mod:`.hooks` are None again when none is left.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import QueryError
from . import hooks
from .target import MEMORY, DBTarget

if TYPE_CHECKING:
    from ..executor import Session
    from ..tiers.base import Repository

__all__ = [
    "COLLECTIONS",
    "CallInfo",
    "ObservedCall",
    "call_info",
    "classify",
    "pool_label",
    "set_sink",
]

statement_logger = logging.getLogger("async_db_client.statements")
telemetry_logger = logging.getLogger("async_db_client.telemetry")
T = TypeVar("T")

#: The tables each public call works on, by tier and operation. One table is the
#: call's ``db.collection.name``; every table goes into its ``db.query.summary``.
COLLECTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    **{
        ("remote", op): ("hash_records",)
        for op in (
            "get_hash_record",
            "insert_or_update_hash",
            "insert_or_update_hashes",
            "get_single_field",
            "set_target_hash",
            "get_priority_updates",
            "find_orphaned_entries",
            "find_untracked_children",
            "iter_hash_records",
            "restore_hash_records",
        )
    },
    **{
        ("remote", op): ("remote_logs",)
        for op in ("put_log", "get_logs", "delete_log_entries", "iter_logs", "restore_logs")
    },
    ("core", "get_dashboard_content"): ("core_baselines", "core_sites"),
    ("core", "get_recent_logs"): ("core_logs",),
    ("core", "get_hash_record_count"): ("core_sites",),
    ("core", "get_log_count_last_24h"): ("core_logs",),
    ("core", "get_sites"): ("core_sites",),
    ("core", "put_site_heartbeat"): ("core_sites",),
    ("core", "put_site_root_hash"): ("core_sites",),
    ("core", "put_baseline"): ("core_baselines",),
    ("core", "put_core_log"): ("core_logs",),
    ("pipeline", "get_pipeline_updates"): ("pipeline_updates",),
    ("pipeline", "put_pipeline_hash"): ("pipeline_updates",),
    ("pipeline", "enqueue_pipeline_update"): ("pipeline_updates",),
    ("pipeline", "get_official_sites"): ("pipeline_sites",),
    ("pipeline", "register_official_site"): ("pipeline_sites",),
    ("pipeline", "put_pipeline_site_completion"): ("pipeline_completions",),
    ("pipeline", "get_pipeline_site_completions"): ("pipeline_completions",),
}


def pool_label(pool_name: str) -> str:
    """A pool's bounded name, ``host:port/database`` (SQLite: the file), from the pool's
    redacted URL (``mysql://user@host:port/db`` -> ``host:port/db``; a ``#2`` suffix,
    a second pool to the same target in one client, is kept)."""
    rest = pool_name.split("://", 1)[-1]
    at = rest.find("@")
    slash = rest.find("/")
    if at != -1 and (slash == -1 or at < slash):
        rest = rest[at + 1 :]
    return rest


class CallInfo:
    """What is fixed about one kind of call: computed once, shared by every call."""

    __slots__ = (
        "labels",
        "metric_attributes",
        "name",
        "operation",
        "pool",
        "span_attributes",
        "system",
        "target",
        "tier",
    )

    def __init__(self, target: DBTarget, system: str, tier: str, operation: str) -> None:
        self.target = target
        self.system = system
        self.tier = tier
        self.operation = operation
        self.pool = target.pool_name or ""
        tables = COLLECTIONS.get((tier, operation), ())
        summary = " ".join((operation, *tables))
        if tables:
            self.name = summary
        elif target.namespace:
            self.name = f"{operation} {target.namespace}"
        elif target.address:
            self.name = f"{operation} {target.address}:{target.port}"
        else:
            self.name = operation
        attrs: dict[str, Any] = {"db.system.name": system}
        if target.namespace:
            attrs["db.namespace"] = target.namespace
        if len(tables) == 1:
            attrs["db.collection.name"] = tables[0]
        attrs["db.operation.name"] = operation
        attrs["db.query.summary"] = summary
        if target.address:
            attrs["server.address"] = target.address
            if target.port:
                attrs["server.port"] = target.port
        self.metric_attributes = MappingProxyType(attrs)
        self.span_attributes = MappingProxyType({**attrs, "async_db_client.tier": tier})
        self.labels = (tier, operation, system, self.pool)


_INFOS: dict[tuple[int, str, str, str], CallInfo] = {}
_INFOS_LOCK = threading.Lock()


def call_info(repo: Repository[Any], operation: str) -> CallInfo:
    """The description of ``repo``'s ``operation`` (its store's target, or MEMORY)."""
    target = getattr(repo.store, "target", None) or MEMORY
    system = target.system
    key = (id(target), system, repo.tier, operation)
    info = _INFOS.get(key)
    if info is None or info.target is not target:
        with _INFOS_LOCK:
            info = _INFOS[key] = CallInfo(target, system, repo.tier, operation)
    return info


def classify(exc: BaseException) -> tuple[str, str | None]:
    """``(error.type, db.response.status_code)`` of a failed call: the server's error
    number when the database reported one (``QueryError.code``: MariaDB's ``1062``), as
    both; otherwise the exception's qualified class name
    (``async_db_client.errors.DBConnectionError``) and no status code."""
    code = exc.code if isinstance(exc, QueryError) else None
    if code is not None:
        return str(code), str(code)
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__, None
    return f"{cls.__module__}.{cls.__qualname__}", None


class CallSink(Protocol):
    def start(self, call: ObservedCall) -> None: ...

    def end(
        self, call: ObservedCall, duration: float, error: tuple[str, str | None] | None
    ) -> None:
        """``error``: ``classify(exc)`` of a failed call, None when it succeeded."""
        ...


#: The call running in this context (statements of a call report to it).
CURRENT: contextvars.ContextVar[ObservedCall | None] = contextvars.ContextVar(
    "async_db_client_observed_call", default=None
)


class ObservedCall:
    """The context manager of a public call while something observes calls."""

    __slots__ = (
        "batch",
        "failure_log",
        "info",
        "sinks",
        "span",
        "started",
        "state",
        "statements",
        "token",
    )

    def __init__(
        self,
        info: CallInfo,
        batch: int,
        failure_log: AbstractContextManager[None],
        sinks: tuple[CallSink, ...],
    ) -> None:
        self.info = info
        self.batch = batch
        self.failure_log = failure_log
        self.sinks = sinks
        self.span: Any = None
        self.state: Any = None
        self.statements: list[str] | None = None
        self.started = 0.0
        self.token: contextvars.Token[ObservedCall | None] | None = None

    def __enter__(self) -> None:
        self.token = CURRENT.set(self)
        for sink in self.sinks:
            try:
                sink.start(self)
            except Exception:  # telemetry never fails a call
                telemetry_logger.debug("telemetry sink %r failed", sink, exc_info=True)
        self.started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self.started
        error = None if exc is None else classify(exc)
        for sink in reversed(self.sinks):
            try:
                sink.end(self, duration, error)
            except Exception:  # telemetry never fails a call
                telemetry_logger.debug("telemetry sink %r failed", sink, exc_info=True)
        if self.token is not None:
            with contextlib.suppress(ValueError):  # exited in another context
                CURRENT.reset(self.token)
        self.failure_log.__exit__(exc_type, exc, tb)

    def add_statement(self, sql: str) -> None:
        if self.statements is None:
            self.statements = [sql]
        elif sql not in self.statements:
            self.statements.append(sql)


# ------------------------------------------------------------------ the switch

_sinks: dict[str, CallSink] = {}
_pool_observers: dict[str, hooks.PoolObserver] = {}
#: Statement options: who wants statement timings (the log), who the text (a span).
_statement_log: dict[str, float] = {}
capture_statements = False


def _observe(
    repo: Repository[Any], operation: str, batch: int, failure_log: AbstractContextManager[None]
) -> AbstractContextManager[None]:
    return ObservedCall(call_info(repo, operation), batch, failure_log, _active_sinks)


_active_sinks: tuple[CallSink, ...] = ()


class _Pools:
    """Forwards the pool's reports to every pool observer."""

    def __init__(self, observers: tuple[hooks.PoolObserver, ...]) -> None:
        self.observers = observers

    def connected(self, pool: Any, seconds: float) -> None:
        for observer in self.observers:
            observer.connected(pool, seconds)

    def acquired(self, pool: Any, conn: Any, waited: float, now: float) -> None:
        for observer in self.observers:
            observer.acquired(pool, conn, waited, now)

    def released(self, pool: Any, conn: Any, now: float) -> None:
        for observer in self.observers:
            observer.released(pool, conn, now)

    def timed_out(self, pool: Any) -> None:
        for observer in self.observers:
            observer.timed_out(pool)


def set_sink(
    name: str,
    sink: CallSink | None,
    pools: hooks.PoolObserver | None = None,
    *,
    statement_text: bool | None = None,
) -> None:
    """Subscribe (or with None, unsubscribe) the sink ``name``; then install the hooks
    the remaining subscribers need, or None."""
    global _active_sinks, capture_statements
    if sink is None:
        _sinks.pop(name, None)
        _pool_observers.pop(name, None)
    else:
        _sinks[name] = sink
        if pools is not None:
            _pool_observers[name] = pools
    if statement_text is not None:
        capture_statements = statement_text and sink is not None
    _active_sinks = tuple(_sinks.values())
    hooks.observe_call = _observe if _active_sinks else None
    observers = tuple(_pool_observers.values())
    hooks.pool_observer = _Pools(observers) if observers else None
    _install_statements()


def set_statement_log(slow_threshold: float | None) -> None:
    """Time every statement: DEBUG for each, INFO for those over ``slow_threshold``
    seconds (None: stop)."""
    if slow_threshold is None:
        _statement_log.pop("log", None)
    else:
        _statement_log["log"] = slow_threshold
    _install_statements()


def _install_statements() -> None:
    wanted = capture_statements or bool(_statement_log)
    hooks.run_statement = _run_statement if wanted else None


_SPACES = re.compile(r"\s+")
#: Statements are logged up to this many characters (a multi-row insert is long).
STATEMENT_LOG_CHARS = 200


def statement_summary(sql: str) -> str:
    """A statement as logged: whitespace collapsed, cut at STATEMENT_LOG_CHARS. The
    library's statements carry values as ``?`` parameters, which are never logged."""
    text = _SPACES.sub(" ", sql).strip()
    if len(text) > STATEMENT_LOG_CHARS:
        text = text[:STATEMENT_LOG_CHARS] + "..."
    return text


async def _run_statement(
    session: Session,
    call: Callable[..., Awaitable[T]],
    method: Callable[..., Awaitable[T]],
    sql: str,
    params: Any,
) -> T:
    if capture_statements:
        current = CURRENT.get()
        if current is not None:
            current.add_statement(sql)
    slow = _statement_log.get("log")
    if slow is None:
        return await call(method, sql, params)
    started = time.perf_counter()
    failed = True
    try:
        result = await call(method, sql, params)
        failed = False
        return result
    finally:
        seconds = time.perf_counter() - started
        if seconds >= slow:
            statement_logger.info(
                "%s: slow statement (%.3fs%s): %s",
                session.pool.name,
                seconds,
                ", failed" if failed else "",
                statement_summary(sql),
            )
        elif statement_logger.isEnabledFor(logging.DEBUG):
            statement_logger.debug(
                "%s: %.4fs%s: %s",
                session.pool.name,
                seconds,
                " (failed)" if failed else "",
                statement_summary(sql),
            )
