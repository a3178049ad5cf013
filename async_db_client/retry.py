"""How the library retries: one backoff policy, one helper counting attempts.

Every retry loop in the package takes its pauses from here: statements in the executor
(after a lost connection, a deadlock or a lock wait timeout), connecting and refilling in
the pool, and the outbox's replay. Read this module to know how the library retries.

* :class:`Backoff` is the maths: capped exponential, ``min(cap, initial * 2**n)``,
  scaled by a random factor in ``[0.5, 1)`` so that clients which failed together do not
  retry together (full jitter would sometimes retry at once; half keeps a floor).
* :class:`Attempts` is the state of one operation's retries: how many were made, and
  whether another is allowed under a count limit and an absolute deadline (a retry that
  could only start after the deadline is not attempted: the caller fails at once instead
  of sleeping past its budget).

Neither does any I/O or sleeps: callers sleep for the delay they are given, so the
policy is testable without a clock and the loops stay visible where they are.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import PoolSettings

__all__ = ["Attempts", "Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: ``min(cap, initial * 2**n) * U(0.5, 1)``."""

    initial: float
    cap: float

    @classmethod
    def from_settings(cls, settings: PoolSettings) -> Backoff:
        """The backoff a pool's settings ask for (``reconnect_backoff_initial``/``_max``)."""
        return cls(settings.reconnect_backoff_initial, settings.reconnect_backoff_max)

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt`` (0 for the first retry)."""
        return min(self.cap, self.initial * (1 << min(attempt, 30))) * random.uniform(0.5, 1.0)

    def attempts(
        self,
        *,
        limit: int | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Attempts:
        """A fresh :class:`Attempts` under this backoff (see there for the arguments)."""
        return Attempts(self, limit=limit, deadline=deadline, clock=clock)


class Attempts:
    """The retries of one operation: counted, limited, and bounded by a deadline.

    ``limit`` is how many retries may follow the first try (None: no limit); ``deadline``
    is an absolute time on ``clock`` (``time.monotonic`` unless given, e.g. the event
    loop's ``loop.time``) past which no retry may start.
    """

    __slots__ = ("_clock", "backoff", "count", "deadline", "limit")

    def __init__(
        self,
        backoff: Backoff,
        *,
        limit: int | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff = backoff
        self.limit = limit
        self.deadline = deadline
        self._clock = clock
        #: Retries granted so far.
        self.count = 0

    def __repr__(self) -> str:
        return f"<Attempts {self.count}/{self.limit} deadline={self.deadline}>"

    def next_delay(self) -> float | None:
        """The pause before the next retry, counting it; None if no retry is left
        (the limit is reached, or the pause would end at or past the deadline)."""
        if self.limit is not None and self.count >= self.limit:
            return None
        delay = self.backoff.delay(self.count)
        if self.deadline is not None and self._clock() + delay >= self.deadline:
            return None
        self.count += 1
        return delay

    def reset(self) -> None:
        """Start counting again (the operation succeeded; the next failure is the first)."""
        self.count = 0
