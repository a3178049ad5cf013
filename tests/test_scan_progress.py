"""Progress reporting: a live bar on a terminal, plain lines elsewhere, nothing if off."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from async_db_client.scanner.progress import (
    NoProgress,
    PlainProgress,
    RichProgress,
    ScanCounters,
    human_bytes,
    make_progress,
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_choice_of_reporter() -> None:
    assert isinstance(make_progress(io.StringIO()), PlainProgress)
    assert isinstance(make_progress(FakeTerminal()), RichProgress)
    assert isinstance(make_progress(FakeTerminal(), enabled=False), NoProgress)


def test_plain_lines_report_the_three_rates() -> None:
    stream = io.StringIO()
    reporter = PlainProgress(stream, interval=0)
    reporter.start("/data")
    counters = ScanCounters(directories=3, files=10, bytes_seen=2048)
    reporter.update(counters)
    reporter.stop(counters)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "scanning /data"
    assert (
        lines[1].startswith("  10 files (") and "2.0 KiB (" in lines[1] and "3 dirs (" in lines[1]
    )
    assert lines[2].startswith("  done in ")


def test_rich_bar_draws_rates_without_a_refresh_thread() -> None:
    screen = io.StringIO()
    reporter = RichProgress(Console(file=screen, force_terminal=True, width=120))
    threads = threading.active_count()
    reporter.start("/data")
    assert threading.active_count() == threads  # redrawn by update(), not by a thread
    counters = ScanCounters(directories=2, files=5, bytes_seen=5 * 1024 * 1024)
    reporter.update(counters)
    reporter.stop(counters)
    text = screen.getvalue()
    assert "scanning /data" in text and "5 files (" in text and "5.0 MiB (" in text
    assert "2 dirs (" in text


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (0, 1023, 1536, 3 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "3.0 GiB",
    ]
