"""An asyncio connection pool over any driver, with a clear lifecycle and explicit stats.

The pool knows nothing about SQL: a :class:`Connector` opens, checks, resets and closes
driver connections. What the pool guarantees:

* **Bounded waits.** :meth:`ConnectionPool.acquire` has an absolute deadline,
  ``acquire_timeout`` (connect retries do not restart it), and an optional cap on queued
  tasks; it raises :class:`~async_db_client.errors.PoolTimeout` saying how busy the pool
  was. Waiters are served first come, first served.
* **Unreachable servers fail fast.** Failed connects (refused, unreachable, no answer)
  are retried with backoff for at most ``connect_retry_budget`` seconds, counted from
  the later of the acquire's start and the first failed connect since the server last
  answered, and each attempt is bounded by ``connect_timeout`` and by what is left of
  that budget; a task waiting for a slot meanwhile gives up at the same moment. Then
  acquire raises one :class:`~async_db_client.errors.DBConnectionError`:
  ``cannot connect to <target>: <reason> (<n> attempts, unreachable for <t>s;
  connect_retry_budget <b>s)`` (``acquire_timeout`` if that ended it first). Failures
  another attempt would meet again (TLS, a refused login) are raised at once. Each retry
  is logged at INFO with its reason and delay.
* **One owner.** A connection belongs to one task between acquire and release.
* **Clean returns.** Released connections are reset (an open transaction rolled back);
  one that failed mid-use, was cancelled mid-statement, could not be reset, outlived
  ``max_lifetime`` or predates a detected disconnect is closed instead of reused.
* **Cancellation safety.** :meth:`ConnectionPool.connection` releases under
  :func:`asyncio.shield` and re-raises the cancellation; a connection handed to a waiter
  that gave up goes back to the pool.
* **Recovery.** A disconnect error bumps the pool's generation: every connection opened
  before it is closed when idle or discarded when returned. A background task refills
  to ``min_size`` with capped exponential backoff and jitter (the policy of
  :mod:`async_db_client.retry`, as for connect retries in acquire), and closes idle
  connections past ``max_idle`` (above ``min_size``) or past their lifetime.
* **Loop binding.** The pool belongs to the event loop it was opened in; use from any
  other loop raises :class:`~async_db_client.errors.WrongEventLoopError`.
* **Orderly close.** :meth:`ConnectionPool.aclose` refuses new requests, fails waiters,
  closes idle connections, waits up to ``close_timeout`` for borrowed ones, then aborts
  what is left. Nothing is left for ``__del__``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import random
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

from .config import PoolSettings
from .errors import (
    AsyncDBClientError,
    DBConnectionError,
    PoolClosedError,
    PoolTimeout,
    TooManyWaitersError,
    WrongEventLoopError,
)
from .retry import Attempts, Backoff
from .telemetry import hooks

__all__ = ["ConnectionPool", "Connector", "PoolCounters", "PoolStats", "PooledConnection"]

logger = logging.getLogger("async_db_client.pool")

C = TypeVar("C")


class Connector(Protocol[C]):
    """Opens and maintains raw driver connections for a :class:`ConnectionPool`."""

    #: Where the connections go, for logs and errors; never contains a password.
    description: str

    async def connect(self, timeout: float) -> C:
        """Open a connection; raise this library's errors (``DBConnectionError`` ...)."""
        ...

    async def ping(self, conn: C) -> None:
        """Raise if ``conn`` is no longer usable."""
        ...

    def needs_reset(self, conn: C) -> bool:
        """True if ``conn`` must be :meth:`reset` before reuse (e.g. a transaction is open).

        Checked without I/O on every release; False lets the release skip the reset."""
        ...

    async def reset(self, conn: C) -> None:
        """Make ``conn`` clean for the next user (roll back an open transaction)."""
        ...

    async def close(self, conn: C) -> None:
        """Close ``conn`` politely; may do I/O."""
        ...

    def abort(self, conn: C) -> None:
        """Close ``conn`` at once, without I/O."""
        ...

    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        """True if connecting may succeed later (refused, unreachable, timed out)."""
        ...

    async def dispose(self) -> None:
        """Release what the connector itself holds (threads), once the pool is closed."""
        ...


