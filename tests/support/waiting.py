"""Waiting in tests by events and conditions, never by a fixed sleep.

CI shares its machine: any step of a test may take seconds longer than on an idle one.
So a test never sleeps "long enough" for something to happen; it waits for the thing
itself (an event, a future, or a condition polled until it holds), with a deadline so
generous that only a real hang reaches it, and goes on the moment it holds. Time bounds
that a test asserts are the documented ones, derived from the settings, plus
:data:`SLACK`.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

#: How long a test waits for something that should happen promptly: only a hang (or the
#: bug the test looks for) gets this far, so a loaded machine never does.
PATIENCE = 30.0
#: What a loaded machine may add to a documented time bound: seconds, not milliseconds.
SLACK = 10.0
#: How often a condition is polled: short, because nothing else tells the test it holds.
POLL = 0.01


def _describe(condition: Callable[[], object], what: str | None) -> str:
    if what:
        return what
    try:  # a lambda says most by its source line
        return inspect.getsource(condition).strip()
    except (OSError, TypeError):
        return getattr(condition, "__qualname__", repr(condition))


async def eventually(
    condition: Callable[[], T | Awaitable[T]],
    timeout: float = PATIENCE,
    *,
    what: str | None = None,
) -> T:
    """Poll ``condition`` (a function, sync or async) until it returns something true, and
    return that; fail the test after ``timeout`` seconds. For states nothing signals (a
    server's process list, a pool's counters, a background close)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g}s: {_describe(condition, what)}")
        await asyncio.sleep(POLL)


def wait_until(
    condition: Callable[[], T], timeout: float = PATIENCE, *, what: str | None = None
) -> T:
    """:func:`eventually` for code outside an event loop (threads, sync tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g}s: {_describe(condition, what)}")
        time.sleep(POLL)


async def event_set(event: threading.Event, timeout: float = PATIENCE, *, what: str) -> None:
    """Wait for a ``threading.Event`` (set by a driver, a peer or a worker thread) without
    blocking the event loop."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise AssertionError(f"not within {timeout:g}s: {what}")
