"""Running SQL: sessions on pooled connections, retries, transactions.

This module runs statements; it never writes them (that is the dialects' job, see
:mod:`async_db_client.dialects`). A :class:`~async_db_client.drivers.base.Driver` adapts
one DB-API-ish async driver (aiomysql, aioodbc, aiosqlite) to a handful of calls;
everything above it is shared:

* :class:`Session` wraps one borrowed connection: each call is bounded by the query
  timeout, driver errors become this library's errors, and a connection whose state is
  unknown afterwards (cancelled or timed out mid-call, lost, unknown failure) is marked
  broken so the pool closes it instead of reusing it.
* :class:`Executor` is what repositories talk to: it borrows a connection per operation,
  retries operations the caller declared idempotent after a lost connection, deadlock or
  lock wait timeout (with the backoff of :mod:`async_db_client.retry`, counted in the
  pool's stats), and runs the schema check once before the first statement (retried the
  same way; calls queued behind it share its failure to connect). A connection it
  cannot get is never retried here: the pool already spent its connect budget
  (``connect_retry_budget``) or acquire timeout, so a call whose connects all fail takes
  one budget, not one per retry.
* :class:`TransactionRunner` is the same interface bound to one connection inside one
  transaction; it serialises concurrent callers and never retries.

Inside a transaction, the current context (the task and the tasks it starts, or the
sync facade's calling thread) *holds* the transaction's connection (:func:`holding`).
A call from that context which would need another connection the held one excludes
raises :class:`~async_db_client.errors.UsageError` at once instead of waiting for it
forever: when the context holds all the pool's connections (SQLite ``:memory:`` has
one), or when the driver's transactions lock the whole database (SQLite) and the call
comes from another tier. A ping (health check) from that context answers over the held
transaction's connection instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
from abc import ABC, abstractmethod
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from .config import PoolSettings
from .drivers.base import Driver, ExecResult, Params, Row
from .errors import (
    AsyncDBClientError,
    ConnectionLostError,
    DBConnectionError,
    PoolClosedError,
    PoolTimeout,
    QueryError,
    QueryTimeoutError,
    ServerRoleError,
    TransientQueryError,
    UsageError,
)
from .pool import ConnectionPool, PooledConnection
from .retry import Attempts, Backoff
from .telemetry import hooks

__all__ = [
    "Driver",
    "ExecResult",
    "Executor",
    "Row",
    "Runner",
    "Session",
    "TransactionRunner",
    "holding",
]

logger = logging.getLogger("async_db_client")

T = TypeVar("T")

#: Extra time the client waits past the query timeout, so a server that enforces the
#: timeout itself (MariaDB's max_statement_time) reports it first, keeping the connection.
CLIENT_TIMEOUT_GRACE = 2.0


class Session:
    """One borrowed connection. Not shared between tasks (see TransactionRunner)."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        conn: PooledConnection[Any],
        driver: Driver[Any],
        watchdog: _Watchdog | None,
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._driver = driver
        self._watchdog = watchdog

    async def execute(self, sql: str, params: Params = ()) -> ExecResult:
        if hooks.run_statement is not None:  # timings, statement text (telemetry)
            return await hooks.run_statement(self, self._call, self._driver.execute, sql, params)
        return await self._call(self._driver.execute, sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        if hooks.run_statement is not None:
            return await hooks.run_statement(self, self._call, self._driver.fetchall, sql, params)
        return await self._call(self._driver.fetchall, sql, params)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        if hooks.run_statement is not None:
            rows: list[Row] = await hooks.run_statement(
                self, self._call, self._driver.fetchall, sql, params
            )
        else:
            rows = await self._call(self._driver.fetchall, sql, params)
        return rows[0] if rows else None

    async def fetch_named(self, sql: str) -> list[dict[str, Any]]:
        """Rows by column name, for statements whose columns differ between servers
        (``SHOW SLAVE STATUS``); only the MySQL drivers offer it."""
        fetch = getattr(self._driver, "fetch_named", None)
        if fetch is None:
            raise UsageError(f"{type(self._driver).__name__} cannot fetch rows by name")
        rows: list[dict[str, Any]] = await self._call(fetch, sql)
        return rows

    async def copy_rows(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> int:
        """Bulk-load ``rows`` into ``table`` (PostgreSQL's ``COPY``): only drivers whose
        dialect sets ``bulk_copy`` offer it. Returns the rows copied."""
        copy = getattr(self._driver, "copy_rows", None)
        if copy is None:
            raise UsageError(f"{type(self._driver).__name__} cannot copy rows")
        copied: int = await self._call(copy, table, columns, rows)
        return copied

    async def begin(self) -> None:
        await self._call(self._driver.begin)

    async def commit(self) -> None:
        await self._call(self._driver.commit)

    async def rollback(self) -> None:
        await self._call(self._driver.rollback)

    async def ping(self) -> None:
        await self._call(self._driver.ping)

    @property
    def broken(self) -> bool:
        return self._conn.broken

    @property
    def pool(self) -> ConnectionPool[Any]:
        return self._pool

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        conn = self._conn
        if conn.broken:
            raise ConnectionLostError("the connection broke earlier in this transaction")
        watch = None if self._watchdog is None else self._watchdog.start()
        try:
            return await method(conn.raw, *args)
        except asyncio.CancelledError:
            conn.broken = True  # the driver may be mid-statement (or timed out)
            if watch is not None and watch.timed_out():
                raise QueryTimeoutError(
                    f"statement exceeded the query timeout of "
                    f"{self._pool.settings.query_timeout:g}s"
                ) from None
            raise
        except AsyncDBClientError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        finally:
            if watch is not None:
                self._watchdog.finish(watch)  # type: ignore[union-attr]

    def _failed(self, exc: Exception) -> AsyncDBClientError:
        error = self._driver.translate(exc)
        if isinstance(error, ConnectionLostError):
            self._pool.report_disconnect(self._conn)
        elif not isinstance(error, QueryError):
            # Not a statement the server refused: the connection's state is unknown.
            self._conn.broken = True
        return error


class _Watch:
    """One statement under the query timeout: its task, its deadline, and whether the
    watchdog cancelled it (told apart from any other cancellation, a caller's, which must
    stay a cancellation)."""

    __slots__ = ("cancelling", "deadline", "done", "expired", "task")

    def __init__(self, task: asyncio.Task[Any], deadline: float) -> None:
        self.task = task
        self.deadline = deadline
        self.cancelling = task.cancelling()  # cancellations requested before ours
        self.done = False
        self.expired = False

    def timed_out(self) -> bool:
        """After a CancelledError: whether it was the watchdog's alone (then consumed)."""
        return self.expired and self.task.uncancel() <= self.cancelling


class _Watchdog:
    """The query timeout of every statement of one executor in one event loop, with one
    timer for all of them rather than one per statement (a timer per statement was the
    largest cost of a point read). All share one timeout, so they come due in the order
    they started: a queue whose head the timer waits for."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self._timeout = timeout
        self._running: collections.deque[_Watch] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> _Watch:
        task = asyncio.current_task(self.loop)  # the loop given: no getpid() (see pool.py)
        assert task is not None
        watch = _Watch(task, self.loop.time() + self._timeout)
        self._running.append(watch)
        if self._timer is None:
            self._timer = self.loop.call_at(watch.deadline, self._check)
        return watch

    def finish(self, watch: _Watch) -> None:
        watch.done = True
        running = self._running
        while running and running[0].done:  # keeps the queue as short as what runs
            running.popleft()

    def _check(self) -> None:
        self._timer = None
        now = self.loop.time()
        running = self._running
        while running:
            head = running[0]
            if head.done:
                running.popleft()
            elif head.deadline <= now:
                running.popleft()
                head.done = head.expired = True
                head.task.cancel()
            else:
                self._timer = self.loop.call_at(head.deadline, self._check)
                return


class Runner(ABC):
    """What repositories run statements through: an :class:`Executor` or a transaction."""

    # A statement run on its own through these two only reads: with several hosts it
    # may go to a replica. Reads that decide a write run inside that write's ``run``.
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self.run(lambda s: s.fetchall(sql, params), read=True)

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        return await self.run(lambda s: s.fetchone(sql, params), read=True)

    async def execute(self, sql: str, params: Params = ()) -> ExecResult:
        return await self.run(lambda s: s.execute(sql, params))

    async def ping(self) -> None:
        """Round-trip to the database (the driver's ping); raise if it does not answer."""
        await self.run(lambda s: s.ping(), skip_prepare=True)

    @abstractmethod
    async def run(
        self,
        work: Callable[[Session], Awaitable[T]],
        *,
        transaction: bool = False,
        skip_prepare: bool = False,
        retry: bool = True,
        read: bool = False,
    ) -> T:
        """Run ``work`` with a session (see :meth:`Executor.run`)."""

    @property
    @abstractmethod
    def parallelism(self) -> int:
        """How many independent statements may usefully run at once."""


PoolSource = Callable[[], ConnectionPool[Any]]
Prepare = Callable[[Session], Awaitable[None]]


class Route(Protocol):
    """One server a :class:`Router` chooses: its driver and its (shared) pool."""

    @property
    def driver(self) -> Driver[Any]: ...

    @property
    def pool(self) -> PoolSource: ...


H = TypeVar("H", bound=Route)


class Router(Protocol[H]):
    """Where each call goes when a tier has several servers; what the executor needs of
    :class:`async_db_client.routing.Topology` (defined there, above this module)."""

    @property
    def current_pool(self) -> ConnectionPool[Any]:
        """The pool writes would use now (for names and reprs)."""
        ...

    @property
    def independent(self) -> bool:
        """True if the servers do not replicate each other (``sequential``): each needs
        the schema step itself, and reads go where writes go."""
        ...

    async def writer(self) -> H:
        """The server for writes and transactions (NoServerError if none can)."""
        ...

    async def reader(self) -> tuple[H, str | None]:
        """The server for a read, and the write position it must show first (or None)."""
        ...

    def acquire_timeout(self, host: H, reading: bool) -> float | None:
        """How long to wait for ``host``'s connection (None: the pool's setting)."""
        ...

    async def caught_up(self, session: Session, host: H, position: str) -> bool:
        """Whether ``host`` shows ``position`` soon enough (else read elsewhere)."""
        ...

    async def wrote(self, session: Session) -> None:
        """A write committed on ``session``: remember where, for later reads."""
        ...

    def failed(self, host: H, exc: BaseException) -> None:
        """A call on ``host`` failed with ``exc``."""
        ...


class Executor(Runner):
    """Runs operations on connections borrowed from one target's pool.

    ``pool_source`` returns the shared pool (created lazily by the pool manager);
    ``prepare`` runs once, on the first operation, with a session of its own (schema
    migration or check). Operations are retried on lost connections and transient errors
    up to ``retry_attempts`` times: every operation passed here must be idempotent, or
    say ``retry=False``.

    With a ``router`` (a tier with several servers) each operation asks it which server
    to use: writes, transactions and the schema step the writer, reads (``read=True``,
    outside a transaction) whichever it picks. A failure is reported to the router; a
    call that never reached its server (refused connect, a server that refused it for its
    role) runs again on the server chosen next, retried or not, since nothing ran; a
    failed read runs again on another server.
    """

    def __init__(
        self,
        pool_source: PoolSource,
        driver: Driver[Any],
        settings: PoolSettings,
        *,
        prepare: Prepare | None = None,
        bulk_connections: int = 4,
        router: Router[Any] | None = None,
    ) -> None:
        self._router = router
        self._pool_source = pool_source
        self._driver = driver
        self._settings = settings
        self._backoff = Backoff.from_settings(settings)
        self._prepare = prepare
        self._prepared = prepare is None
        #: With a router: the server the schema step last ran on.
        self._prepared_on: object | None = None
        self._prepare_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        #: When the last preparation failed to get a connection (loop time), and why.
        self._prepare_failure: tuple[float, DBConnectionError] | None = None
        self._bulk_connections = max(1, min(bulk_connections, settings.max_size))
        self._watchdog: _Watchdog | None = None

    @property
    def parallelism(self) -> int:
        return self._bulk_connections

    @property
    def pool(self) -> ConnectionPool[Any]:
        return self._pool_source()

    @property
    def driver(self) -> Driver[Any]:
        """The driver (with several servers, the first server's)."""
        return self._driver

    @property
    def router(self) -> Router[Any] | None:
        """The router of a tier with several servers (None: one server)."""
        return self._router

    def _watchdog_here(self) -> _Watchdog | None:
        """The watchdog of the running loop's statements (None: no query timeout)."""
        watchdog = self._watchdog
        if watchdog is None or watchdog.loop is not asyncio.get_running_loop():
            timeout = self._settings.query_timeout
            if timeout is None:
                return None
            watchdog = self._watchdog = _Watchdog(
                asyncio.get_running_loop(), timeout + CLIENT_TIMEOUT_GRACE
            )
        return watchdog

    async def run(
        self,
        work: Callable[[Session], Awaitable[T]],
        *,
        transaction: bool = False,
        skip_prepare: bool = False,
        retry: bool = True,
        read: bool = False,
    ) -> T:
        """Run ``work`` on a borrowed connection (in one transaction if asked).

        With ``retry`` (the default, for idempotent work) a lost connection, deadlock or
        lock wait timeout runs it again on another connection. ``skip_prepare`` bypasses
        the one-time schema step (health checks, the explicit migration itself). ``read``
        says ``work`` only reads (a router may send it to a replica). Raises UsageError
        at once if the connection would wait for a transaction this context holds (see
        the module docstring)."""
        if self._router is not None:
            return await self._run_routed(
                self._router, work, transaction, skip_prepare, retry, read and not transaction
            )
        held = _HELD.get()
        if held:
            self._refuse_deadlock(self._pool_source(), held)
        if not (skip_prepare or self._prepared):
            await self._ensure_prepared()
        attempts: Attempts | None = None  # made on the first failure: none on the hot path
        while True:
            pool = self._pool_source()
            try:
                if transaction:
                    return await self._attempt_transaction(pool, work)
                # The common case inline: one coroutine frame fewer on every statement.
                async with pool.connection() as conn:
                    return await work(Session(pool, conn, self._driver, self._watchdog_here()))
            except (ConnectionLostError, TransientQueryError) as exc:
                if not retry:
                    raise
                attempts = await self._wait_to_retry(
                    pool, attempts, "retrying after %s: %s", type(exc).__name__, exc
                )
                if attempts is None:
                    raise

    async def _run_routed(
        self,
        router: Router[Any],
        work: Callable[[Session], Awaitable[T]],
        transaction: bool,
        skip_prepare: bool,
        retry: bool,
        read: bool,
    ) -> T:
        if not (skip_prepare or self._prepared):
            await self._ensure_prepared()
        attempts: Attempts | None = None
        to_writer = not read
        while True:
            host, position = (await router.writer(), None) if to_writer else await router.reader()
            if (
                not skip_prepare
                and self._prepare is not None
                and host is not self._prepared_on
                and (to_writer or router.independent)
            ):
                # A new writer (failover): check its schema (replicated: one read), or,
                # for servers that do not replicate each other, migrate it.
                self._prepared = False
                await self._ensure_prepared()
            pool = host.pool()
            held = _HELD.get()
            if held:
                self._refuse_deadlock(pool, held)
            try:
                if transaction:
                    return await self._attempt_transaction(pool, work, host.driver, router.wrote)
                timeout = router.acquire_timeout(host, not to_writer)
                async with pool.connection(timeout) as conn:
                    session = Session(pool, conn, host.driver, self._watchdog_here())
                    if position is not None and not await router.caught_up(session, host, position):
                        to_writer = True  # this read must see a write the replica lacks
                        continue
                    result = await work(session)
                    if not read:
                        await router.wrote(session)
                    return result
            except (DBConnectionError, TransientQueryError) as exc:
                router.failed(host, exc)
                # Nothing ran: the server was not reached, or refused the call for its
                # role. A read changes nothing. Either may run again elsewhere.
                never_ran = isinstance(exc, ServerRoleError) or (
                    isinstance(exc, DBConnectionError)
                    and not isinstance(exc, ConnectionLostError | PoolTimeout)
                )
                if not (never_ran or read or retry) or (isinstance(exc, PoolTimeout) and not read):
                    raise
                attempts = await self._wait_to_retry(
                    pool, attempts, "%s; retrying", type(exc).__name__
                )
                if attempts is None:
                    raise

    async def ping(self) -> None:
        """Round-trip to the database: over the transaction this context holds on the
        pool if there is one (another connection might have to wait for it)."""
        for runner in _HELD.get().get(self._pool_source(), ()):
            if runner.open:
                await runner.ping()
                return
        await super().ping()

    def _refuse_deadlock(
        self,
        pool: ConnectionPool[Any],
        held: Mapping[ConnectionPool[Any], tuple[TransactionRunner, ...]],
    ) -> None:
        """Raise UsageError if a connection of ``pool`` for this call would wait for a
        transaction the current context holds, which cannot end while the call waits."""
        runners = [r for r in held.get(pool, ()) if r.open]
        if not runners:
            return
        if len(runners) >= pool.settings.max_size:
            raise UsageError(
                f"a transaction open in this task holds the only connection of {pool.name} "
                f"(max_size {pool.settings.max_size}) this call could use: it would wait for "
                "it forever. Make the call after the transaction block, or on the "
                "transaction's tier"
            )
        if self._driver.transactions_lock_database and any(r.owner is not self for r in runners):
            raise UsageError(
                f"a transaction open in this task locks {pool.name}, which this tier shares "
                "(SQLite has one writer): this call would wait for it until it ends. Make "
                "the call after the transaction block, or on the transaction's tier"
            )

    def _attempts(self) -> Attempts:
        """The retries one operation may make after its first try."""
        return self._backoff.attempts(limit=self._settings.retry_attempts)

    async def _wait_to_retry(
        self, pool: ConnectionPool[Any], attempts: Attempts | None, reason: str, *args: object
    ) -> Attempts | None:
        """Before another try: wait the next delay of ``attempts`` (made on the first
        failure: none on the hot path), counted by ``pool`` and logged with ``reason``
        (a format, and its ``args``); return them, or None when they are spent."""
        if attempts is None:
            attempts = self._attempts()
        delay = attempts.next_delay()
        if delay is None:
            return None
        pool.record_retry()
        logger.info(
            "%s: " + reason + " (attempt %d of %d, in %.2fs)",
            pool.name,
            *args,
            attempts.count,
            self._settings.retry_attempts,
            delay,
        )
        await asyncio.sleep(delay)
        return attempts

    async def _attempt_transaction(
        self,
        pool: ConnectionPool[Any],
        work: Callable[[Session], Awaitable[T]],
        driver: Driver[Any] | None = None,
        committed: Callable[[Session], Awaitable[None]] | None = None,
    ) -> T:
        async with pool.connection() as conn:
            session = Session(pool, conn, driver or self._driver, self._watchdog_here())
            await session.begin()
            try:
                result = await work(session)
            except BaseException:
                await _rollback_quietly(session)
                raise
            await session.commit()
            if committed is not None:
                await committed(session)
            return result

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[TransactionRunner]:
        """One connection, one transaction: commit on success, roll back on error. The
        current context holds it for the block (see :func:`holding`). With several
        servers, on the writer (never retried elsewhere once begun)."""
        router = self._router
        driver = self._driver
        if router is None:
            pool = self._pool_source()
        else:
            host = await router.writer()
            pool, driver = host.pool(), host.driver
        held = _HELD.get()
        if held:  # before the schema step, which would wait for the held connection too
            self._refuse_deadlock(pool, held)
        await self._ensure_prepared()
        async with pool.connection() as conn:
            session = Session(pool, conn, driver, self._watchdog_here())
            await session.begin()
            runner = TransactionRunner(session, owner=self)
            try:
                with holding(runner):
                    yield runner
            except BaseException:
                runner.close()
                await _rollback_quietly(session)
                raise
            runner.close()
            await session.commit()
            if router is not None:
                await router.wrote(session)

    def mark_prepared(self) -> None:
        """The schema step is done (e.g. an explicit migration just ran)."""
        self._prepared = True

    async def _ensure_prepared(self) -> None:
        if self._prepared:
            return
        loop = asyncio.get_running_loop()
        if self._prepare_lock is None or self._prepare_lock[0] is not loop:
            self._prepare_lock = (loop, asyncio.Lock())
        waiting_since = loop.time()
        async with self._prepare_lock[1]:
            if self._prepared or self._prepare is None:
                return
            failed = self._prepare_failure
            if failed is not None and failed[0] >= waiting_since:
                # Concurrent first calls queue behind the one preparing: when it could not
                # reach the database while they waited, they fail with it, at once, rather
                # than each spending a connect budget after the other.
                raise type(failed[1])(str(failed[1]), reason=failed[1].reason) from failed[1]
            try:
                await self._prepare_with(self._prepare)
            except DBConnectionError as exc:
                self._prepare_failure = (loop.time(), exc)
                raise
            self._prepared = True

    async def _prepare_with(self, prepare: Prepare) -> None:
        attempts = self._attempts()
        while True:
            if self._router is None:
                pool, driver = self._pool_source(), self._driver
            else:  # the schema is changed on the writer; replicas follow it
                host = await self._router.writer()
                pool, driver = host.pool(), host.driver
            try:
                async with pool.connection() as conn:
                    await prepare(Session(pool, conn, driver, self._watchdog_here()))
                if self._router is not None:
                    self._prepared_on = host
                return
            except (ConnectionLostError, TransientQueryError) as exc:
                if self._router is not None:
                    self._router.failed(host, exc)
                delay = attempts.next_delay()
                if delay is None:
                    raise
                pool.record_retry()
                await asyncio.sleep(delay)


async def _rollback_quietly(session: Session) -> None:
    if session.broken:
        return  # the pool discards it; nothing to roll back on a dead connection
    try:
        await asyncio.shield(session.rollback())
    except Exception as exc:  # the original error matters more; the pool cleans up
        logger.warning("rollback failed: %s: %s", type(exc).__name__, exc)


class TransactionRunner(Runner):
    """The :class:`Runner` of an open transaction: one connection, calls serialised.

    Tasks started inside the transaction may call it concurrently; their statements run
    one at a time on the transaction's connection. Nothing is retried: a failure inside
    a transaction is the caller's to handle (the transaction is rolled back on exit).
    """

    def __init__(self, session: Session, *, owner: Executor) -> None:
        self._session = session
        #: The executor (one per tier) whose transaction this is.
        self.owner = owner
        self._lock = asyncio.Lock()
        self._open = True

    @property
    def parallelism(self) -> int:
        return 1

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The pool the transaction's connection came from."""
        return self._session.pool

    @property
    def open(self) -> bool:
        """False once the transaction has ended (committed or rolled back)."""
        return self._open

    def close(self) -> None:
        self._open = False

    async def run(
        self,
        work: Callable[[Session], Awaitable[T]],
        *,
        transaction: bool = False,
        skip_prepare: bool = False,
        retry: bool = True,
        read: bool = False,
    ) -> T:
        if not self._open:
            raise PoolClosedError("this transaction has ended; use the repository it came from")
        async with self._lock:
            return await work(self._session)


#: The transactions the current context holds, by the pool of their connection.
_HELD: contextvars.ContextVar[Mapping[ConnectionPool[Any], tuple[TransactionRunner, ...]]] = (
    contextvars.ContextVar("async_db_client_held_transactions", default=MappingProxyType({}))
)


@contextlib.contextmanager
def holding(runner: TransactionRunner | None) -> Iterator[None]:
    """For the block, the current context (this task and the tasks it starts, or this
    thread) holds ``runner``'s transaction: :class:`Executor` refuses calls from it that
    would wait for that connection, and pings over it. Idempotent; None does nothing.

    :meth:`Executor.transaction` holds its transaction for its block; the sync facade's
    calling thread holds it through :func:`async_db_client.client.joining`."""
    held = _HELD.get()
    current = held.get(runner.pool, ()) if runner is not None else ()
    if runner is None or runner in current:
        yield
        return
    token = _HELD.set(MappingProxyType({**held, runner.pool: (*current, runner)}))
    try:
        yield
    finally:
        _HELD.reset(token)
