"""The seams the library's hot paths check, and nothing else: no dependency, no cost.

Three module attributes, None until something observes (``instrument()``, a
``PrometheusCollector``, ``log_statements()``):

* :data:`observe_call`: every public tier call (``Repository._logged``) asks it for the
  context manager to run in, passing the plain failure log to wrap;
* :data:`pool_observer`: the pool reports each connect, checkout and return to it;
* :data:`run_statement`: a session runs each statement (``execute``/``fetchall``)
  through it, for statement timings and the opt-in statement text.

When they are None the only cost is reading a module attribute. (Typed loosely: this
module imports nothing of the package, which imports it.) Every pool registers
itself in :data:`POOLS` when it is made, every tier cache in :data:`CACHES` (weak
sets: observable instruments read the live ones at collection time; nothing per call).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

__all__ = ["CACHES", "POOLS", "CallObserver", "PoolObserver", "StatementRunner"]

T = TypeVar("T")


class CallObserver(Protocol):
    def __call__(
        self,
        repo: Any,
        operation: str,
        batch: int,
        failure_log: AbstractContextManager[None],
    ) -> AbstractContextManager[None]:
        """The context manager the call runs in; it must run ``failure_log``'s exit."""
        ...


class PoolObserver(Protocol):
    def connected(self, pool: Any, seconds: float) -> None:
        """A connection was opened in ``seconds``."""
        ...

    def acquired(self, pool: Any, conn: Any, waited: float, now: float) -> None:
        """``conn`` was handed out after ``waited`` seconds, at loop time ``now``."""
        ...

    def released(self, pool: Any, conn: Any, now: float) -> None:
        """``conn`` came back at loop time ``now``."""
        ...

    def timed_out(self, pool: Any) -> None:
        """An acquire gave up: no connection within its timeout, or too many waiting."""
        ...


class StatementRunner(Protocol):
    def __call__(
        self,
        session: Any,
        call: Callable[..., Awaitable[T]],
        method: Callable[..., Awaitable[T]],
        sql: str,
        params: Any,
    ) -> Awaitable[T]:
        """``await call(method, sql, params)``, observed."""
        ...


observe_call: CallObserver | None = None
pool_observer: PoolObserver | None = None
run_statement: StatementRunner | None = None

#: Every pool made in this process and not yet collected.
POOLS: weakref.WeakSet[Any] = weakref.WeakSet()
#: Every tier cache (``CachedStore``) made in this process and not yet collected.
CACHES: weakref.WeakSet[Any] = weakref.WeakSet()
