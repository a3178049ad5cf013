"""What the in-memory stores share: a state with serialized writes and real transactions.

Each write changes the state without awaiting in between, under the state's write slot,
so it is atomic. A transaction holds the write slot for its whole duration (as row locks
would), works on a copy of the state, and swaps the copy in only when the block exits
normally; other tasks keep reading the last committed state meanwhile.

One store may serve several event loops in several threads (the sync facade gives each
calling thread a loop and a client of its own, all sharing the client's in-memory
stores): the write slot is a lock any loop can wait for without blocking its thread, and
a short mutex, never held across an await, keeps each read or change of the state whole.

The fakes are a product feature (configure ``local``): they keep the same contracts as
the SQL backends and pass the same contract suite.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from ...errors import PoolClosedError, UsageError
from ...models import LogEntry

__all__ = ["LogTable", "MemoryStoreBase", "Sequence", "State", "TransactionalState", "WriteSlot"]


class State(Protocol):
    """A store's whole state; ``copy()`` makes an independent copy for a transaction."""

    def copy(self) -> Self: ...


S = TypeVar("S", bound=State)


class WriteSlot:
    """An async lock that tasks of any event loop, in any thread, can wait for.

    ``asyncio.Lock`` belongs to one loop. Waiters queue first come, first served; the
    slot is handed to the next one through its own loop. Uncontended, it costs a
    ``threading.Lock`` round.
    """

    __slots__ = ("_guard", "_held", "_waiters")

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            with self._guard:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            # Otherwise it was already handed over: _grant sees it cancelled, passes it on.
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._release()

    def _release(self) -> None:
        with self._guard:
            while self._waiters:
                waiter = self._waiters.popleft()
                try:
                    waiter.get_loop().call_soon_threadsafe(self._grant, waiter)
                except RuntimeError:  # its loop is closed: nobody waits there any more
                    continue
                return
            self._held = False

    def _grant(self, waiter: asyncio.Future[None]) -> None:
        if waiter.cancelled():
            self._release()
        else:
            waiter.set_result(None)


class TransactionalState(Generic[S]):
    """Holds a state object: serialized writes, and transactions on a copy of it."""

    def __init__(self, state: S) -> None:
        self._state = state
        #: Held while the state is read or changed, never across an await.
        self.mutex = threading.Lock()
        self._slot = WriteSlot()
        self._parent: TransactionalState[S] | None = None
        self._active = True

    @property
    def state(self) -> S:
        if not self._active:
            raise PoolClosedError("this transaction has ended; use the repository it came from")
        return self._state

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[S]:
        """Exclusive write access for a body that does not await (inside a transaction
        only the mutex: the transaction holds the slot)."""
        if self._parent is not None:
            state = self.state
            with self.mutex:
                yield state
            return
        async with self._slot:
            with self.mutex:
                yield self._state

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[TransactionalState[S]]:
        """A child over a copy of the state, committed if the block succeeds."""
        if self._parent is not None:
            raise UsageError("transactions do not nest")
        async with self._slot:
            with self.mutex:
                child = TransactionalState(self._state.copy())
            child._parent = self
            try:
                yield child
            finally:
                child._active = False
            with self.mutex:
                self._state = child._state


class _Reading(Generic[S]):
    """``with store.reading() as state:``: the state, whole, for a body that does not await."""

    __slots__ = ("_holder",)

    def __init__(self, holder: TransactionalState[S]) -> None:
        self._holder = holder

    def __enter__(self) -> S:
        state = self._holder.state  # raises once a transaction's store has ended
        self._holder.mutex.acquire()
        return state

    def __exit__(self, *exc_info: object) -> None:
        self._holder.mutex.release()


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

    A subclass names its state class; every method it adds reads the state inside
    ``with self.reading() as state`` or changes it inside ``async with self.writing() as
    state``, never awaiting in either.
    """

    state_class: ClassVar[type[Any]]

    def __init__(self, state: TransactionalState[S] | None = None) -> None:
        self._state: TransactionalState[S] = state or TransactionalState(self.state_class())

    def __repr__(self) -> str:
        values = vars(self._state._state)  # not .state: a repr must not raise
        sizes = (f"{name}={len(v)}" for name, v in values.items() if hasattr(v, "__len__"))
        return f"{type(self).__name__}({', '.join(sizes)})"

    def reading(self) -> _Reading[S]:
        """The current state (a transaction's own copy inside one), for a body that
        does not await."""
        return _Reading(self._state)

    def writing(self) -> contextlib.AbstractAsyncContextManager[S]:
        """Exclusive write access to the state, for a body that does not await."""
        return self._state.writing()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        async with self._state.transaction() as child:
            yield type(self)(child)

    def after_fork(self) -> None:
        """In a forked child: the data stays, the locks start free (a thread of the
        parent may have held them; it does not exist here)."""
        self._state.mutex = threading.Lock()
        self._state._slot = WriteSlot()

    async def ping(self) -> None:
        _ = self._state.state  # raises if this is a transaction's store after it ended

    async def migrate(self) -> int:
        return 0  # no schema

    async def aclose(self) -> None:
        return None
