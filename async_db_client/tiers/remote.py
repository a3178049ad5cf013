"""The remote tier (one per site): hash records and logs.

:class:`RemoteRepository` is the contract every backend keeps (validation, rotation
rules, what returns False or None, failure logging); :class:`RemoteStore` is what a
backend implements underneath. A store may be wrapped: with ``outbox`` configured the
repository gets ``Outbox(store)`` (see :mod:`async_db_client.outbox`), which keeps the
same protocol.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Protocol

from ..clock import epoch_seconds
from ..errors import InvalidInputError
from ..models import BulkResult, HashRecord, LogEntry, parse_model
from ..validation import (
    SINGLE_FIELDS,
    LogQuery,
    check_choice,
    check_hash_arg,
    check_log_ids,
    check_non_negative_int,
    check_path_arg,
)
from .base import LogStore, Repository, Validated, field_of

__all__ = ["RemoteRepository", "RemoteStore", "SingleValue"]

logger = logging.getLogger("async_db_client")

SingleValue = str | int | None


class RemoteStore(LogStore, Protocol):
    """The primitives of a remote-tier backend. Arguments are validated; ``now`` is the
    clock's time as epoch seconds."""

    async def fetch_record(self, path: str) -> HashRecord | None: ...

    async def fetch_field(self, path: str, field: str) -> SingleValue:
        """``field`` is one of :data:`~async_db_client.validation.SINGLE_FIELDS`."""
        ...

    async def upsert_record(self, record: HashRecord, now: int) -> None:
        """Upsert one record with rotation, in one atomic statement."""
        ...

    async def upsert_records(
        self, records: Iterator[HashRecord], now: int, *, ordered: bool
    ) -> int:
        """Upsert with rotation (atomic per record, batched as the engine likes); return
        how many were stored. ``ordered``: some path repeats, so input order must hold;
        otherwise records may be written in any order and in parallel."""
        ...

    async def set_target(self, path: str, target_hash: str | None) -> bool:
        """Set the target hash of an existing record; False if there is none."""
        ...

    async def priority_paths(self) -> list[str]: ...

    async def select_logs(self, query: LogQuery) -> list[LogEntry]: ...

    async def delete_logs(self, ids: list[int]) -> list[int]:
        """Delete those ids; return the ones that existed (and are now gone)."""
        ...

    async def orphans(self) -> list[str]: ...

    async def untracked(self) -> list[str]: ...

    async def records_after(self, after_key: str, limit: int) -> list[tuple[str, HashRecord]]:
        """Up to ``limit`` (path key, record) pairs with keys above ``after_key``, in order."""
        ...

    async def logs_after(self, after_id: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` log entries with ids above ``after_id``, in id order."""
        ...

    async def restore_records(self, records: list[HashRecord]) -> None:
        """Write complete records verbatim (insert or replace by path)."""
        ...

    async def restore_logs(self, entries: list[tuple[LogEntry, str]]) -> None:
        """Insert entries under their keys, skipping keys already stored."""
        ...


class RemoteRepository(Repository[RemoteStore]):
    """A site's hash records and logs."""

    tier = "remote"
    health_key = "local_db"

    # ----------------------------------------------------------------- hash records

    async def get_hash_record(self, path: str) -> HashRecord | None:
        """The record stored for ``path``, or None."""
        path = check_path_arg(path)
        with self._logged("get_hash_record"):
            return await self.store.fetch_record(path)

    async def insert_or_update_hash(self, record: Mapping[str, Any] | HashRecord) -> bool:
        """Store ``record`` with prev-hash rotation; False (logged) if it is invalid.

        New path: ``current_dtg_first = current_dtg_latest = now``. Known path with a
        different hash: the old ``current_hash``/``current_dtg_latest`` move to
        ``prev_hash``/``prev_dtg_latest`` and the new hash starts with both current stamps
        at now. Same hash: only ``current_dtg_latest`` advances. ``dirs``, ``files`` and
        ``links`` are replaced; ``target_hash`` and ``session_id`` are replaced when given
        and kept when omitted. The write is one atomic statement.
        """
        try:
            valid = parse_model(HashRecord, record, "hash record")
        except InvalidInputError as exc:
            logger.error("remote.insert_or_update_hash rejected a record: %s", exc)
            return False
        now = epoch_seconds(self._now())
        with self._logged("insert_or_update_hash"):
            await self.store.upsert_record(valid, now)
        return True

    async def insert_or_update_hashes(
        self, records: Iterable[Mapping[str, Any] | HashRecord]
    ) -> BulkResult:
        """Validate every record, store the valid ones, report the rejected ones.

        Same rotation semantics as :meth:`insert_or_update_hash`, applied in input order
        (a path given twice rotates twice). Valid records are written in batches, each
        batch in its own transaction; if the database fails, the error is raised and
        batches already committed stay stored (writing them again is harmless).
        """
        valid = Validated(records, HashRecord, name="records", what="records")
        paths = [repr(field_of(record, "path")) for record in valid.items]
        ordered = len(set(paths)) != len(paths)
        with self._logged("insert_or_update_hashes", len(valid.items)):
            now = epoch_seconds(self._now())
            # Validated lazily, so a backend can overlap validation with its writes.
            stored = await self.store.upsert_records(iter(valid), now, ordered=ordered)
        if valid.rejected:
            first = valid.rejected[0]
            logger.error(
                "remote.insert_or_update_hashes rejected %d of %d records (first: #%d %s)",
                len(valid.rejected),
                len(valid.items),
                first.index,
                first.reason,
            )
        return valid.result(stored)

    async def get_single_field(self, path: str, field: str) -> SingleValue:
        """One field of the record for ``path`` (None if no record).

        ``field`` must be one of :data:`~async_db_client.validation.SINGLE_FIELDS`;
        anything else raises :class:`~async_db_client.errors.InvalidInputError`.
        """
        field = check_choice(field, "field", SINGLE_FIELDS)
        path = check_path_arg(path)
        with self._logged("get_single_field"):
            return await self.store.fetch_field(path, field)

    async def set_target_hash(self, path: str, target_hash: str | None) -> bool:
        """Set (or with None, clear) the target hash of an existing record.

        Returns False when there is no record for ``path``.
        """
        path = check_path_arg(path)
        if target_hash is not None:
            check_hash_arg(target_hash, "target_hash")
        with self._logged("set_target_hash"):
            return await self.store.set_target(path, target_hash)

    async def get_priority_updates(self) -> list[str]:
        """Paths whose ``target_hash`` is set and differs from ``current_hash``, sorted."""
        with self._logged("get_priority_updates"):
            return await self.store.priority_paths()

    # ---------------------------------------------------------------------- logs

    async def put_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a log entry and return its new id; None (logged) if it is invalid.

        ``summary_message`` is required; ``log_level`` defaults to INFO (any case);
        ``timestamp`` defaults to now. A retry after a lost reply never stores the entry
        twice: each call carries a unique key (``idempotency_key``, or a fresh UUID).
        """
        return await self._put_log(self.store, "put_log", args_dict, idempotency_key)

    async def get_logs(
        self,
        limit: int | None = None,
        offset: int = 0,
        order_by: str = "timestamp",
        order_direction: str = "DESC",
        session_id_filter: str | None = None,
        older_than_days: int | None = None,
    ) -> list[LogEntry]:
        """Log entries, filtered and paged.

        ``order_by`` must be one of the entry's own columns (``log_id, site_id, log_level,
        timestamp, session_id``) and ``order_direction`` ``ASC`` or ``DESC`` in any case;
        anything else raises :class:`~async_db_client.errors.InvalidInputError`. Ties are
        broken by ``log_id`` in the same direction, so pages never overlap.
        ``older_than_days=N`` keeps entries older than N days.
        """
        query = LogQuery.build(
            limit=limit,
            offset=offset,
            order_by=order_by,
            order_direction=order_direction,
            session_id_filter=session_id_filter,
            older_than_days=older_than_days,
            now=self._now(),
        )
        with self._logged("get_logs"):
            return await self.store.select_logs(query)

    async def delete_log_entries(self, log_ids: Iterable[int]) -> tuple[int, list[int]]:
        """Delete the given log entries: ``(deleted_count, ids_not_found)``."""
        ids = check_log_ids(log_ids)
        if not ids:
            return 0, []
        with self._logged("delete_log_entries"):
            deleted = set(await self.store.delete_logs(ids))
        return len(deleted), [log_id for log_id in ids if log_id not in deleted]

    # ------------------------------------------------------------------ integrity

    async def find_orphaned_entries(self) -> list[str]:
        """Paths whose parent has a record that does not list them, sorted.

        A record is an orphan when its parent directory has a record whose ``dirs``,
        ``files`` and ``links`` all lack the record's name.
        """
        with self._logged("find_orphaned_entries"):
            return await self.store.orphans()

    async def find_untracked_children(self) -> list[str]:
        """``parent/name`` for each name in a record's ``dirs`` with no record, sorted."""
        with self._logged("find_untracked_children"):
            return await self.store.untracked()

    # ------------------------------------------------------------- backup, restore

    async def iter_hash_records(self, *, batch_size: int = 1000) -> AsyncIterator[HashRecord]:
        """Every stored record, in key order, fetched ``batch_size`` at a time.

        Memory use is bounded by one batch, so a million records can be streamed.
        """
        size = check_non_negative_int(batch_size, "batch_size") or 1
        after = ""
        while True:
            with self._logged("iter_hash_records"):
                batch = await self.store.records_after(after, size)
            for _, record in batch:
                yield record
            if len(batch) < size:
                return
            after = batch[-1][0]

    async def iter_logs(self, *, batch_size: int = 1000) -> AsyncIterator[LogEntry]:
        """Every log entry, oldest id first, fetched ``batch_size`` at a time."""
        size = check_non_negative_int(batch_size, "batch_size") or 1
        after = 0
        while True:
            with self._logged("iter_logs"):
                batch = await self.store.logs_after(after, size)
            for entry in batch:
                yield entry
            if len(batch) < size:
                return
            assert batch[-1].log_id is not None
            after = batch[-1].log_id

    async def restore_hash_records(
        self, records: Iterable[Mapping[str, Any] | HashRecord]
    ) -> BulkResult:
        """Store complete records exactly as given (for restoring a backup).

        Unlike :meth:`insert_or_update_hash` nothing is rotated: ``prev_hash`` and the
        three timestamps are written as they are (``current_dtg_first`` and
        ``current_dtg_latest`` are required), replacing any record of the same path.
        """
        checked = Validated(
            records, HashRecord, name="records", what="records", check=_restorable_record
        )
        valid = list(checked)
        if valid:
            with self._logged("restore_hash_records", len(valid)):
                await self.store.restore_records(valid)
        return checked.result(len(valid))

    async def restore_logs(self, entries: Iterable[Mapping[str, Any] | LogEntry]) -> BulkResult:
        """Store log entries as given (timestamp required; new ids are assigned).

        Restoring the same entry twice stores it once: its idempotency key is derived from
        its content and original id.
        """
        checked = Validated(
            entries, LogEntry, name="entries", what="log entries", check=_restorable_log
        )
        valid = [(entry, _restore_key(entry)) for entry in checked]
        if valid:
            with self._logged("restore_logs", len(valid)):
                await self.store.restore_logs(valid)
        return checked.result(len(valid))


def _restorable_record(record: HashRecord) -> None:
    if record.current_dtg_first is None or record.current_dtg_latest is None:
        raise InvalidInputError(
            "a restored record needs current_dtg_first and current_dtg_latest",
            field="current_dtg_first",
        )


def _restorable_log(entry: LogEntry) -> None:
    if entry.timestamp is None:
        raise InvalidInputError("a restored log entry needs its timestamp", field="timestamp")


def _restore_key(entry: LogEntry) -> str:
    content = entry.model_dump_json(exclude={"log_id"}) + f"|{entry.log_id}"
    return "restore:" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:48]
