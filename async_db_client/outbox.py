"""A durable outbox for the remote tier: writes survive an unreachable database.

:class:`Outbox` wraps a remote store and keeps its protocol
(:class:`~async_db_client.tiers.remote.RemoteStore`): with ``outbox: {path: ...}`` in
the remote tier's config, the registry hands the repository ``Outbox(store, ...)``.
When ``insert_or_update_hash`` or ``put_log`` cannot reach the database (any
:class:`~async_db_client.errors.DBConnectionError`), the write is appended to a local
SQLite file and the call returns success: True, or for ``put_log`` a *negative* id, the
outbox sequence number negated (the real id is assigned on replay). A replayer applies
the file in order once the database answers, and removes each entry only after it was
applied.

Guarantees, and why:

* **Order per path, whatever wrote it.** While the file holds anything, single writes go
  behind it, and every other write of records (bulk upserts, ``set_target_hash``,
  restores, transactions) first waits for the file to drain (at most ``wait_timeout``,
  then ``DBConnectionError``): a write never overtakes an older one for the same path,
  whose replay would then rotate an older hash on top of it.
* **Nothing lost.** An entry is committed to the file (``synchronous=FULL``) before the
  call returns, and deleted only after the database acknowledged it; entries left at
  close (or by a crash) are replayed by the next client that opens the file (at once,
  even if that client only reads).
* **Nothing doubled.** Replaying is idempotent: an upsert carries the time of the
  original call, so applying it twice changes nothing; a log entry carries its
  idempotency key.
* **Replay never stops for good.** Errors that may pass (the connection, a deadlock, a
  lock wait, a statement timeout, a missing schema) are retried with the library's
  backoff (:mod:`async_db_client.retry`) for as long as it takes. An entry the database
  refuses for good (any other error) is tried ``max_attempts`` times, then moved to the
  file's dead-letter table, logged at ERROR and counted; the entries behind it go on.
  Dead entries are listed, retried or dropped with :meth:`Outbox.dead_entries`,
  :meth:`Outbox.retry_dead`, :meth:`Outbox.drop_dead` (CLI: ``async-db-client outbox``).
* **One writer per file.** Every client of a process that names the same file shares
  one :class:`_Journal`: one thread writes the file, one replayer applies it. The
  replayer runs in a thread of its own, with its own event loop and connections, so it
  goes on while the application idles (a script between two calls), and across
  processes an exclusive lock on ``<path>.lock`` lets one replay at a time.
* **Fork-safe.** A child process forgets the journals it inherited (their threads are the
  parent's) without touching their files, and opens its own on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from .errors import (
    ConfigurationError,
    DBConnectionError,
    MigrationError,
    QueryTimeoutError,
    TransientQueryError,
    UsageError,
)
from .models import HashRecord, LogEntry
from .pool_manager import PoolManager
from .retry import Backoff
from .tiers.remote import RemoteStore

__all__ = ["DEFAULT_BACKOFF", "DeadEntry", "Outbox", "OutboxStats"]

logger = logging.getLogger("async_db_client")

T = TypeVar("T")

#: Pauses between replay attempts while the database stays unreachable.
DEFAULT_BACKOFF = Backoff(0.1, 5.0)
#: Errors after which the same entry may well succeed: retried without limit.
TRANSIENT = (DBConnectionError, TransientQueryError, QueryTimeoutError, MigrationError)
#: What the file looks like now (PRAGMA user_version): 2 added attempts and dead letters.
_FILE_VERSION = 2
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL CHECK (kind IN ('hash', 'log')),"
    " payload TEXT NOT NULL,"
    " at INTEGER,"
    " key TEXT)",
    "CREATE TABLE IF NOT EXISTS dead ("
    " seq INTEGER PRIMARY KEY,"
    " kind TEXT NOT NULL,"
    " payload TEXT NOT NULL,"
    " at INTEGER,"
    " key TEXT,"
    " attempts INTEGER NOT NULL,"
    " error TEXT NOT NULL,"
    " died_at INTEGER NOT NULL)",
)
_COLUMNS = "seq, kind, payload, at, key, attempts, last_error"
#: StoreFactory: the store the replayer applies entries with, made in its own loop.
StoreFactory = Callable[[PoolManager], RemoteStore]


@dataclass(frozen=True)
class _Entry:
    """One queued write: an upsert (``hash``, with its epoch ``at``) or a log (``log``)."""

    seq: int
    kind: str
    payload: str
    at: int | None
    key: str | None
    attempts: int = 0
    last_error: str | None = None

    def describe(self) -> str:
        if self.kind == "hash":
            with contextlib.suppress(ValueError, TypeError, KeyError):
                return f"hash record {json.loads(self.payload)['path']!r}"
        return f"{self.kind} entry"


@dataclass(frozen=True)
class DeadEntry:
    """An entry the database refused ``attempts`` times: kept, not applied."""

    seq: int
    kind: str
    #: The record's path (``hash``) or the entry's summary (``log``).
    subject: str
    attempts: int
    error: str
    died_at: datetime
    payload: str


@dataclass(frozen=True)
class OutboxStats:
    """The outbox file's state, and what this process did with it since it opened it."""

    path: str
    #: Writes waiting to be replayed.
    pending: int
    #: Entries given up on (see :meth:`Outbox.dead_entries`).
    dead: int
    queued_total: int
    delivered_total: int
    #: Replay attempts that met an error which may pass, and were retried.
    retries_total: int
    dead_lettered_total: int
    #: The last replay error (type and message), None once an entry got through.
    last_error: str | None
    replaying: bool
    #: Calls waiting for the queue to drain (writes that must follow it, flushes).
    waiting: int

    def as_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Outbox:
    """A remote store whose writes survive an unreachable database (see module doc).

    ``make_store`` builds, on a given pool manager, a store like ``store`` for the
    replayer, which runs in its own thread and event loop. ``wait_timeout`` bounds how
    long a write that must follow the queue (bulk, target hash, restore, transaction)
    waits for it to drain.
    """

    def __init__(
        self,
        store: RemoteStore,
        path: str,
        *,
        make_store: StoreFactory,
        replay_batch: int = 200,
        max_attempts: int = 5,
        backoff: Backoff = DEFAULT_BACKOFF,
        wait_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.path = os.path.abspath(os.path.expanduser(path))
        self.wait_timeout = wait_timeout
        self._journal = _Journal.acquire(
            self.path,
            make_store=make_store,
            replay_batch=replay_batch,
            max_attempts=max_attempts,
            backoff=backoff,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"Outbox({self.store!r}, {self.path!r}, pending={self._journal.pending})"

    def __getattr__(self, name: str) -> Any:
        # Reads, log deletions, health and migrations: the wrapped store's, unchanged.
        return getattr(self.store, name)

    # ---------------------------------------------------------------- single writes

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        """Write ``record`` (rotation as of ``now``), or queue it if the database is down."""
        if not self._journal.pending:
            try:
                await self.store.upsert_record(record, now)
                return
            except DBConnectionError as exc:
                self._diverted(exc)
        await self._journal.append("hash", record.model_dump_json(), now, None)

    async def insert_log(self, entry: LogEntry, key: str) -> int:
        """Store ``entry`` and return its id, or queue it and return ``-sequence``."""
        if not self._journal.pending:
            try:
                return await self.store.insert_log(entry, key)
            except DBConnectionError as exc:
                self._diverted(exc)
        return -await self._journal.append("log", entry.model_dump_json(), None, key)

    # ------------------------------------------------- writes that follow the queue

    async def upsert_records(
        self, records: Iterator[HashRecord], now: int, *, ordered: bool
    ) -> int:
        await self._after_queue("insert_or_update_hashes")
        return await self.store.upsert_records(records, now, ordered=ordered)

    async def set_target(self, path: str, target_hash: str | None) -> bool:
        await self._after_queue("set_target_hash")
        return await self.store.set_target(path, target_hash)

    async def restore_records(self, records: list[HashRecord]) -> None:
        await self._after_queue("restore_hash_records")
        await self.store.restore_records(records)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[RemoteStore]:
        """The wrapped store's transaction, once the queue has drained: a transaction's
        writes belong to it alone (they are never queued)."""
        await self._after_queue("transaction")
        async with self.store.transaction() as tx:
            yield tx

    async def _after_queue(self, operation: str) -> None:
        if not self._journal.pending:
            return
        left = await self._journal.wait_drained(self.wait_timeout)
        if left:
            raise DBConnectionError(
                f"{operation} must follow {left} earlier write(s) still waiting in the outbox "
                f"{self.path} (the database has not taken them within {self.wait_timeout:g}s)"
            )

    # ------------------------------------------------------------------ the queue

    async def pending(self) -> int:
        """How many writes wait in the outbox file (queued by any process)."""
        return await self._journal.count()

    async def flush(self, timeout: float | None = None) -> int:
        """Wait until every queued write was applied or given up on (or ``timeout``
        passes); the writes still waiting."""
        return await self._journal.wait_drained(timeout)

    async def stats(self) -> OutboxStats:
        """The file's counts and this process's counters."""
        return await self._journal.stats()

    async def dead_entries(self, limit: int = 100) -> list[DeadEntry]:
        """Entries given up on, oldest first."""
        return await self._journal.dead_entries(limit)

    async def retry_dead(self, seqs: list[int] | None = None) -> int:
        """Queue dead entries again (all, or those ``seqs``), behind everything queued
        since; how many. A retried upsert makes its hash current again if newer writes
        of its path were applied meanwhile: retry only what is still wanted."""
        return await self._journal.retry_dead(seqs)

    async def drop_dead(self, seqs: list[int] | None = None) -> int:
        """Delete dead entries (all, or those ``seqs``); how many."""
        return await self._journal.drop_dead(seqs)

    async def aclose(self) -> None:
        """Let go of the file (the last client of the process stops its threads; what
        is left stays for the next client), then close the wrapped store."""
        if not self._closed:
            self._closed = True
            await asyncio.get_running_loop().run_in_executor(None, self._journal.release)
        await self.store.aclose()

    def _diverted(self, exc: BaseException) -> None:
        logger.warning(
            "remote database unreachable (%s: %s); writes go to the outbox %s",
            type(exc).__name__,
            exc,
            self.path,
        )


class _Journal:
    """One outbox file of this process: its writer thread, its replayer, its counters.

    Shared by every :class:`Outbox` naming the file (reference counted); safe to use
    from any thread and any event loop.
    """

    _open: dict[str, _Journal] = {}
    _registry = threading.Lock()

    @classmethod
    def acquire(cls, path: str, **options: Any) -> _Journal:
        with cls._registry:
            journal = cls._open.get(path)
            if journal is None:
                journal = _Journal(path, **options)
                cls._open[path] = journal
            journal._users += 1
            return journal

    @classmethod
    def forget_all(cls) -> None:
        """In a forked child: the inherited journals' threads are the parent's; drop them
        (their files are left untouched) and open anew on first use."""
        cls._open = {}
        cls._registry = threading.Lock()

    def __init__(
        self,
        path: str,
        *,
        make_store: StoreFactory,
        replay_batch: int,
        max_attempts: int,
        backoff: Backoff,
    ) -> None:
        self.path = path
        self._make_store = make_store
        self._batch = replay_batch
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._users = 0
        self._lock = threading.Lock()  # counters, waiters, the replayer's state
        self._writer = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="async_db_client-outbox"
        )
        self._db: sqlite3.Connection | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._replayer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._task: asyncio.Task[None] | None = None  # the replayer's, to cancel it
        self._counters = dict.fromkeys(
            ("queued_total", "delivered_total", "retries_total", "dead_lettered_total"), 0
        )
        self._last_error: str | None = None
        # Opened now: a file left by a crash is replayed even by a client that only reads.
        try:
            self.pending = self._call(_count)
        except (sqlite3.Error, OSError) as exc:
            self._writer.shutdown(wait=False)
            raise ConfigurationError(
                f"database.remote_config.outbox.path: cannot open {path}: {exc}",
                key="database.remote_config.outbox.path",
            ) from None
        if self.pending:
            logger.info("outbox %s holds %d writes from before: replaying", path, self.pending)
            self._start_replayer()

    # ------------------------------------------------------------- the file, one writer

    def _call(self, func: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``func`` on the file in the writer thread, waiting here."""
        return self._writer.submit(self._with_db, func).result()

    async def _run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._with_db, func)

    def _with_db(self, func: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            _upgrade(db)
            self._db = db
        return func(self._db)

    async def append(self, kind: str, payload: str, at: int | None, key: str | None) -> int:
        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO outbox (kind, payload, at, key) VALUES (?, ?, ?, ?)",
                (kind, payload, at, key),
            )
            return int(cursor.lastrowid or 0)

        seq = await self._run(insert)
        with self._lock:
            self.pending += 1
            self._counters["queued_total"] += 1
        # Not woken if asleep in a backoff: a write per second during an outage must not
        # become a connection attempt per second.
        self._start_replayer(wake=False)
        return seq

    async def count(self) -> int:
        """What waits in the file: this process's queue and any other's."""
        waiting = await self._run(_count)
        with self._lock:
            if waiting > self.pending:  # another process queued: ours must go behind it
                self.pending = waiting
        return waiting

    # ---------------------------------------------------------------------- waiting

    async def wait_drained(self, timeout: float | None) -> int:
        """Wait until nothing is pending (or ``timeout``); what is pending then."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self.pending:
                return 0
            done: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, done))
        self._start_replayer()
        try:
            async with asyncio.timeout(timeout):
                await done
        except TimeoutError:
            pass
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, done))
        return self.pending

    def _notify_drained(self) -> None:
        with self._lock:
            if self.pending:
                return
            waiters, self._waiters = self._waiters, []
        for loop, done in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, done)

    # --------------------------------------------------------------------- replaying

    def _start_replayer(self, *, wake: bool = True) -> None:
        """Start the replayer unless it runs; if it sleeps in a backoff and ``wake``
        (someone waits for the queue), let it try again now."""
        with self._lock:
            if self._stopping.is_set() or (self._replayer and self._replayer.is_alive()):
                if wake and self._wake is not None:
                    loop, event = self._wake
                    with contextlib.suppress(RuntimeError):
                        loop.call_soon_threadsafe(event.set)
                return
            self._replayer = threading.Thread(
                target=self._replay_thread,
                name=f"async_db_client-outbox-replay {os.path.basename(self.path)}",
                daemon=True,
            )
            self._replayer.start()

    def _replay_thread(self) -> None:
        try:
            asyncio.run(self._replay_session())
        except asyncio.CancelledError:
            if not self._stopping.is_set():
                logger.error("outbox %s: the replayer was cancelled", self.path)
        except BaseException:  # never silent: the next append starts a new replayer
            logger.exception("outbox %s: the replayer stopped", self.path)
        finally:
            with self._lock:
                self._wake = None
                if self._replayer is threading.current_thread():
                    self._replayer = None  # from now on an append starts a new one
            self._notify_drained()
            # Entries appended while this one was ending must not wait for the next append.
            if self.pending and not self._stopping.is_set():
                self._start_replayer()

    async def _replay_session(self) -> None:
        """Hold the file's replay lock, apply everything, let go."""
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            self._wake = (asyncio.get_running_loop(), asyncio.Event())
            self._task = task
        lease = await asyncio.to_thread(_lock_file, f"{self.path}.lock", self._stopping)
        if lease is None:
            return  # stopping while another process replayed
        pools = PoolManager()
        try:
            store = self._make_store(pools)
            await self._replay(store)
        finally:
            try:
                await pools.aclose()
            finally:
                os.close(lease)  # releases the lock

    async def _replay(self, store: RemoteStore) -> None:
        attempts = self._backoff.attempts()
        while not self._stopping.is_set():
            entries = await self._run(lambda db: _oldest(db, self._batch))
            if not entries:
                with self._lock:
                    self.pending = 0
                logger.info("outbox %s replayed completely", self.path)
                return
            applied: list[int] = []
            pause = None
            try:
                for entry in entries:
                    if self._stopping.is_set():
                        break
                    try:
                        await _apply(store, entry)
                    except TRANSIENT as exc:
                        pause = self._transient(exc, attempts)
                        break
                    except Exception as exc:  # refused for good, or a broken payload
                        pause = await self._refused(entry, exc, attempts)
                        if pause is not None:
                            break
                        continue
                    applied.append(entry.seq)
                    attempts.reset()
            finally:
                if applied:
                    # One commit per batch: a crash before it replays the batch again,
                    # which is harmless (replays are idempotent).
                    await self._run(functools.partial(_delete_upto, last_seq=applied[-1]))
                    with self._lock:
                        self.pending = max(0, self.pending - len(applied))
                        self._counters["delivered_total"] += len(applied)
                        self._last_error = None
            if pause is not None:
                await self._sleep(pause)

    def _transient(self, exc: BaseException, attempts: Any) -> float:
        delay: float = attempts.next_delay()
        with self._lock:
            first = self._last_error is None
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._counters["retries_total"] += 1
        (logger.warning if first else logger.debug)(
            "outbox %s: replay waits for the database (%s); next try in %.2fs",
            self.path,
            self._last_error,
            delay,
        )
        return delay

    async def _refused(self, entry: _Entry, exc: BaseException, attempts: Any) -> float | None:
        """Count a permanent failure of ``entry``: the pause before trying it again, or
        None once it was moved to the dead letters (the replay goes on at once)."""
        error = f"{type(exc).__name__}: {exc}"
        tries = entry.attempts + 1
        if tries >= self._max_attempts:
            await self._run(lambda db: _bury(db, entry, tries, error))
            with self._lock:
                self.pending = max(0, self.pending - 1)
                self._counters["dead_lettered_total"] += 1
                self._last_error = error
            logger.error(
                "outbox %s: gave up on entry %d (%s) after %d attempts, moved to the dead "
                "letters (async-db-client outbox lists them): %s",
                self.path,
                entry.seq,
                entry.describe(),
                tries,
                error,
            )
            return None
        await self._run(lambda db: _note_failure(db, entry.seq, tries, error))
        with self._lock:
            self._last_error = error
            self._counters["retries_total"] += 1
        delay: float = attempts.next_delay()
        logger.warning(
            "outbox %s: entry %d (%s) refused (attempt %d of %d), next try in %.2fs: %s",
            self.path,
            entry.seq,
            entry.describe(),
            tries,
            self._max_attempts,
            delay,
            error,
        )
        return delay

    async def _sleep(self, delay: float) -> None:
        """A backoff pause, cut short by new work or by stopping."""
        assert self._wake is not None
        event = self._wake[1]
        event.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await event.wait()

    # ----------------------------------------------------------------- dead letters

    async def dead_entries(self, limit: int) -> list[DeadEntry]:
        rows = await self._run(
            lambda db: db.execute(
                "SELECT seq, kind, payload, attempts, error, died_at FROM dead ORDER BY seq"
                " LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return [
            DeadEntry(
                seq=seq,
                kind=kind,
                subject=_subject(kind, payload),
                attempts=tries,
                error=error,
                died_at=datetime.fromtimestamp(died_at, UTC),
                payload=payload,
            )
            for seq, kind, payload, tries, error, died_at in rows
        ]

    async def retry_dead(self, seqs: list[int] | None) -> int:
        moved = await self._run(lambda db: _resurrect(db, seqs))
        if moved:
            with self._lock:
                self.pending += moved
            self._start_replayer()
        return moved

    async def drop_dead(self, seqs: list[int] | None) -> int:
        return await self._run(lambda db: _drop(db, seqs))

    async def stats(self) -> OutboxStats:
        dead = await self._run(
            lambda db: int(db.execute("SELECT COUNT(*) FROM dead").fetchone()[0])
        )
        pending = await self.count()
        with self._lock:
            return OutboxStats(
                path=self.path,
                pending=pending,
                dead=dead,
                last_error=self._last_error,
                replaying=bool(self._replayer and self._replayer.is_alive()),
                waiting=len(self._waiters),
                **self._counters,
            )

    # ---------------------------------------------------------------------- closing

    def release(self) -> None:
        """One client less; the last one stops the replayer (within a few seconds: it
        finishes the entry it is applying) and closes the file."""
        with _Journal._registry:
            self._users -= 1
            if self._users > 0 or _Journal._open.get(self.path) is not self:
                return
            del _Journal._open[self.path]
        self._stopping.set()
        with self._lock:
            wake, task, replayer = self._wake, self._task, self._replayer
        if wake is not None and task is not None:
            # Cancelled, not just told: it may be waiting for a database that is gone.
            with contextlib.suppress(RuntimeError):
                wake[0].call_soon_threadsafe(task.cancel)
        if replayer is not None:
            replayer.join(timeout=10.0)
            if replayer.is_alive():
                logger.warning("outbox %s: the replayer did not stop within 10s", self.path)

        def close(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        if self._db is not None:
            self._call(close)
        self._writer.shutdown(wait=True)


# --------------------------------------------------------------------- file helpers


def _upgrade(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a file written by an older version up to date."""
    for statement in _SCHEMA:
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "attempts" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    if "last_error" not in columns:
        db.execute("ALTER TABLE outbox ADD COLUMN last_error TEXT")
    db.execute(f"PRAGMA user_version = {_FILE_VERSION}")


def _count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def _oldest(db: sqlite3.Connection, limit: int) -> list[_Entry]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM outbox ORDER BY seq LIMIT ?", (limit,))
    return [_Entry(*row) for row in rows.fetchall()]


def _delete_upto(db: sqlite3.Connection, last_seq: int) -> None:
    db.execute("DELETE FROM outbox WHERE seq <= ?", (last_seq,))


def _note_failure(db: sqlite3.Connection, seq: int, attempts: int, error: str) -> None:
    db.execute(
        "UPDATE outbox SET attempts = ?, last_error = ? WHERE seq = ?", (attempts, error, seq)
    )


def _bury(db: sqlite3.Connection, entry: _Entry, attempts: int, error: str) -> None:
    with db:  # one transaction: the entry is in exactly one of the two tables
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT OR REPLACE INTO dead (seq, kind, payload, at, key, attempts, error, died_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.kind, entry.payload, entry.at, entry.key, attempts, error,
             int(time.time())),
        )  # fmt: skip
        db.execute("DELETE FROM outbox WHERE seq = ?", (entry.seq,))


def _selected(seqs: list[int] | None) -> tuple[str, tuple[int, ...]]:
    if seqs is None:
        return "", ()
    return f" WHERE seq IN ({', '.join('?' * len(seqs))})", tuple(seqs)


def _resurrect(db: sqlite3.Connection, seqs: list[int] | None) -> int:
    if seqs == []:
        return 0
    where, params = _selected(seqs)
    with db:
        db.execute("BEGIN IMMEDIATE")
        moved = db.execute(
            f"INSERT INTO outbox (kind, payload, at, key) SELECT kind, payload, at, key"
            f" FROM dead{where} ORDER BY seq",
            params,
        ).rowcount
        db.execute(f"DELETE FROM dead{where}", params)
    return int(moved)


def _drop(db: sqlite3.Connection, seqs: list[int] | None) -> int:
    if seqs == []:
        return 0
    where, params = _selected(seqs)
    return int(db.execute(f"DELETE FROM dead{where}", params).rowcount)


def _subject(kind: str, payload: str) -> str:
    with contextlib.suppress(ValueError, TypeError, KeyError):
        data = json.loads(payload)
        return str(data["path"] if kind == "hash" else data["summary_message"])
    return "(unreadable payload)"


def _lock_file(path: str, stopping: threading.Event) -> int | None:
    """Take the exclusive replay lock of the outbox file (one replayer across
    processes): its descriptor, or None if ``stopping`` was set while waiting."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if stopping.wait(0.2):  # another process replays: look again shortly
                os.close(fd)
                return None


async def _apply(store: RemoteStore, entry: _Entry) -> None:
    if entry.kind == "hash":
        record = HashRecord.model_validate(json.loads(entry.payload))
        if entry.at is None:
            raise UsageError("an outbox hash entry without its time")
        await store.upsert_record(record, entry.at)
    else:
        log = LogEntry.model_validate(json.loads(entry.payload))
        if entry.key is None:
            raise UsageError("an outbox log entry without its key")
        await store.insert_log(log, entry.key)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


os.register_at_fork(after_in_child=_Journal.forget_all)
