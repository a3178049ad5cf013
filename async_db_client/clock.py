"""Where "now" comes from.

Every backend takes the current time from a :class:`Clock` and passes it to the database
as a parameter (never ``NOW()``), so the in-memory fakes and the SQL backends agree to the
microsecond and tests can move time by hand with :class:`FakeClock`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock", "epoch_seconds"]


class Clock(Protocol):
    """A source of the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock (UTC)."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class FakeClock:
    """A clock that only moves when told to; for tests of time-dependent contracts."""

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2024, 1, 8, 10, 30, tzinfo=UTC)
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive means UTC)."""
        self._now = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        """Move forward by ``seconds`` plus any ``timedelta`` keywords; returns the new now."""
        self._now += timedelta(seconds=seconds, **delta)
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


def epoch_seconds(when: datetime) -> int:
    """Whole epoch seconds of an aware datetime (floor), as stored in hash records."""
    return int(when.timestamp() // 1)