@dataclass(eq=False)
class PooledConnection(Generic[C]):
    """A driver connection with the bookkeeping the pool needs."""

    raw: C
    created_at: float
    expires_at: float
    generation: int
    last_used: float
    #: Set by whoever used it when its state is unknown (failure or cancellation mid-call).
    broken: bool = False
    owner: asyncio.Task[object] | None = None

    def __repr__(self) -> str:
        return f"<PooledConnection gen={self.generation} broken={self.broken}>"


@dataclass
class PoolCounters:
    """What a pool has counted since it was opened: the pool's live tally, incremented in
    place, and the counter half of each :class:`PoolStats`."""

    acquired_total: int = 0
    acquire_wait_total_s: float = 0.0
    acquire_wait_max_s: float = 0.0
    acquire_timeouts: int = 0
    connections_opened: int = 0
    connection_errors: int = 0
    connections_lost: int = 0
    connections_discarded: int = 0
    bad_returns: int = 0
    retries: int = 0


@dataclass
class _PoolState:
    name: str
    min_size: int
    max_size: int
    #: Connections open or being opened.
    size: int
    idle: int
    in_use: int
    waiting: int
    #: With several hosts: the server's role as last discovered (``primary``,
    #: ``replica``, ``synced``...) and a replica's lag in seconds; None with one server.
    role: str | None = None
    lag_s: float | None = None


# The state's fields come first: dataclass fields follow the reversed MRO.
@dataclass
class PoolStats(PoolCounters, _PoolState):
    """A snapshot of a pool's state and counters since it was opened (a copy: changing it
    changes nothing in the pool)."""

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def combined(cls, stats: list[PoolStats]) -> PoolStats:
        """Pools of one target seen as one (the sync facade's per-thread pools): sizes
        and counters added up, the longest wait kept."""
        first = stats[0]
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            items = [getattr(s, f.name) for s in stats]
            if f.name in ("name", "role"):
                values[f.name] = getattr(first, f.name)
            elif f.name in ("acquire_wait_max_s", "lag_s"):
                known = [item for item in items if item is not None]
                values[f.name] = max(known) if known else None
            else:
                values[f.name] = sum(items)
        return cls(**values)


@dataclass
class _Outage:
    """Connects failing since the pool last opened a connection."""

    #: When the first failed attempt began (loop time).
    started: float
    attempts: int = 0
    #: What the server or the OS said the last time.
    reason: str = ""


@dataclass(eq=False)
class _Request:
    """One acquire: its clocks (loop time) and its connect attempts."""

    start: float
    #: ``start`` + the acquire timeout.
    deadline: float
    #: Made at the first connect it needs; ``count`` is its failed attempts so far.
    connects: Attempts | None = None
    #: False: a failed connect is not retried (a router's probe: another server may
    #: answer instead, so waiting out this one's budget would only delay the call).
    retry_connect: bool = True

    @property
    def failed_attempts(self) -> int:
        return 0 if self.connects is None else self.connects.count


@dataclass(eq=False)
class _Waiter(Generic[C]):
    # Resolved with a connection (handed over) or None (a slot freed: try to connect).
    future: asyncio.Future[PooledConnection[C] | None]
    request: _Request
    timer: asyncio.TimerHandle | None = field(default=None)
    #: The timer ends the connect budget of an outage, not the acquire deadline.
    for_outage: bool = False


