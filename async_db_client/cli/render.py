"""Output of the command-line tool: Rich tables for people, JSON for scripts.

Results go to stdout; progress, notes and errors to stderr, so ``--json`` output can be
piped as it is.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from ..models import HashRecord, LogEntry

__all__ = [
    "emit_json",
    "epoch_text",
    "log_table",
    "note",
    "out",
    "pairs_table",
    "record_table",
    "table",
]

#: Names of a record's child lists shown in full up to this many, then counted.
MAX_NAMES_SHOWN = 12


#: Table width when stdout is not a terminal (a file, a pipe) and $COLUMNS is unset:
#: wide enough for a hash and a path without folding every row.
PIPE_WIDTH = 160


def out() -> Console:
    # Built per call: tests and the demo swap sys.stdout; Rich must follow.
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, soft_wrap=False, width=width)


def note(text: str) -> None:
    """A line for people on stderr, as it is (no markup, no wrapping)."""
    print(text, file=sys.stderr, flush=True)


def emit_json(value: Any) -> None:
    """``value`` as indented JSON on stdout (datetimes as ISO 8601)."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def epoch_text(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*("-" if cell is None else str(cell) for cell in row))
    out().print(grid)


def pairs_table(title: str | None, values: Mapping[str, Any]) -> None:
    table(title, ("", "value"), values.items())


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown or "-"


def record_table(record: HashRecord) -> None:
    pairs_table(
        record.path,
        {
            "current_hash": record.current_hash,
            "current since": epoch_text(record.current_dtg_first),
            "last seen": epoch_text(record.current_dtg_latest),
            "prev_hash": record.prev_hash,
            "prev last seen": epoch_text(record.prev_dtg_latest),
            "target_hash": record.target_hash,
            "session_id": record.session_id,
            f"dirs ({len(record.dirs)})": _names(record.dirs),
            f"files ({len(record.files)})": _names(record.files),
            f"links ({len(record.links)})": _names(record.links),
        },
    )


def log_table(title: str | None, entries: Sequence[LogEntry]) -> None:
    table(
        title,
        ("id", "time (UTC)", "level", "site", "session", "summary"),
        (
            (
                e.log_id,
                e.timestamp.strftime("%Y-%m-%d %H:%M:%S") if e.timestamp else None,
                e.log_level.value,
                e.site_id,
                e.session_id,
                e.summary_message,
            )
            for e in entries
        ),
    )
