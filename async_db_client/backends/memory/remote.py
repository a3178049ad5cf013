"""In-memory remote tier (config type ``local``): hash records and logs in dicts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ...models import HashRecord, LogEntry
from ...paths import join_child, parent_and_name, path_key
from ...tiers.remote import SingleValue
from ...validation import LogQuery
from .base import LogTable, MemoryStoreBase

__all__ = ["MemoryRemoteStore"]


@dataclass
class RemoteState:
    records: dict[str, HashRecord] = field(default_factory=dict)
    logs: LogTable = field(default_factory=LogTable)

    def copy(self) -> RemoteState:
        return RemoteState(dict(self.records), self.logs.copy())


def _fresh(record: HashRecord) -> HashRecord:
    # Stored models are never mutated; callers get lists of their own.
    return record.model_copy(
        update={"dirs": list(record.dirs), "files": list(record.files), "links": list(record.links)}
    )


def sort_key(value: Any) -> tuple[bool, Any]:
    """SQL order: NULLs sort before every value."""
    return (value is not None, value)


class MemoryRemoteStore(MemoryStoreBase[RemoteState]):
    """The remote tier in memory; same contracts as the SQL backends, safe across tasks."""

    state_class = RemoteState

    async def fetch_record(self, path: str) -> HashRecord | None:
        with self.reading() as state:
            record = state.records.get(path)
        return None if record is None else _fresh(record)

    async def upsert_records(
        self, records: Iterator[HashRecord], now: int, *, ordered: bool
    ) -> int:
        stored = 0
        async with self.writing() as state:
            for new in records:
                stored += 1
                old = state.records.get(new.path)
                values: dict[str, Any] = {
                    "path": new.path,
                    "current_hash": new.current_hash,
                    "current_dtg_latest": now,
                    "dirs": list(new.dirs),
                    "files": list(new.files),
                    "links": list(new.links),
                    "target_hash": new.target_hash,
                    "session_id": new.session_id,
                }
                if old is None:
                    values.update(current_dtg_first=now, prev_hash=None, prev_dtg_latest=None)
                elif old.current_hash != new.current_hash:
                    values.update(
                        current_dtg_first=now,
                        prev_hash=old.current_hash,
                        prev_dtg_latest=old.current_dtg_latest,
                    )
                else:
                    values.update(
                        current_dtg_first=old.current_dtg_first,
                        prev_hash=old.prev_hash,
                        prev_dtg_latest=old.prev_dtg_latest,
                    )
                if old is not None:
                    if new.target_hash is None:
                        values["target_hash"] = old.target_hash
                    if new.session_id is None:
                        values["session_id"] = old.session_id
                state.records[new.path] = HashRecord.trusted(**values)
        return stored

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        await self.upsert_records(iter([record]), now, ordered=True)

    async def fetch_field(self, path: str, field: str) -> SingleValue:
        with self.reading() as state:
            record = state.records.get(path)
        value: SingleValue = None if record is None else getattr(record, field)
        return value

    async def set_target(self, path: str, target_hash: str | None) -> bool:
        async with self.writing() as state:
            record = state.records.get(path)
            if record is None:
                return False
            state.records[path] = record.model_copy(update={"target_hash": target_hash})
            return True

    async def priority_paths(self) -> list[str]:
        with self.reading() as state:
            return sorted(
                r.path
                for r in state.records.values()
                if r.target_hash is not None and r.target_hash != r.current_hash
            )

    async def insert_log(self, entry: LogEntry, key: str) -> int:
        async with self.writing() as state:
            return state.logs.insert(entry, key)

    async def select_logs(self, query: LogQuery) -> list[LogEntry]:
        with self.reading() as state:
            entries = list(state.logs.entries.values())
        if query.session_id is not None:
            entries = [e for e in entries if e.session_id == query.session_id]
        if query.older_than is not None:
            cutoff = query.older_than
            entries = [e for e in entries if e.timestamp is not None and e.timestamp < cutoff]
        entries.sort(
            key=lambda e: (sort_key(getattr(e, query.order_by)), e.log_id),
            reverse=query.descending,
        )
        end = None if query.limit is None else query.offset + query.limit
        return entries[query.offset : end]

    async def delete_logs(self, ids: list[int]) -> list[int]:
        async with self.writing() as state:
            return state.logs.delete(ids)

    async def orphans(self) -> list[str]:
        with self.reading() as state:
            records = dict(state.records)
        orphans = []
        for record in records.values():
            parent_name = parent_and_name(record.path)
            if parent_name is None:
                continue
            parent = records.get(parent_name[0])
            name = parent_name[1]
            if parent is not None and not (
                name in parent.dirs or name in parent.files or name in parent.links
            ):
                orphans.append(record.path)
        return sorted(orphans)

    async def untracked(self) -> list[str]:
        with self.reading() as state:
            records = dict(state.records)
        children = {pn for pn in map(parent_and_name, records) if pn is not None}
        # A set: '/a' and '/a/' listing 'b' name one untracked path, as in SQL.
        return sorted(
            {
                join_child(record.path, name)
                for record in records.values()
                for name in record.dirs
                if (record.path, name) not in children
            }
        )

    async def records_after(self, after_key: str, limit: int) -> list[tuple[str, HashRecord]]:
        with self.reading() as state:
            items = list(state.records.items())
        keyed = sorted(
            (key, record) for key, record in ((path_key(p), r) for p, r in items) if key > after_key
        )
        return [(key, _fresh(record)) for key, record in keyed[:limit]]

    async def logs_after(self, after_id: int, limit: int) -> list[LogEntry]:
        with self.reading() as state:
            entries = state.logs.entries
            return [entries[i] for i in sorted(i for i in entries if i > after_id)[:limit]]

    async def restore_records(self, records: list[HashRecord]) -> None:
        async with self.writing() as state:
            for record in records:
                state.records[record.path] = _fresh(record)

    async def restore_logs(self, entries: list[tuple[LogEntry, str]]) -> None:
        async with self.writing() as state:
            for entry, key in entries:
                state.logs.insert(entry, key)
