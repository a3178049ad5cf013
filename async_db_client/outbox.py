"""A durable outbox for the remote tier: writes survive an unreachable database.

:class:`Outbox` wraps a remote store and keeps its protocol
(:class:`~async_db_client.tiers.remote.RemoteStore`): with ``outbox: {path: ...}`` in
the remote tier's config, the registry hands the repository ``Outbox(store)`` instead of
the store. Single writes go through the outbox; everything else (reads, bulk writes,
transactions, health, migrations) goes straight to the wrapped store.

When ``insert_or_update_hash`` or ``put_log`` cannot reach the database (any
:class:`~async_db_client.errors.DBConnectionError`), the write is appended to a local
SQLite file and the call returns success: True, or for ``put_log`` a *negative* id, the
outbox sequence number negated (the real id is assigned on replay). A background task
replays the outbox in order once the database answers again, and removes each entry
only after it was applied.

Guarantees, and why:

* **Order.** While the outbox holds anything, new writes are appended behind it rather
  than sent directly, so writes of one task reach the database in the order they were
  made (the prev-hash rotation of a path depends on it).
* **Nothing lost.** An entry is committed to the file (``synchronous=FULL``) before the
  call returns, and deleted only after the database acknowledged it; entries left at
  close (or by a crash) are replayed by the next client that opens the same file.
* **Nothing doubled.** Replaying is idempotent: an upsert carries the time of the
  original call, so applying it twice changes nothing; a log entry carries its
  idempotency key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import DBConnectionError
from .models import HashRecord, LogEntry
from .retry import Backoff
from .tiers.remote import RemoteStore

__all__ = ["DEFAULT_BACKOFF", "Outbox", "OutboxEntry"]

logger = logging.getLogger("async_db_client")

T = TypeVar("T")

#: Pauses between replay attempts while the database stays unreachable.
DEFAULT_BACKOFF = Backoff(0.1, 5.0)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS outbox ("
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL CHECK (kind IN ('hash', 'log')),"
    " payload TEXT NOT NULL,"
    " at INTEGER,"
    " key TEXT)"
)


@dataclass(frozen=True)
class OutboxEntry:
    """One queued write: an upsert (``hash``, with its epoch ``at``) or a log (``log``)."""

    seq: int
    kind: str
    payload: str
    at: int | None
    key: str | None


class _File:
    """The SQLite file, used from one worker thread (sqlite3 connections are not
    thread-safe, and one writer keeps the order)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="async_db_client-outbox"
        )
        self._db: sqlite3.Connection | None = None

    async def run(self, func: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, func)

    def _call(self, func: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(_SCHEMA)
            self._db = db
        return func(self._db)

    def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        self._thread.submit(shut).result()
        self._thread.shutdown(wait=True)


class Outbox:
    """A remote store whose single writes survive an unreachable database.

    Same protocol as the ``store`` it wraps: ``upsert_record`` and ``insert_log`` go
    through the outbox file when needed; every other attribute is the store's own.
    """

    def __init__(
        self,
        store: RemoteStore,
        path: str,
        *,
        replay_batch: int = 200,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.store = store
        self.path = path
        self._file = _File(path)
        self._batch = replay_batch
        self._backoff = backoff
        self._pending: int | None = None  # loaded from the file on first use
        self._replayer: asyncio.Task[None] | None = None
        self._drained: asyncio.Event | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"Outbox({self.store!r}, {self.path!r}, pending={self._pending})"

    def __getattr__(self, name: str) -> Any:
        # Reads, bulk writes, transactions (whose writes belong to the transaction),
        # health and migrations: the wrapped store's, unchanged.
        return getattr(self.store, name)

    # ------------------------------------------------------------------ writes

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        """Write ``record`` (rotation as of ``now``), or queue it if the database is down."""
        if not await self._queue_first():
            try:
                await self.store.upsert_record(record, now)
                return
            except DBConnectionError as exc:
                self._diverted(exc)
        await self._append("hash", record.model_dump_json(), now, None)

    async def insert_log(self, entry: LogEntry, key: str) -> int:
        """Store ``entry`` and return its id, or queue it and return ``-sequence``."""
        if not await self._queue_first():
            try:
                return await self.store.insert_log(entry, key)
            except DBConnectionError as exc:
                self._diverted(exc)
        return -await self._append("log", entry.model_dump_json(), None, key)

    async def pending(self) -> int:
        """How many writes wait in the outbox."""
        return await self._count()

    async def flush(self, timeout: float | None = None) -> int:
        """Wait until the outbox is empty (or ``timeout`` passes); the entries left."""
        if await self._count() == 0:
            return 0
        self._start_replayer()
        assert self._drained is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        return await self._count()

    async def aclose(self) -> None:
        """Stop replaying and close the file (what is left stays for the next client),
        then close the wrapped store."""
        if self._closed:
            return
        self._closed = True
        if self._replayer is not None:
            self._replayer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._replayer
        await asyncio.get_running_loop().run_in_executor(None, self._file.close)
        await self.store.aclose()

    # ---------------------------------------------------------------- internals

    def _diverted(self, exc: BaseException) -> None:
        logger.warning(
            "remote database unreachable (%s: %s); writes go to the outbox %s",
            type(exc).__name__,
            exc,
            self.path,
        )

    async def _count(self) -> int:
        if self._pending is None:
            self._pending = await self._file.run(
                lambda db: int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            )
        return self._pending

    async def _queue_first(self) -> bool:
        """True while earlier writes wait: new ones must go behind them."""
        count = await self._count()
        if count and self._replayer is None:
            self._start_replayer()  # entries left by an earlier run
        return count > 0

    async def _append(self, kind: str, payload: str, at: int | None, key: str | None) -> int:
        def insert(db: sqlite3.Connection) -> int:
            cursor = db.execute(
                "INSERT INTO outbox (kind, payload, at, key) VALUES (?, ?, ?, ?)",
                (kind, payload, at, key),
            )
            return int(cursor.lastrowid or 0)

        seq = await self._file.run(insert)
        self._pending = await self._count() + 1
        self._start_replayer()
        return seq

    def _start_replayer(self) -> None:
        if self._closed:
            return
        if self._drained is None:
            self._drained = asyncio.Event()
        if self._replayer is None or self._replayer.done():
            self._drained.clear()
            self._replayer = asyncio.get_running_loop().create_task(
                self._replay(), name=f"outbox-replay {self.path}"
            )

    async def _replay(self) -> None:
        attempts = self._backoff.attempts()
        while True:
            entries = await self._file.run(self._oldest)
            if not entries:
                self._pending = 0
                assert self._drained is not None
                self._drained.set()
                logger.info("outbox %s replayed completely", self.path)
                return
            applied = 0
            try:
                for entry in entries:
                    await self._apply(entry)
                    applied += 1
                attempts.reset()
            except DBConnectionError:
                delay = attempts.next_delay()
                assert delay is not None  # no limit, no deadline: the server comes back
                await asyncio.sleep(delay)
            finally:
                if applied:
                    # One commit per batch: a crash before it replays the batch again,
                    # which is harmless (replays are idempotent).
                    await self._file.run(_deleter(entries[applied - 1].seq))
                    self._pending = max(0, (self._pending or applied) - applied)

    def _oldest(self, db: sqlite3.Connection) -> list[OutboxEntry]:
        rows = db.execute(
            "SELECT seq, kind, payload, at, key FROM outbox ORDER BY seq LIMIT ?", (self._batch,)
        ).fetchall()
        return [OutboxEntry(*row) for row in rows]

    async def _apply(self, entry: OutboxEntry) -> None:
        if entry.kind == "hash":
            record = HashRecord.model_validate(json.loads(entry.payload))
            assert entry.at is not None
            await self.store.upsert_record(record, entry.at)
        else:
            log = LogEntry.model_validate(json.loads(entry.payload))
            assert entry.key is not None
            await self.store.insert_log(log, entry.key)


def _deleter(last_seq: int) -> Callable[[sqlite3.Connection], None]:
    def delete(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM outbox WHERE seq <= ?", (last_seq,))

    return delete
