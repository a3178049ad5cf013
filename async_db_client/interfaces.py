"""The three tiers' async repository interfaces and the contracts every backend keeps.

Each interface implements its public methods once, here: argument validation, the
"invalid input returns False/None and logs at ERROR" rules, the whitelists, and failure
logging. Backends (in-memory, MySQL, SQL Server, SQLite) implement only the small
``_primitive`` methods underneath, which receive validated values and the current time
from the injected clock. That is what keeps every backend in agreement.

Database failures are never turned into False/None: they raise from the
:mod:`async_db_client.errors` hierarchy (``DBConnectionError`` and friends).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal

from .clock import Clock, SystemClock, epoch_seconds
from .errors import AsyncDBClientError, InvalidInputError
from .models import (
    BulkResult,
    DashboardMetrics,
    HashRecord,
    LogEntry,
    LogLevel,
    PipelineUpdate,
    RejectedRecord,
    SiteCompletion,
    SiteStatus,
    parse_model,
)
from .outbox import Outbox
from .validation import (
    SINGLE_FIELDS,
    LogQuery,
    check_choice,
    check_hash_arg,
    check_idempotency_key,
    check_log_ids,
    check_non_negative_int,
    check_path_arg,
    check_site_arg,
)

__all__ = [
    "LIVE_CURRENT_WINDOW",
    "RECENT_LOG_WINDOW",
    "SYNC_RECENT_WINDOW",
    "CoreRepository",
    "PipelineRepository",
    "RemoteRepository",
    "Repository",
]

logger = logging.getLogger("async_db_client")

#: A heartbeat this recent makes a site ``live_current``.
LIVE_CURRENT_WINDOW = timedelta(minutes=35)
#: A heartbeat this recent (but older than 35 min) makes a site ``live_1_behind``; a site
#: whose root hash was computed this recently and matches no baseline is ``sync_l24_behind``.
SYNC_RECENT_WINDOW = timedelta(hours=24)
#: ``get_recent_logs`` returns this much history.
RECENT_LOG_WINDOW = timedelta(days=30)

SingleValue = str | int | None


class Repository(ABC):
    """What every tier's repository has: a tier name, a clock, health, migrations, close."""

    tier: Literal["remote", "core", "pipeline"]

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()

    def _now(self) -> datetime:
        return self.clock.now()

    def _logged(self, operation: str) -> _FailureLog:
        """``with self._logged(op):`` logs one line per failure, naming tier and operation."""
        return _FailureLog(self.tier, operation)

    async def _healthy(self) -> bool:
        try:
            await self._ping()
        except Exception as exc:  # health checks report, they do not raise
            logger.warning("%s health check failed: %s: %s", self.tier, type(exc).__name__, exc)
            return False
        return True

    @abstractmethod
    async def _ping(self) -> None:
        """Round-trip to the database; raise if it is unusable."""

    async def migrate(self) -> int:
        """Bring this tier's schema up to date; return the schema version (0: no schema)."""
        return 0

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Group calls on this tier into one transaction.

        ``async with repo.transaction() as tx:`` yields a repository of the same interface
        whose calls share one transaction: committed when the block exits normally, rolled
        back when it raises. Calls inside are not retried.
        """

    async def aclose(self) -> None:
        """Release what this repository holds (pools are closed by their manager)."""
        return None


class RemoteRepository(Repository):
    """A site's hash records and logs."""

    tier = "remote"
    #: Where writes go when the database cannot be reached (opt-in; see outbox.py).
    outbox: Outbox | None = None

    async def aclose(self) -> None:
        if self.outbox is not None:
            await self.outbox.aclose()

    # ----------------------------------------------------------------- hash records

    async def get_hash_record(self, path: str) -> HashRecord | None:
        """The record stored for ``path``, or None."""
        path = check_path_arg(path)
        with self._logged("get_hash_record"):
            return await self._fetch_record(path)

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
            if self.outbox is not None:
                await self.outbox.upsert(valid, now)
            else:
                await self._upsert(iter([valid]), now, ordered=True)
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
        if isinstance(records, Mapping | str | bytes) or not isinstance(records, Iterable):
            raise InvalidInputError("records must be an iterable of records", field="records")
        items = list(records)
        rejected: list[RejectedRecord] = []

        def valid_records() -> Iterator[HashRecord]:
            # Validated lazily, so a backend can overlap validation with its writes.
            for index, record in enumerate(items):
                try:
                    yield parse_model(HashRecord, record, f"records[{index}]")
                except InvalidInputError as exc:
                    path = _get(record, "path")
                    rejected.append(
                        RejectedRecord(
                            index=index,
                            path=path if isinstance(path, str) else None,
                            reason=exc.reason,
                        )
                    )

        paths = [_get(record, "path") for record in items]
        ordered = len(set(map(repr, paths))) != len(paths)
        with self._logged("insert_or_update_hashes"):
            now = epoch_seconds(self._now())
            stored = await self._upsert(valid_records(), now, ordered=ordered)
        if rejected:
            logger.error(
                "remote.insert_or_update_hashes rejected %d of %d records (first: #%d %s)",
                len(rejected),
                len(items),
                rejected[0].index,
                rejected[0].reason,
            )
        return BulkResult(stored=stored, rejected=rejected)

    async def get_single_field(self, path: str, field: str) -> SingleValue:
        """One field of the record for ``path`` (None if no record).

        ``field`` must be one of :data:`~async_db_client.validation.SINGLE_FIELDS`;
        anything else raises :class:`~async_db_client.errors.InvalidInputError`.
        """
        field = check_choice(field, "field", SINGLE_FIELDS)
        path = check_path_arg(path)
        with self._logged("get_single_field"):
            return await self._fetch_field(path, field)

    async def set_target_hash(self, path: str, target_hash: str | None) -> bool:
        """Set (or with None, clear) the target hash of an existing record.

        Returns False when there is no record for ``path``.
        """
        path = check_path_arg(path)
        if target_hash is not None:
            check_hash_arg(target_hash, "target_hash")
        with self._logged("set_target_hash"):
            return await self._set_target(path, target_hash)

    async def get_priority_updates(self) -> list[str]:
        """Paths whose ``target_hash`` is set and differs from ``current_hash``, sorted."""
        with self._logged("get_priority_updates"):
            return await self._priority_paths()

    # ---------------------------------------------------------------------- logs

    async def put_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a log entry and return its new id; None (logged) if it is invalid.

        ``summary_message`` is required; ``log_level`` defaults to INFO (any case);
        ``timestamp`` defaults to now. A retry after a lost reply never stores the entry
        twice: each call carries a unique key (``idempotency_key``, or a fresh UUID).
        """
        try:
            entry = parse_model(LogEntry, args_dict, "log entry")
        except InvalidInputError as exc:
            logger.error("remote.put_log rejected an entry: %s", exc)
            return None
        if entry.timestamp is None:
            entry = entry.model_copy(update={"timestamp": self._now()})
        key = check_idempotency_key(idempotency_key) or uuid.uuid4().hex
        with self._logged("put_log"):
            if self.outbox is not None:
                return await self.outbox.put_log(entry, key)
            return await self._insert_log(entry, key)

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
            return await self._select_logs(query)

    async def delete_log_entries(self, log_ids: Iterable[int]) -> tuple[int, list[int]]:
        """Delete the given log entries: ``(deleted_count, ids_not_found)``."""
        ids = check_log_ids(log_ids)
        if not ids:
            return 0, []
        with self._logged("delete_log_entries"):
            deleted = set(await self._delete_logs(ids))
        return len(deleted), [log_id for log_id in ids if log_id not in deleted]

    # ------------------------------------------------------------------ integrity

    async def find_orphaned_entries(self) -> list[str]:
        """Paths whose parent has a record that does not list them, sorted.

        A record is an orphan when its parent directory has a record whose ``dirs``,
        ``files`` and ``links`` all lack the record's name.
        """
        with self._logged("find_orphaned_entries"):
            return await self._orphans()

    async def find_untracked_children(self) -> list[str]:
        """``parent/name`` for each name in a record's ``dirs`` with no record, sorted."""
        with self._logged("find_untracked_children"):
            return await self._untracked()

    async def health_check(self) -> dict[str, bool]:
        """``{'local_db': True}`` if the database answers, else False (never raises)."""
        return {"local_db": await self._healthy()}

    # ------------------------------------------------------------- backup, restore

    async def iter_hash_records(self, *, batch_size: int = 1000) -> AsyncIterator[HashRecord]:
        """Every stored record, in key order, fetched ``batch_size`` at a time.

        Memory use is bounded by one batch, so a million records can be streamed.
        """
        size = check_non_negative_int(batch_size, "batch_size") or 1
        after = ""
        while True:
            with self._logged("iter_hash_records"):
                batch = await self._records_after(after, size)
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
                batch = await self._logs_after(after, size)
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
        if isinstance(records, Mapping | str | bytes) or not isinstance(records, Iterable):
            raise InvalidInputError("records must be an iterable of records", field="records")
        valid: list[HashRecord] = []
        rejected: list[RejectedRecord] = []
        for index, record in enumerate(records):
            try:
                parsed = parse_model(HashRecord, record, f"records[{index}]")
                if parsed.current_dtg_first is None or parsed.current_dtg_latest is None:
                    raise InvalidInputError(
                        "a restored record needs current_dtg_first and current_dtg_latest",
                        field="current_dtg_first",
                    )
                valid.append(parsed)
            except InvalidInputError as exc:
                path = _get(record, "path")
                rejected.append(
                    RejectedRecord(
                        index=index, path=path if isinstance(path, str) else None, reason=exc.reason
                    )
                )
        if valid:
            with self._logged("restore_hash_records"):
                await self._restore_records(valid)
        return BulkResult(stored=len(valid), rejected=rejected)

    async def restore_logs(self, entries: Iterable[Mapping[str, Any] | LogEntry]) -> BulkResult:
        """Store log entries as given (timestamp required; new ids are assigned).

        Restoring the same entry twice stores it once: its idempotency key is derived from
        its content and original id.
        """
        if isinstance(entries, Mapping | str | bytes) or not isinstance(entries, Iterable):
            raise InvalidInputError("entries must be an iterable of log entries", field="entries")
        valid: list[tuple[LogEntry, str]] = []
        rejected: list[RejectedRecord] = []
        for index, entry in enumerate(entries):
            try:
                parsed = parse_model(LogEntry, entry, f"entries[{index}]")
                if parsed.timestamp is None:
                    raise InvalidInputError(
                        "a restored log entry needs its timestamp", field="timestamp"
                    )
                valid.append((parsed, _restore_key(parsed)))
            except InvalidInputError as exc:
                rejected.append(RejectedRecord(index=index, path=None, reason=exc.reason))
        if valid:
            with self._logged("restore_logs"):
                await self._restore_logs(valid)
        return BulkResult(stored=len(valid), rejected=rejected)

    # ------------------------------------------------------------------ primitives

    @abstractmethod
    async def _records_after(self, after_key: str, limit: int) -> list[tuple[str, HashRecord]]:
        """Up to ``limit`` (path key, record) pairs with keys above ``after_key``, in order."""

    @abstractmethod
    async def _logs_after(self, after_id: int, limit: int) -> list[LogEntry]:
        """Up to ``limit`` log entries with ids above ``after_id``, in id order."""

    @abstractmethod
    async def _restore_records(self, records: list[HashRecord]) -> None:
        """Write complete records verbatim (insert or replace by path)."""

    @abstractmethod
    async def _restore_logs(self, entries: list[tuple[LogEntry, str]]) -> None:
        """Insert entries under their keys, skipping keys already stored."""

    @abstractmethod
    async def _fetch_record(self, path: str) -> HashRecord | None: ...

    @abstractmethod
    async def _upsert(self, records: Iterator[HashRecord], now: int, *, ordered: bool) -> int:
        """Upsert with rotation (atomic per record, batched as the engine likes); return
        how many were stored. ``ordered``: some path repeats, so input order must hold;
        otherwise records may be written in any order and in parallel."""

    @abstractmethod
    async def _fetch_field(self, path: str, field: str) -> SingleValue: ...

    @abstractmethod
    async def _set_target(self, path: str, target_hash: str | None) -> bool: ...

    @abstractmethod
    async def _priority_paths(self) -> list[str]: ...

    @abstractmethod
    async def _insert_log(self, entry: LogEntry, key: str) -> int:
        """Insert ``entry`` (timestamp set); if ``key`` was stored already, return its id."""

    @abstractmethod
    async def _select_logs(self, query: LogQuery) -> list[LogEntry]: ...

    @abstractmethod
    async def _delete_logs(self, ids: list[int]) -> list[int]:
        """Delete those ids; return the ones that existed (and are now gone)."""

    @abstractmethod
    async def _orphans(self) -> list[str]: ...

    @abstractmethod
    async def _untracked(self) -> list[str]: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[RemoteRepository]: ...


