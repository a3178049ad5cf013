"""The remote tier on any SQL engine: a dialect's statements run through an executor."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Coroutine, Iterator, Sequence
from operator import itemgetter
from typing import Any

from ...dialects.base import Dialect
from ...executor import ExecResult, Session
from ...models import HashRecord, LogEntry
from ...paths import join_child, parent_and_name, path_key
from ...tiers.remote import SingleValue
from ...validation import LogQuery
from .base import SQLStore, statement_chunks

__all__ = ["SQLRemoteStore"]

#: Rows per multi-row upsert statement, before the dialect's parameter and size caps.
BULK_ROWS = 1000
#: Log ids per IN (...) list.
ID_CHUNK = 500
#: Rows per COPY batch (dialects with ``bulk_copy``), and the most bytes of text one
#: holds, by the same estimate as a statement's.
COPY_ROWS = 5000
COPY_BYTES = 16_000_000
#: Below this many rows a batch is one multi-row upsert statement: no transaction, no
#: staging table (a single record, a small scan).
COPY_MIN_ROWS = 32


async def _execute(session: Session, *, sql: str, params: list[Any]) -> ExecResult:
    return await session.execute(sql, params)


async def _merge_by_copy(
    session: Session, *, dialect: Dialect, rows: list[tuple[Any, ...]], rounds: int
) -> None:
    """In the caller's transaction: the staging table, the COPY, one merge per round."""
    await session.execute(dialect.create_staging())
    await session.copy_rows(dialect.staging_table, dialect.staging_columns, rows)
    for round_number in range(1, rounds + 1):
        await session.execute(dialect.merge_staged(), (round_number,))
    await session.execute(dialect.drop_staging())


