"""Backups as JSON Lines: ``export`` writes them, ``import`` reads them back.

One JSON object per line, each with a ``type``::

    {"type": "header", "format": "async_db_client.export", "version": 1, ...}
    {"type": "hash_record", "path": "/data", "current_hash": "...", ...}   (every field)
    {"type": "log", "log_id": 7, "timestamp": "2024-01-08T10:30:00Z", ...}

Both directions stream: the export pages through the database ``batch_size`` rows at a
time and the import restores ``batch_size`` lines at a time, so memory use is one batch
whatever the size of the backup. Records are restored verbatim (hashes, previous hashes,
timestamps); log entries get new ids and are restored once however often the same
backup is imported (see ``RemoteRepository.restore_logs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from ..client import DBInstance
from ..models import BulkResult

__all__ = ["FORMAT", "VERSION", "BackupFormatError", "ImportResult", "export_jsonl", "import_jsonl"]

FORMAT = "async_db_client.export"
VERSION = 1


class BackupFormatError(ValueError):
    """A line of the backup is not what ``export`` writes; names the line."""


@dataclass
class ImportResult:
    hash_records: int = 0
    logs: int = 0
    #: (line number, reason) of every line the database refused.
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _line(kind: str, values: dict[str, Any]) -> str:
    return json.dumps({"type": kind, **values}, ensure_ascii=False, separators=(",", ":")) + "\n"


async def export_jsonl(db: DBInstance, stream: TextIO, *, batch_size: int = 1000) -> dict[str, int]:
    """Write every hash record, then every log entry, to ``stream``; the counts."""
    header = {"format": FORMAT, "version": VERSION, "exported_at": datetime.now(UTC).isoformat()}
    stream.write(_line("header", header))
    records = logs = 0
    async for record in db.iter_hash_records(batch_size=batch_size):
        stream.write(_line("hash_record", record.model_dump(mode="json")))
        records += 1
    async for entry in db.iter_logs(batch_size=batch_size):
        stream.write(_line("log", entry.model_dump(mode="json")))
        logs += 1
    return {"hash_records": records, "logs": logs}


async def import_jsonl(
    db: DBInstance, lines: Iterable[str], *, batch_size: int = 1000
) -> ImportResult:
    """Restore what ``lines`` hold, ``batch_size`` lines of a kind at a time.

    A line that is not a backup line raises :class:`BackupFormatError` (lines before it
    are restored already); records or entries the database refuses are listed in
    :attr:`ImportResult.rejected` and the import goes on.
    """
    result = ImportResult()
    pending: dict[str, list[tuple[int, dict[str, Any]]]] = {"hash_record": [], "log": []}

    async def flush(kind: str) -> None:
        batch, pending[kind] = pending[kind], []
        if not batch:
            return
        values = [value for _, value in batch]
        outcome: BulkResult
        if kind == "hash_record":
            outcome = await db.restore_hash_records(values)
            result.hash_records += outcome.stored
        else:
            outcome = await db.restore_logs(values)
            result.logs += outcome.stored
        result.rejected.extend((batch[r.index][0], r.reason) for r in outcome.rejected)

    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        value = _parse(number, text)
        kind = value.pop("type", None)
        if kind == "header":
            _check_header(number, value)
        elif kind in pending:
            pending[kind].append((number, value))
            if len(pending[kind]) >= batch_size:
                await flush(kind)
        else:
            raise BackupFormatError(f"line {number}: unknown type {kind!r}")
    await flush("hash_record")
    await flush("log")
    return result


def _parse(number: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BackupFormatError(f"line {number}: not JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise BackupFormatError(f"line {number}: not a JSON object")
    return value


def _check_header(number: int, header: dict[str, Any]) -> None:
    if header.get("format") != FORMAT:
        raise BackupFormatError(f"line {number}: not an async_db_client export")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise BackupFormatError(
            f"line {number}: export format version {version!r} is newer than this "
            f"library reads ({VERSION}); upgrade async_db_client"
        )
