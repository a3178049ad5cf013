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
from rich.text import Text

from ..models import HashRecord, LogEntry

__all__ = [
    "Whole",
    "emit_json",
    "epoch_text",
    "log_table",
    "note",
    "out",
    "pairs_table",
    "record_table",
    "short_hash",
    "table",
    "time_text",
    "whole",
]

#: Names of a record's child lists shown in full up to this many, then counted.
MAX_NAMES_SHOWN = 12


#: Table width when stdout is not a terminal (a file, a pipe) and $COLUMNS is unset:
#: wide enough for a hash and a path without folding every row.
PIPE_WIDTH = 160


def out() -> Console:
    # Built per call: tests and the demo swap sys.stdout; Rich must follow. No markup:
    # every cell is data (a path named "[b]x" is shown as it is).
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, markup=False, soft_wrap=False, width=width)


class Whole(str):
    """A cell that must never be folded or cut: a hash or an id, which people copy."""


def whole(value: str | None) -> Whole | None:
    return None if value is None else Whole(value)


def short_hash(value: str | None) -> str | None:
    """A hash's first 16 characters, marked as cut: a pointer for people in a table too
    narrow for the whole hash, never one to copy (``get`` and ``--json`` show it whole)."""
    return None if value is None else value[:16] + "…"


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
    return time_text(None if epoch is None else datetime.fromtimestamp(epoch, UTC))


def time_text(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any) -> Text:
    if value is None:
        return Text("-")
    if isinstance(value, Whole):
        return Text(value, no_wrap=True, overflow="ignore")
    return Text(str(value))


def _show(title: str | None, grid: Table, *, min_width: int = 0) -> None:
    """Print ``title`` on its own line, then ``grid``, at least ``min_width`` wide.

    The title is not Rich's table title, which wraps to the table's width (a narrow
    column folded "orphaned records (0)" over three lines).
    """
    console = out()
    if title is not None:
        console.print(Text(title, style="table.title"), soft_wrap=True)
    console.width = max(console.width, min_width)
    console.print(grid)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    empty: str | None = None,
) -> None:
    """A table of ``rows`` (cells fold to fit), or the line ``empty``, if given, when
    there are none."""
    rows = list(rows)
    if not rows and empty is not None:
        out().print(empty)
        return
    grid = Table()
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(_cell(cell) for cell in row))
    _show(title, grid)


def pairs_table(title: str | None, values: Mapping[str, Any]) -> None:
    """Names and values, a pair a line, without borders: a 64-character hash (a
    :class:`Whole` value) fits beside a name of up to 14 characters in 80 columns."""
    names = max(map(len, values), default=1)
    grid = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    grid.add_column(no_wrap=True, width=names)  # only the values' column narrows to fit
    grid.add_column(overflow="fold")
    for name, value in values.items():
        grid.add_row(name, _cell(value))
    # On a console narrower than a name, the gap of 2 and a Whole value, Rich would narrow
    # the values' column below that value and cut it. Printed wider, the line is wrapped
    # by the terminal instead, and a hash copied from it is whole.
    whole = max((len(value) for value in values.values() if isinstance(value, Whole)), default=0)
    _show(title, grid, min_width=names + 2 + whole)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMES_SHOWN])
    more = len(names) - MAX_NAMES_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown or "-"


def record_table(record: HashRecord) -> None:
    pairs_table(
        record.path,
        {
            "current_hash": Whole(record.current_hash),
            "current since": epoch_text(record.current_dtg_first),
            "last seen": epoch_text(record.current_dtg_latest),
            "prev_hash": whole(record.prev_hash),
            "prev last seen": epoch_text(record.prev_dtg_latest),
            "target_hash": whole(record.target_hash),
            "session_id": whole(record.session_id),
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
        empty="no log entries",
    )