class SQLRemoteStore(SQLStore):
    """Hash records and logs in SQL tables (``hash_records``, ``remote_logs``)."""

    tier = "remote"

    # ------------------------------------------------------------------ records

    def _record(self, row: Sequence[Any]) -> HashRecord:
        dirs, files, links = self.dialect.from_db_names(row[6], row[7], row[8])
        return HashRecord.trusted(
            path=row[0],
            current_hash=row[1],
            prev_hash=row[2],
            current_dtg_first=int(row[3]),
            current_dtg_latest=int(row[4]),
            prev_dtg_latest=None if row[5] is None else int(row[5]),
            dirs=dirs,
            files=files,
            links=links,
            target_hash=row[9],
            session_id=row[10],
        )

    async def fetch_record(self, path: str) -> HashRecord | None:
        row = await self._db.fetchone(self.dialect.select_record, (path_key(path),))
        return None if row is None else self._record(row)

    def _upsert_row(self, record: HashRecord, now: int) -> tuple[Any, ...]:
        parent = parent_and_name(record.path)
        names = self.dialect.to_db_names
        return (
            path_key(record.path),
            record.path,
            None if parent is None else path_key(parent[0]),
            None if parent is None else parent[1],
            record.current_hash,
            now,
            now,
            names(record.dirs),
            names(record.files),
            names(record.links),
            record.target_hash,
            record.session_id,
        )

    async def upsert_records(
        self, records: Iterator[HashRecord], now: int, *, ordered: bool
    ) -> int:
        d = self.dialect
        if d.bulk_copy:
            return await self._upsert_by_copy(records, now, ordered=ordered)
        max_rows = max(1, min(BULK_ROWS, d.max_params // d.upsert_params_per_row))
        stored = 0
        # An engine that refuses a key twice in one statement gets a new statement at
        # each repeat; the row that repeated is carried into it.
        split_on_repeat = ordered and not d.upsert_accepts_repeated_keys
        carried: list[tuple[Any, ...]] = []

        def next_batch() -> list[tuple[Any, ...]]:
            # Validates and converts lazily (records is a generator): while one worker
            # builds its next batch, the server is busy with the others' statements.
            rows: list[tuple[Any, ...]] = carried[:]
            carried.clear()
            keys = {row[0] for row in rows}
            size = 0
            for record in records:
                row = self._upsert_row(record, now)
                if split_on_repeat:
                    if row[0] in keys:
                        carried.append(row)
                        break
                    keys.add(row[0])
                rows.append(row)
                # path, name and the JSON lists dominate; 4 bytes a character at worst
                size += 200 + 4 * (len(row[1]) + len(row[3] or "") + sum(map(len, row[7:10])))
                if len(rows) >= max_rows or size >= d.max_statement_bytes:
                    break
            if not ordered:
                # Key order: concurrent writers lock rows in the same order, so their
                # statements do not deadlock each other.
                rows.sort(key=itemgetter(0))
            return rows

        async def worker() -> None:
            nonlocal stored
            while batch := next_batch():
                sql = d.upsert_hashes(len(batch))
                params = list(itertools.chain.from_iterable(batch))
                await self._db.run(functools.partial(_execute, sql=sql, params=params))
                stored += len(batch)

        await self._writers(worker, ordered=ordered)
        return stored

    async def _writers(
        self, worker: Callable[[], Coroutine[Any, Any, None]], *, ordered: bool
    ) -> None:
        """Run ``worker`` (which takes batches until none is left) on the executor's
        parallel connections, or alone when ``ordered``: a path given twice must rotate
        in input order, so one writer takes the batches in order."""
        workers = 1 if ordered else self._db.parallelism
        if workers == 1:
            await worker()
            return
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(worker())
        except BaseExceptionGroup as group_error:
            # Report the first failure as itself; the other workers were cancelled.
            raise group_error.exceptions[0] from None

    async def _upsert_by_copy(
        self, records: Iterator[HashRecord], now: int, *, ordered: bool
    ) -> int:
        """Bulk upserts where the dialect loads rows by COPY (PostgreSQL): each batch is
        copied into a staging table and merged in one statement per *round*; the n-th
        occurrence of a path in a batch is in round n, so a path given twice rotates
        twice, in input order (one statement may not upsert a key twice). Ordered
        input (a path repeats) runs its batches one after another, in order."""
        d = self.dialect
        stored = 0

        def next_batch() -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            seen: dict[str, int] = {}
            size = 0
            for record in records:
                row = self._upsert_row(record, now)
                occurrence = seen[row[0]] = seen.get(row[0], 0) + 1
                rows.append((occurrence, *row))
                size += 200 + 4 * (len(row[1]) + len(row[3] or "") + sum(map(len, row[7:10])))
                if len(rows) >= COPY_ROWS or size >= COPY_BYTES:
                    break
            return rows

        async def worker() -> None:
            nonlocal stored
            while batch := next_batch():
                rounds = max(row[0] for row in batch)
                if rounds == 1 and len(batch) < COPY_MIN_ROWS:
                    batch.sort(key=itemgetter(1))  # key order, as the merge's
                    params = [value for row in batch for value in row[1:]]
                    sql = d.upsert_hashes(len(batch))
                    await self._db.run(functools.partial(_execute, sql=sql, params=params))
                else:
                    await self._db.run(
                        functools.partial(_merge_by_copy, dialect=d, rows=batch, rounds=rounds),
                        transaction=True,
                    )
                stored += len(batch)

        await self._writers(worker, ordered=ordered)
        return stored

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        await self.upsert_records(iter([record]), now, ordered=True)

    async def fetch_field(self, path: str, field: str) -> SingleValue:
        row = await self._db.fetchone(self.dialect.select_field(field), (path_key(path),))
        if row is None or row[0] is None:
            return None
        value = row[0]
        return int(value) if field.endswith(("_first", "_latest")) else str(value)

    async def set_target(self, path: str, target_hash: str | None) -> bool:
        key = path_key(path)
        d = self.dialect

        async def work(session: Session) -> bool:
            result = await session.execute(d.update_target, (target_hash, key))
            if result.rowcount > 0:
                return True
            # MySQL counts changed rows, not matched ones: an unchanged value reports 0.
            return await session.fetchone(d.record_exists, (key,)) is not None

        return await self._db.run(work, transaction=True)

    async def priority_paths(self) -> list[str]:
        rows = await self._db.fetchall(self.dialect.priority_paths)
        return sorted(row[0] for row in rows)

    # --------------------------------------------------------------------- logs

    async def select_logs(self, query: LogQuery) -> list[LogEntry]:
        if query.limit == 0:
            return []  # some engines refuse a zero-row page
        d = self.dialect
        sql = d.select_logs(
            "remote",
            by_session=query.session_id is not None,
            older=query.older_than is not None,
            order_by=query.order_by,
            descending=query.descending,
            limit=query.limit is not None,
            offset=query.offset > 0,
        )
        params: list[Any] = []
        if query.session_id is not None:
            params.append(query.session_id)
        if query.older_than is not None:
            params.append(d.to_db_time(query.older_than))
        params.extend(d.paging_params(query.limit, query.offset))
        return [self._log_entry(row) for row in await self._db.fetchall(sql, params)]

    async def delete_logs(self, ids: list[int]) -> list[int]:
        d = self.dialect

        async def work(session: Session) -> list[int]:
            deleted: list[int] = []
            for start in range(0, len(ids), ID_CHUNK):
                chunk = ids[start : start + ID_CHUNK]
                rows = await session.fetchall(d.existing_log_ids("remote", len(chunk)), chunk)
                found = [int(row[0]) for row in rows]
                if found:
                    await session.execute(d.delete_logs("remote", len(found)), found)
                    deleted.extend(found)
            return deleted

        return await self._db.run(work, transaction=True)

    # ---------------------------------------------------------------- integrity

    async def orphans(self) -> list[str]:
        rows = await self._db.fetchall(self.dialect.orphans())
        return sorted(row[0] for row in rows)

    async def untracked(self) -> list[str]:
        rows = await self._db.fetchall(self.dialect.untracked())
        return sorted({join_child(row[0], row[1]) for row in rows})

    # ---------------------------------------------------------- backup, restore

    async def records_after(self, after_key: str, limit: int) -> list[tuple[str, HashRecord]]:
        rows = await self._db.fetchall(self.dialect.records_after(), (after_key, limit))
        return [(row[0], self._record(row[1:])) for row in rows]

    async def logs_after(self, after_id: int, limit: int) -> list[LogEntry]:
        rows = await self._db.fetchall(self.dialect.logs_after("remote"), (after_id, limit))
        return [self._log_entry(row) for row in rows]

    async def restore_records(self, records: list[HashRecord]) -> None:
        d = self.dialect
        names = d.to_db_names
        rows = []
        for r in records:
            parent = parent_and_name(r.path)
            rows.append(
                (
                    path_key(r.path),
                    r.path,
                    None if parent is None else path_key(parent[0]),
                    None if parent is None else parent[1],
                    r.current_hash,
                    r.current_dtg_first,
                    r.current_dtg_latest,
                    r.prev_hash,
                    r.prev_dtg_latest,
                    names(r.dirs),
                    names(r.files),
                    names(r.links),
                    r.target_hash,
                    r.session_id,
                )
            )
        per_statement = max(1, min(BULK_ROWS // 2, d.max_params // len(rows[0])))
        for chunk in statement_chunks(rows, per_statement, d.max_statement_bytes):
            sql = d.restore_hashes(len(chunk))
            await self._db.execute(sql, list(itertools.chain.from_iterable(chunk)))