class CoreRepository(Repository):
    """The central tier: every site's liveness and sync state, baselines, central logs.

    Dashboard rules, with ``now`` from the clock:

    * sync: no root hash or no baseline -> ``sync_unknown``; root hash equals the newest
      baseline -> ``sync_current``; equals the one before -> ``sync_1_behind``; otherwise
      ``sync_l24_behind`` if the root hash was computed within 24 h, else
      ``sync_g24_behind``.
    * liveness by last heartbeat: within 35 min (inclusive) -> ``live_current``; within
      24 h -> ``live_1_behind``; older or never -> ``live_inactive``;
      ``live_l24_behind`` = ``live_current + live_1_behind`` (sites seen within 24 h).
    * ``crit_error_count``: CRITICAL central logs in the last 24 h;
      ``hash_record_count``: the sum of the counts the sites last reported.

    Baselines are ordered by ``created_at``, then by insertion.
    """

    tier = "core"

    async def get_dashboard_content(self) -> DashboardMetrics:
        """The eleven dashboard counters; every site in one sync and one live bucket."""
        with self._logged("get_dashboard_content"):
            return await self._dashboard(self._now())

    async def get_recent_logs(self) -> list[LogEntry]:
        """Central log entries of the last 30 days, newest first."""
        with self._logged("get_recent_logs"):
            return await self._logs_since(self._now() - RECENT_LOG_WINDOW)

    async def get_hash_record_count(self) -> int:
        """Total hash records over all sites, as last reported in their heartbeats."""
        with self._logged("get_hash_record_count"):
            return await self._record_count()

    async def get_log_count_last_24h(self, log_level: str) -> int:
        """How many central log entries of ``log_level`` (any case) in the last 24 h."""
        level = LogLevel(check_choice(log_level, "log_level", list(LogLevel), fold_case=True))
        with self._logged("get_log_count_last_24h"):
            return await self._count_logs(level, self._now() - SYNC_RECENT_WINDOW)

    async def get_sites(self) -> list[SiteStatus]:
        """Every known site's status, sorted by site id."""
        with self._logged("get_sites"):
            return await self._sites()

    async def put_site_heartbeat(
        self, site_id: str, *, hash_record_count: int | None = None
    ) -> None:
        """Record that ``site_id`` is alive now (registering it if new).

        ``hash_record_count``, if given, replaces the site's reported record count.
        """
        site_id = check_site_arg(site_id)
        count = check_non_negative_int(hash_record_count, "hash_record_count", allow_none=True)
        with self._logged("put_site_heartbeat"):
            await self._heartbeat(site_id, self._now(), count)

    async def put_site_root_hash(
        self, site_id: str, root_hash: str, *, computed_at: datetime | None = None
    ) -> None:
        """Record the root hash a site computed (at ``computed_at``, default now)."""
        site_id = check_site_arg(site_id)
        root_hash = check_hash_arg(root_hash, "root_hash")
        when = _utc_arg(computed_at, "computed_at") or self._now()
        with self._logged("put_site_root_hash"):
            await self._root_hash(site_id, root_hash, when)

    async def put_baseline(self, baseline_hash: str, *, created_at: datetime | None = None) -> int:
        """Publish a new baseline hash (the newest becomes the sync reference); its id."""
        baseline_hash = check_hash_arg(baseline_hash, "baseline_hash")
        when = _utc_arg(created_at, "created_at") or self._now()
        with self._logged("put_baseline"):
            return await self._baseline(baseline_hash, when)

    async def put_core_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a central log entry (same rules as the remote ``put_log``)."""
        try:
            entry = parse_model(LogEntry, args_dict, "log entry")
        except InvalidInputError as exc:
            logger.error("core.put_core_log rejected an entry: %s", exc)
            return None
        if entry.timestamp is None:
            entry = entry.model_copy(update={"timestamp": self._now()})
        key = check_idempotency_key(idempotency_key) or uuid.uuid4().hex
        with self._logged("put_core_log"):
            return await self._insert_log(entry, key)

    async def health_check(self) -> dict[str, bool]:
        """``{'core_db': True}`` if the database answers, else False (never raises)."""
        return {"core_db": await self._healthy()}

    @abstractmethod
    async def _dashboard(self, now: datetime) -> DashboardMetrics: ...

    @abstractmethod
    async def _logs_since(self, since: datetime) -> list[LogEntry]: ...

    @abstractmethod
    async def _record_count(self) -> int: ...

    @abstractmethod
    async def _count_logs(self, level: LogLevel, since: datetime) -> int: ...

    @abstractmethod
    async def _sites(self) -> list[SiteStatus]: ...

    @abstractmethod
    async def _heartbeat(self, site_id: str, now: datetime, count: int | None) -> None: ...

    @abstractmethod
    async def _root_hash(self, site_id: str, root_hash: str, when: datetime) -> None: ...

    @abstractmethod
    async def _baseline(self, baseline_hash: str, when: datetime) -> int: ...

    @abstractmethod
    async def _insert_log(self, entry: LogEntry, key: str) -> int: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[CoreRepository]: ...


class PipelineRepository(Repository):
    """Update requests to answer with hashes, official sites, completions."""

    tier = "pipeline"

    async def get_pipeline_updates(self) -> list[PipelineUpdate]:
        """Pending (unanswered) update requests, oldest first."""
        with self._logged("get_pipeline_updates"):
            return await self._pending()

    async def put_pipeline_hash(self, update_path: str, hash_value: str) -> bool:
        """Answer every pending request for ``update_path`` with ``hash_value``.

        Returns True if at least one request was answered; False (logged) when none was
        pending or the hash is invalid.
        """
        try:
            update_path = check_path_arg(update_path, "update_path")
            hash_value = check_hash_arg(hash_value, "hash_value")
        except InvalidInputError as exc:
            logger.error("pipeline.put_pipeline_hash rejected its input: %s", exc)
            return False
        with self._logged("put_pipeline_hash"):
            answered = await self._answer(update_path, hash_value, self._now())
        if not answered:
            logger.warning("pipeline.put_pipeline_hash: no pending request for that path")
        return answered

    async def get_official_sites(self) -> list[str]:
        """Identifiers of the official sites, sorted."""
        with self._logged("get_official_sites"):
            return await self._official_sites()

    async def put_pipeline_site_completion(self, site: str) -> bool:
        """Record that official site ``site`` completed now; False if not official/invalid."""
        try:
            site = check_site_arg(site, "site")
        except InvalidInputError as exc:
            logger.error("pipeline.put_pipeline_site_completion rejected its input: %s", exc)
            return False
        with self._logged("put_pipeline_site_completion"):
            done = await self._complete(site, self._now())
        if not done:
            logger.warning("pipeline.put_pipeline_site_completion: not an official site")
        return done

    async def enqueue_pipeline_update(self, path: str, site_id: str | None = None) -> int:
        """Queue an update request for ``path`` (optionally for a site); its id."""
        path = check_path_arg(path)
        if site_id is not None:
            site_id = check_site_arg(site_id)
        with self._logged("enqueue_pipeline_update"):
            return await self._enqueue(path, site_id, self._now())

    async def register_official_site(self, site_id: str) -> bool:
        """Make ``site_id`` official; False if it already was."""
        site_id = check_site_arg(site_id)
        with self._logged("register_official_site"):
            return await self._register(site_id, self._now())

    async def get_pipeline_site_completions(self, site: str | None = None) -> list[SiteCompletion]:
        """Completion records (of one site, or all), oldest first."""
        if site is not None:
            site = check_site_arg(site, "site")
        with self._logged("get_pipeline_site_completions"):
            return await self._completions(site)

    async def pipeline_health_check(self) -> dict[str, bool]:
        """``{'pipeline_db': True}`` if the database answers, else False (never raises)."""
        return {"pipeline_db": await self._healthy()}

    async def health_check(self) -> dict[str, bool]:
        """Same as :meth:`pipeline_health_check`."""
        return await self.pipeline_health_check()

    @abstractmethod
    async def _pending(self) -> list[PipelineUpdate]: ...

    @abstractmethod
    async def _answer(self, path: str, hash_value: str, now: datetime) -> bool: ...

    @abstractmethod
    async def _official_sites(self) -> list[str]: ...

    @abstractmethod
    async def _complete(self, site: str, now: datetime) -> bool: ...

    @abstractmethod
    async def _enqueue(self, path: str, site_id: str | None, now: datetime) -> int: ...

    @abstractmethod
    async def _register(self, site_id: str, now: datetime) -> bool: ...

    @abstractmethod
    async def _completions(self, site: str | None) -> list[SiteCompletion]: ...

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[PipelineRepository]: ...


class _FailureLog:
    # A class, not @contextmanager: it wraps every call, and this is several times cheaper.
    __slots__ = ("operation", "tier")

    def __init__(self, tier: str, operation: str) -> None:
        self.tier = tier
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Messages of this library's errors carry no secrets (see errors.py).
        if isinstance(exc, AsyncDBClientError) and not isinstance(exc, InvalidInputError):
            logger.error("%s.%s failed: %s: %s", self.tier, self.operation, type(exc).__name__, exc)


def _restore_key(entry: LogEntry) -> str:
    content = entry.model_dump_json(exclude={"log_id"}) + f"|{entry.log_id}"
    return "restore:" + hashlib.sha256(content.encode("utf-8")).hexdigest()[:48]


def _get(record: Any, key: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(key)
    return getattr(record, key, None)


def _utc_arg(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{name} must be a datetime", field=name)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