def _failure_reason(exc: BaseException, timeout: float) -> str:
    """What a failed connect attempt (bounded by ``timeout``) met, without the target."""
    if isinstance(exc, DBConnectionError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:.1f}s"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class ConnectionPool(Generic[C]):
    """A pool of connections made by ``connector``, sized and timed by ``settings``."""

    def __init__(self, connector: Connector[C], settings: PoolSettings, *, name: str) -> None:
        self.connector = connector
        self.settings = settings
        self.name = name
        self._backoff = Backoff.from_settings(settings)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: collections.deque[PooledConnection[C]] = collections.deque()
        self._in_use: set[PooledConnection[C]] = set()
        self._waiters: collections.deque[_Waiter[C]] = collections.deque()
        self._size = 0  # open + opening
        self._generation = 0
        self._closed = False
        self._counters = PoolCounters()
        self._maintainer: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closing_tasks: set[asyncio.Task[None]] = set()
        self._outage: _Outage | None = None
        self._all_returned: asyncio.Event | None = None  # set up by aclose() if it must wait
        #: Set by the router of a tier with several hosts (see PoolStats.role, lag_s).
        self.role: str | None = None
        self.lag: float | None = None
        hooks.POOLS.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._loop else "new")
        return (
            f"<ConnectionPool {self.name} {state} size={self._size} "
            f"idle={len(self._idle)} in_use={len(self._in_use)}>"
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._closed

    async def open(self) -> None:
        """Bind the pool to the running loop and start filling it to ``min_size``."""
        if self._closed:
            raise PoolClosedError(f"pool {self.name} is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            self._check_loop()
            return
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._maintainer = loop.create_task(self._maintain(), name=f"pool-maintainer {self.name}")

    async def aclose(self, timeout: float | None = None) -> None:
        """Close the pool: no new requests, waiters failed, connections closed. Idempotent.

        Borrowed connections get ``timeout`` (default ``close_timeout``) to come back;
        any still out after that are aborted.
        """
        if self._closed:
            return
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise WrongEventLoopError(
                f"pool {self.name} must be closed from the event loop that opened it"
            )
        self._closed = True
        if self._loop is None:
            return
        timeout = self.settings.close_timeout if timeout is None else timeout
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_exception(PoolClosedError(f"pool {self.name} was closed"))
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        idle, self._idle = list(self._idle), collections.deque()
        await self._close_all(idle, timeout)
        if self._in_use:
            self._all_returned = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._all_returned.wait()
        for conn in list(self._in_use):
            logger.warning("pool %s: aborting a connection still in use at close", self.name)
            self.connector.abort(conn.raw)
            self._in_use.discard(conn)
            self._size -= 1
        if self._closing_tasks:
            await asyncio.wait(list(self._closing_tasks), timeout=timeout)
            for task in self._closing_tasks:
                task.cancel()
        await self.connector.dispose()

    async def _close_all(self, conns: list[PooledConnection[C]], timeout: float) -> None:
        async def close_one(conn: PooledConnection[C]) -> None:
            try:
                async with asyncio.timeout(timeout):
                    await self.connector.close(conn.raw)
            except Exception:
                self.connector.abort(conn.raw)
            finally:
                self._size -= 1

        await asyncio.gather(*(close_one(c) for c in conns))

    def forget(self) -> None:
        """Drop every connection without I/O (in a forked child, whose sockets are shared
        with the parent and must not be closed from here)."""
        self._closed = True
        self._idle.clear()
        self._in_use.clear()
        self._waiters.clear()
        self._maintainer = None
        self._size = 0

    def _check_loop(self) -> None:
        if self._closed:
            raise PoolClosedError(f"pool {self.name} is closed")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise WrongEventLoopError("the pool must be used from inside an event loop") from None
        if loop is not self._loop:
            raise WrongEventLoopError(
                f"pool {self.name} belongs to another event loop; "
                "create one client per event loop (or use async_db_client.sync)"
            )

    # -------------------------------------------------------------------- acquire

    def connection(self, timeout: float | None = None, *, retry_connect: bool = True) -> _Borrow[C]:
        """``async with pool.connection() as conn:`` borrows a connection for the block.

        A block left by cancellation (or KeyboardInterrupt) marks the connection broken:
        the driver may be mid-statement. A release that needs I/O (a rollback) runs under
        :func:`asyncio.shield`, so cancelling the task never leaks the connection; the
        cancellation is re-raised. ``retry_connect=False``: one connect attempt, no retry.
        """
        return _Borrow(self, timeout, retry_connect)

    async def acquire(
        self, timeout: float | None = None, *, retry_connect: bool = True
    ) -> PooledConnection[C]:
        """Take a connection; give it back with :meth:`release` (or use :meth:`connection`)."""
        if self._loop is None:
            await self.open()
        self._check_loop()
        start = self._time()
        if self._idle:
            # Fast path: the warmest idle connection, current, young and recently used.
            warm = self._idle[-1]
            if not self._stale(warm, start) and not self._needs_check(warm, start):
                self._idle.pop()
                return self._checkout(warm, start)
        deadline = start + (self.settings.acquire_timeout if timeout is None else timeout)
        # A retry never restarts any of its clocks.
        request = _Request(start, deadline, retry_connect=retry_connect)
        while True:
            conn = await self._take_idle(deadline)
            if conn is None and self._size < self.settings.max_size:
                conn = await self._connect_reserved(request)
                if conn is None:
                    continue
            if conn is None:
                conn = await self._wait(request)
                if conn is None:
                    continue
                if self._needs_check(conn, self._time()) and not await self._check(conn, deadline):
                    continue
            return self._checkout(conn, start)

    async def _take_idle(self, deadline: float) -> PooledConnection[C] | None:
        loop = asyncio.get_running_loop()
        while self._idle:
            conn = self._idle.pop()  # LIFO keeps a warm core and lets the rest go idle
            now = loop.time()
            if self._stale(conn, now):
                self._discard(conn)
                continue
            if self._needs_check(conn, now) and not await self._check(conn, deadline):
                continue
            return conn
        return None

    def _stale(self, conn: PooledConnection[C], now: float) -> bool:
        """Past its lifetime, or opened before the last detected disconnect: never reused."""
        return conn.generation < self._generation or now >= conn.expires_at

    def _needs_check(self, conn: PooledConnection[C], now: float) -> bool:
        return now - conn.last_used >= self.settings.check_after_idle

    async def _check(self, conn: PooledConnection[C], deadline: float) -> bool:
        # The connection is ours while being checked: count it as in use meanwhile.
        self._in_use.add(conn)
        try:
            budget = max(0.001, min(self.settings.connect_timeout, deadline - self._time()))
            async with asyncio.timeout(budget):
                await self.connector.ping(conn.raw)
        except asyncio.CancelledError:
            self._in_use.discard(conn)
            self._discard(conn)
            raise
        except Exception as exc:
            logger.info("pool %s: idle connection failed its check: %s", self.name, exc)
            self._in_use.discard(conn)
            self._counters.connections_lost += 1
            self._discard(conn)
            return False
        self._in_use.discard(conn)
        conn.last_used = self._time()
        return True

    def _budget_end(self, request: _Request) -> float | None:
        """When ``request``'s connect budget ends, if connects are failing (an outage):
        ``connect_retry_budget`` from the later of its start and the outage's start."""
        if self._outage is None:
            return None
        return max(request.start, self._outage.started) + self.settings.connect_retry_budget

    async def _connect_reserved(self, request: _Request) -> PooledConnection[C] | None:
        """Open a connection in a reserved slot; None after a retryable failure (and the
        backoff pause), or raise if no retry is left within the connect budget (and the
        acquire deadline)."""
        if request.connects is None:
            request.connects = connects = self._backoff.attempts(clock=self._time)
        else:
            connects = request.connects
        began = self._time()
        budget_end = self._budget_end(request)
        if budget_end is None:  # a failure now would start an outage: its budget, from now
            budget_end = began + self.settings.connect_retry_budget
        if min(budget_end, request.deadline) <= began:
            # Spent waiting for a slot, or sleeping past a deadline on a busy machine: the
            # server's error while connects fail, else the busy pool's.
            raise self._give_up(request, budget_spent=self._outage is not None)
        timeout = min(self.settings.connect_timeout, budget_end - began, request.deadline - began)
        self._size += 1
        try:
            conn = await self._open_connection(timeout)
        except asyncio.CancelledError:
            self._slot_freed()
            raise
        except Exception as exc:
            self._slot_freed()
            reason = self._connect_failed(exc, began, timeout)
            if not isinstance(exc, TimeoutError) and not self.connector.is_retryable_connect_error(
                exc
            ):
                if isinstance(exc, AsyncDBClientError):
                    raise  # already ours and final: a refused login, a TLS failure
                raise DBConnectionError.cannot_connect(self.connector.description, reason) from exc
            # The budget runs from the outage's start, which this failure may have set.
            outage_end = self._budget_end(request)
            assert outage_end is not None
            connects.deadline = min(request.deadline, outage_end)
            delay = connects.next_delay() if request.retry_connect else None
            if delay is None:
                raise self._unreachable(request, connects.count + 1) from exc
            logger.info(
                "pool %s: connect attempt failed: %s; retry %d in %.2fs "
                "(%.1fs of the %gs connect_retry_budget left)",
                self.name,
                reason,
                connects.count,
                delay,
                connects.deadline - self._time(),
                self.settings.connect_retry_budget,
            )
            await asyncio.sleep(delay)
            return None
        return conn

    def _connect_failed(self, exc: BaseException, began: float, timeout: float) -> str:
        """Count a failed connect attempt (begun at ``began``) in the current outage,
        starting one if the server answered last time; the reason it failed."""
        self._counters.connection_errors += 1
        reason = _failure_reason(exc, timeout)
        if self._outage is None:
            self._outage = _Outage(began)
            # Tasks already waiting for a slot now have a connect budget to respect too.
            for waiter in self._waiters:
                if not waiter.future.done():
                    self._arm(waiter)
        self._outage.attempts += 1
        self._outage.reason = reason
        return reason

    def _unreachable(self, request: _Request, attempts: int) -> DBConnectionError:
        """The error of an acquire that spent its connect budget (or, if shorter, its
        acquire timeout) after ``attempts`` of its own (0: waiting for a slot): the target
        and what the server or the OS said, once, how many attempts, for how long the
        server has not answered, and which limit ended the call."""
        outage = self._outage
        assert outage is not None
        budget_end = max(request.start, outage.started) + self.settings.connect_retry_budget
        if not request.retry_connect:
            limit = "one attempt, as asked"
        elif request.deadline < budget_end:
            limit = f"acquire_timeout {request.deadline - request.start:g}s"
        else:
            limit = f"connect_retry_budget {self.settings.connect_retry_budget:g}s"
        tried = f"{attempts} attempt{'' if attempts == 1 else 's'}, " if attempts else ""
        return DBConnectionError(
            f"cannot connect to {self.connector.description}: {outage.reason} ({tried}"
            f"unreachable for {self._time() - outage.started:.1f}s; {limit})",
            reason=outage.reason,
        )

    def _give_up(self, request: _Request, *, budget_spent: bool) -> DBConnectionError:
        """The error of an acquire left without a connection: the server's if its connect
        budget is spent, else a PoolTimeout saying how busy the pool was (and the last
        connect error, if connects are failing)."""
        if budget_spent and self._outage is not None:
            return self._unreachable(request, request.failed_attempts)
        self._counters.acquire_timeouts += 1
        if hooks.pool_observer is not None:
            hooks.pool_observer.timed_out(self)
        detail = "" if self._outage is None else f"; last connect error: {self._outage.reason}"
        return PoolTimeout(
            f"pool {self.name}: no connection within {request.deadline - request.start:g}s "
            f"({len(self._in_use)}/{self.settings.max_size} in use, "
            f"{len(self._waiters)} waiting){detail}"
        )

    async def _open_connection(self, timeout: float) -> PooledConnection[C]:
        began = self._time()
        async with asyncio.timeout(timeout):
            raw = await self.connector.connect(timeout)
        now = self._time()
        self._counters.connections_opened += 1
        logger.info("pool %s: connected in %.3fs (%d open)", self.name, now - began, self._size)
        if hooks.pool_observer is not None:
            hooks.pool_observer.connected(self, now - began)
        if self._outage is not None:
            logger.info(
                "pool %s: connected again after %d failed attempt(s)",
                self.name,
                self._outage.attempts,
            )
            self._outage = None
        lifetime = self.settings.max_lifetime * random.uniform(0.9, 1.0)
        return PooledConnection(
            raw=raw,
            created_at=now,
            expires_at=now + lifetime,
            generation=self._generation,
            last_used=now,
        )

    async def _wait(self, request: _Request) -> PooledConnection[C] | None:
        if self.settings.max_waiting and len(self._waiters) >= self.settings.max_waiting:
            self._counters.acquire_timeouts += 1
            if hooks.pool_observer is not None:
                hooks.pool_observer.timed_out(self)
            raise TooManyWaitersError(
                f"pool {self.name}: {len(self._waiters)} tasks already waiting "
                f"(max_waiting={self.settings.max_waiting})"
            )
        loop = asyncio.get_running_loop()
        waiter: _Waiter[C] = _Waiter(loop.create_future(), request)
        self._arm(waiter)
        self._waiters.append(waiter)
        try:
            return await waiter.future
        except BaseException:
            # Gave up (timeout, cancellation, close): a connection handed over in the
            # meantime must not be lost.
            if (
                waiter.future.done()
                and not waiter.future.cancelled()
                and waiter.future.exception() is None
            ):
                handed = waiter.future.result()
                if handed is not None:
                    self._put_back(handed)
                else:
                    self._wake_waiter()
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _arm(self, waiter: _Waiter[C]) -> None:
        """(Re)set ``waiter``'s timer: its acquire deadline, or sooner the end of its
        connect budget while connects fail (waiting for a slot that only a failing
        connect could fill must not outlast the budget)."""
        assert self._loop is not None
        when, waiter.for_outage = waiter.request.deadline, False
        budget_end = self._budget_end(waiter.request)
        if budget_end is not None and budget_end < when:
            when, waiter.for_outage = budget_end, True
        if waiter.timer is not None:
            waiter.timer.cancel()
        waiter.timer = self._loop.call_at(when, self._expire, waiter)

    def _expire(self, waiter: _Waiter[C]) -> None:
        if waiter.future.done():
            return
        if waiter.for_outage and self._outage is None:
            self._arm(waiter)  # the server answers again: wait on for the busy pool
            return
        waiter.future.set_exception(self._give_up(waiter.request, budget_spent=waiter.for_outage))

    def _checkout(self, conn: PooledConnection[C], start: float) -> PooledConnection[C]:
        # The loop given (the running one: acquire checked it) spares current_task the
        # lookup of the running loop, a getpid() system call on Linux.
        conn.owner = asyncio.current_task(self._loop)
        self._in_use.add(conn)
        waited = self._time() - start
        self._counters.acquired_total += 1
        self._counters.acquire_wait_total_s += waited
        self._counters.acquire_wait_max_s = max(self._counters.acquire_wait_max_s, waited)
        if hooks.pool_observer is not None:
            hooks.pool_observer.acquired(self, conn, waited, start + waited)
        return conn

    # -------------------------------------------------------------------- release

    async def release(self, conn: PooledConnection[C]) -> None:
        """Give ``conn`` back: reset and reused, or closed if it cannot be trusted.

        Never raises; failures to reset are logged and the connection is discarded.
        """
        if not self._release_now(conn):
            await self._release_after_reset(conn)

    def _release_now(self, conn: PooledConnection[C]) -> bool:
        """Release without I/O if possible; False if the connection needs a reset first."""
        if conn not in self._in_use:
            if not self._closed:  # after close, aborted connections may still come back
                logger.error("pool %s: release of a connection it did not lend", self.name)
            return True
        now = self._time()
        unusable = self._closed or conn.broken or self._stale(conn, now)
        if not unusable and self.connector.needs_reset(conn.raw):
            return False
        self._in_use.discard(conn)
        conn.owner = None
        if hooks.pool_observer is not None:
            hooks.pool_observer.released(self, conn, now)
        self._notify_returned()
        if unusable:
            self._discard(conn)
        else:
            conn.last_used = now
            self._put_back(conn)
        return True

    async def _release_after_reset(self, conn: PooledConnection[C]) -> None:
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                await self.connector.reset(conn.raw)
        except BaseException as exc:  # includes cancellation of a shielded release
            self._counters.bad_returns += 1
            logger.warning("pool %s: connection could not be reset, discarded: %r", self.name, exc)
            conn.broken = True
            self._release_now(conn)
            if not isinstance(exc, Exception):
                raise
            return
        self._release_now(conn)

    def _notify_returned(self) -> None:
        if self._all_returned is not None and not self._in_use:
            self._all_returned.set()

    def _put_back(self, conn: PooledConnection[C]) -> None:
        if self._closed:
            self._discard(conn)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(conn)
                return
        self._idle.append(conn)

    def _discard(self, conn: PooledConnection[C]) -> None:
        """Close ``conn`` in the background and free its slot."""
        self._counters.connections_discarded += 1
        loop = self._loop
        if loop is None or loop.is_closed():
            self.connector.abort(conn.raw)
        else:
            task = loop.create_task(self._close_quietly(conn.raw))
            self._closing_tasks.add(task)
            task.add_done_callback(self._closing_tasks.discard)
        self._slot_freed()

    async def _close_quietly(self, raw: C) -> None:
        try:
            async with asyncio.timeout(self.settings.close_timeout):
                await self.connector.close(raw)
        except BaseException:
            self.connector.abort(raw)

    def _slot_freed(self) -> None:
        self._size -= 1
        self._wake_waiter()
        if self._wakeup is not None and self._size < self.settings.min_size:
            self._wakeup.set()

    def _wake_waiter(self) -> None:
        # Someone waiting for a full pool may now open a connection of its own.
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(None)
                return

    # -------------------------------------------------------------------- health

    def report_disconnect(self, conn: PooledConnection[C] | None = None) -> None:
        """A connection was found dead: treat every connection opened before now as stale.

        Idle ones are closed at once; borrowed ones are discarded when returned; the
        maintainer refills the pool to ``min_size``.
        """
        self._counters.connections_lost += 1
        if conn is not None:
            conn.broken = True
        self._generation += 1
        stale = [c for c in self._idle if c.generation < self._generation]
        self._idle = collections.deque(c for c in self._idle if c.generation >= self._generation)
        for c in stale:
            self._discard(c)
        if self._wakeup is not None:
            self._wakeup.set()

    def record_retry(self) -> None:
        """Count one retried operation (called by the executor)."""
        self._counters.retries += 1

    def get_stats(self) -> PoolStats:
        """A snapshot of sizes and counters."""
        counters = dataclasses.asdict(self._counters)
        for key in ("acquire_wait_total_s", "acquire_wait_max_s"):
            counters[key] = round(counters[key], 6)
        return PoolStats(
            name=self.name,
            min_size=self.settings.min_size,
            max_size=self.settings.max_size,
            size=self._size,
            idle=len(self._idle),
            in_use=len(self._in_use),
            waiting=sum(1 for w in self._waiters if not w.future.done()),
            role=self.role,
            lag_s=self.lag,
            **counters,
        )

    # ---------------------------------------------------------------- maintenance

    def _time(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    async def _maintain(self) -> None:
        """Refill to ``min_size`` (with backoff) and retire idle or expired connections."""
        assert self._wakeup is not None
        refills = self._backoff.attempts()  # no limit, no deadline: retried until closed
        interval = max(0.5, min(self.settings.max_idle, self.settings.max_lifetime) / 4)
        while not self._closed:
            self._retire()
            if self._size < self.settings.min_size:
                self._size += 1
                started = self._time()
                try:
                    conn = await self._open_connection(self.settings.connect_timeout)
                except asyncio.CancelledError:
                    self._size -= 1
                    raise
                except Exception as exc:
                    self._size -= 1
                    first = self._outage is None
                    reason = self._connect_failed(exc, started, self.settings.connect_timeout)
                    (logger.warning if first else logger.debug)(
                        "pool %s: cannot connect (refilling in the background): %s",
                        self.name,
                        reason,
                    )
                    delay = refills.next_delay()
                    assert delay is not None  # unlimited
                    await asyncio.sleep(delay)
                    continue
                refills.reset()
                self._put_back(conn)
                continue
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wakeup.wait()

    def _retire(self) -> None:
        now = self._time()
        keep: collections.deque[PooledConnection[C]] = collections.deque()
        surplus = self._size - self.settings.min_size
        # Oldest-used first, so the warm end of the deque (the right) survives.
        for conn in self._idle:
            too_idle = surplus > 0 and now - conn.last_used >= self.settings.max_idle
            if self._stale(conn, now) or too_idle:
                surplus -= 1
                self._discard(conn)
            else:
                keep.append(conn)
        self._idle = keep


class _Borrow(Generic[C]):
    """The async context manager behind :meth:`ConnectionPool.connection`."""

    __slots__ = ("_conn", "_pool", "_retry_connect", "_timeout")

    def __init__(self, pool: ConnectionPool[C], timeout: float | None, retry_connect: bool) -> None:
        self._pool = pool
        self._timeout = timeout
        self._retry_connect = retry_connect
        self._conn: PooledConnection[C] | None = None

    async def __aenter__(self) -> PooledConnection[C]:
        self._conn = await self._pool.acquire(self._timeout, retry_connect=self._retry_connect)
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        assert conn is not None
        self._conn = None
        if exc_type is not None and not issubclass(exc_type, Exception):
            conn.broken = True  # cancelled or interrupted mid-use: never reuse
        if not self._pool._release_now(conn):
            await asyncio.shield(self._pool._release_after_reset(conn))
