"""The state holder behind the in-memory fakes: serialized writes and real transactions.

Each write runs without awaiting between reading and changing the state, so it is atomic
within the event loop. A transaction takes the store's write lock for its whole duration
(as row locks would), works on a copy of the state, and swaps the copy in only when the
block exits normally; other tasks keep reading the last committed state meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import PoolClosedError
from ..models import LogEntry

__all__ = ["LogTable", "MemoryStore"]

S = TypeVar("S")


class MemoryStore(Generic[S]):
    """Holds a state object; ``copy`` makes an independent copy for a transaction."""

    def __init__(self, state: S, copy: Callable[[S], S]) -> None:
        self._state = state
        self._copy = copy
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._parent: MemoryStore[S] | None = None
        self._active = True

    @property
    def state(self) -> S:
        if not self._active:
            raise PoolClosedError("this transaction has ended; use the repository it came from")
        return self._state

    def _get_lock(self) -> asyncio.Lock:
        # asyncio.Lock binds to the loop it first waits in; a fake reused from a new loop
        # (asyncio.run twice, a new test loop) gets a fresh lock once the old one is free.
        loop = asyncio.get_running_loop()
        if self._lock is None or (self._lock_loop is not loop and not self._lock.locked()):
            self._lock = asyncio.Lock()
            self._lock_loop = loop
        return self._lock

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[S]:
        """Exclusive write access (a no-op inside a transaction, which holds the lock)."""
        if self._parent is not None:
            yield self.state
            return
        async with self._get_lock():
            yield self._state

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[MemoryStore[S]]:
        """A child store over a copy of the state, committed if the block succeeds."""
        if self._parent is not None:
            raise PoolClosedError("transactions do not nest")
        async with self._get_lock():
            child: MemoryStore[S] = MemoryStore(self._copy(self._state), self._copy)
            child._parent = self
            try:
                yield child
            finally:
                child._active = False
            self._state = child._state


@dataclass
class LogTable:
    """Log entries by id, with the idempotency key each was written under."""

    entries: dict[int, LogEntry] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    next_id: int = 1

    def copy(self) -> LogTable:
        return LogTable(dict(self.entries), dict(self.keys), self.next_id)

    def insert(self, entry: LogEntry, key: str) -> int:
        """Store ``entry`` under a new id, unless ``key`` was stored before: then its id."""
        existing = self.keys.get(key)
        if existing is not None:
            return existing
        log_id = self.next_id
        self.next_id += 1
        self.entries[log_id] = entry.model_copy(update={"log_id": log_id})
        self.keys[key] = log_id
        return log_id

    def delete(self, ids: list[int]) -> list[int]:
        """Delete ``ids``; return those that existed."""
        deleted = [log_id for log_id in ids if self.entries.pop(log_id, None) is not None]
        if deleted:
            gone = set(deleted)
            self.keys = {k: v for k, v in self.keys.items() if v not in gone}
        return deleted
