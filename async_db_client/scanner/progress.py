"""Progress of a scan: a live bar on a terminal, plain periodic lines elsewhere.

The scanner calls :meth:`ProgressReporter.update` after every unit of work; reporters
throttle themselves, so that call is cheap. Both reporters write to stderr by default,
leaving stdout to the results (``--json``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

__all__ = [
    "NoProgress",
    "PlainProgress",
    "ProgressReporter",
    "RichProgress",
    "ScanCounters",
    "human_bytes",
    "make_progress",
]


@dataclass
class ScanCounters:
    """Running totals of one scan."""

    directories: int = 0
    files: int = 0
    links: int = 0
    bytes_seen: int = 0
    files_hashed: int = 0
    bytes_hashed: int = 0
    files_cached: int = 0
    unreadable: int = 0
    skipped: int = 0


class ProgressReporter(Protocol):
    def start(self, root: str) -> None: ...

    def update(self, counters: ScanCounters) -> None: ...

    def stop(self, counters: ScanCounters) -> None: ...


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _rates(counters: ScanCounters, elapsed: float) -> str:
    per = max(elapsed, 1e-9)
    return (
        f"{counters.files:,} files ({counters.files / per:,.0f}/s), "
        f"{human_bytes(counters.bytes_seen)} ({human_bytes(counters.bytes_seen / per)}/s), "
        f"{counters.directories:,} dirs ({counters.directories / per:,.0f}/s)"
    )


class NoProgress:
    """Reports nothing."""

    def start(self, root: str) -> None:
        return None

    def update(self, counters: ScanCounters) -> None:
        return None

    def stop(self, counters: ScanCounters) -> None:
        return None


class PlainProgress:
    """One line every ``interval`` seconds, and one at the end."""

    def __init__(self, stream: TextIO | None = None, *, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self._start = self._last = 0.0

    def start(self, root: str) -> None:
        self._start = self._last = time.monotonic()
        print(f"scanning {root}", file=self.stream, flush=True)

    def update(self, counters: ScanCounters) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(f"  {_rates(counters, now - self._start)}", file=self.stream, flush=True)

    def stop(self, counters: ScanCounters) -> None:
        elapsed = time.monotonic() - self._start
        print(
            f"  done in {elapsed:.2f}s: {_rates(counters, elapsed)}", file=self.stream, flush=True
        )


class RichProgress:
    """A live line with a pulsing bar and the three rates, redrawn at most 10 times a
    second, from the scanning task itself (no refresh thread)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rates]}"),
            TimeElapsedColumn(),
            console=self.console,
            auto_refresh=False,
            transient=False,
        )
        self._task: TaskID | None = None
        self._start = self._last = 0.0

    def start(self, root: str) -> None:
        self._start = self._last = time.monotonic()
        self._progress.start()
        self._task = self._progress.add_task(f"scanning {root}", total=None, rates="")

    def update(self, counters: ScanCounters) -> None:
        now = time.monotonic()
        if self._task is None or now - self._last < 0.1:
            return
        self._last = now
        self._progress.update(self._task, rates=_rates(counters, now - self._start))
        self._progress.refresh()

    def stop(self, counters: ScanCounters) -> None:
        if self._task is not None:
            rates = _rates(counters, time.monotonic() - self._start)
            self._progress.update(self._task, rates=rates, total=1, completed=1)
            self._progress.refresh()
        self._progress.stop()


def make_progress(stream: TextIO | None = None, *, enabled: bool = True) -> ProgressReporter:
    """The reporter for ``stream`` (stderr): a live bar on a terminal, else plain lines."""
    stream = stream or sys.stderr
    if not enabled:
        return NoProgress()
    if stream.isatty():
        return RichProgress(Console(file=stream))
    return PlainProgress(stream)
