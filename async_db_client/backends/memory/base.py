"""What the in-memory stores share: a state with serialized writes and real transactions.

Each write runs without awaiting between reading and changing the state, so it is atomic
within the event loop. A transaction takes the state's write lock for its whole duration
(as row locks would), works on a copy of the state, and swaps the copy in only when the
block exits normally; other tasks keep reading the last committed state meanwhile.

The fakes are a product feature (configure ``local``): they keep the same contracts as
the SQL backends and pass the same contract suite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from ...errors import PoolClosedError, UsageError
from ...models import LogEntry

__all__ = ["LogTable", "MemoryStoreBase", "Sequence", "State", "TransactionalState"]


class State(Protocol):
    """A store's whole state; ``copy()`` makes an independent copy for a transaction."""

    def copy(self) -> Self: ...


S = TypeVar("S", bound=State)


class TransactionalState(Generic[S]):
    """Holds a state object: serialized writes, and transactions on a copy of it."""

    def __init__(self, state: S) -> None:
        self._state = state
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._parent: TransactionalState[S] | None = None
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
    async def transaction(self) -> AsyncIterator[TransactionalState[S]]:
        """A child over a copy of the state, committed if the block succeeds."""
        if self._parent is not None:
            raise UsageError("transactions do not nest")
        async with self._get_lock():
            child = TransactionalState(self._state.copy())
            child._parent = self
            try:
                yield child
            finally:
                child._active = False
            self._state = child._state


class Sequence:
    """Ids handed out in order and never again, shared by a state and its transaction's
    copy: as with an AUTO_INCREMENT, an id used in a rolled-back transaction stays used."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 1

    def __repr__(self) -> str:
        return f"Sequence(next={self._next})"

    def take(self) -> int:
        value = self._next
        self._next += 1
        return value


@dataclass
class LogTable:
    """Log entries by id, with the idempotency key each was written under."""

    entries: dict[int, LogEntry] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    ids: Sequence = field(default_factory=Sequence)

    def __len__(self) -> int:
        return len(self.entries)

    def copy(self) -> LogTable:
        return LogTable(dict(self.entries), dict(self.keys), self.ids)

    def insert(self, entry: LogEntry, key: str) -> int:
        """Store ``entry`` under a new id, unless ``key`` was stored before: then its id."""
        existing = self.keys.get(key)
        if existing is not None:
            return existing
        log_id = self.ids.take()
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


class MemoryStoreBase(Generic[S]):
    """Construction, transactions, health and lifecycle of every in-memory store.

    A subclass names its state class; every method it adds reads ``self.state`` or
    changes it inside ``async with self.writing() as state``.
    """

    state_class: ClassVar[type[Any]]

    def __init__(self, state: TransactionalState[S] | None = None) -> None:
        self._state: TransactionalState[S] = state or TransactionalState(self.state_class())

    def __repr__(self) -> str:
        values = vars(self._state._state)  # not .state: a repr must not raise
        sizes = (f"{name}={len(v)}" for name, v in values.items() if hasattr(v, "__len__"))
        return f"{type(self).__name__}({', '.join(sizes)})"

    @property
    def state(self) -> S:
        """The current state (a transaction's own copy inside one)."""
        return self._state.state

    def writing(self) -> contextlib.AbstractAsyncContextManager[S]:
        """Exclusive write access to the state."""
        return self._state.writing()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        async with self._state.transaction() as child:
            yield type(self)(child)

    async def ping(self) -> None:
        _ = self._state.state  # raises if this is a transaction's store after it ended

    async def migrate(self) -> int:
        return 0  # no schema

    async def aclose(self) -> None:
        return None
