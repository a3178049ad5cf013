"""Scanning a directory tree into hash records: ``result = await scan(db, root)``.

How a scan runs:

* ``concurrency`` workers take jobs from one LIFO stack (so the walk goes depth first
  and memory stays proportional to the open directories, not to the tree): *explore
  directories* (list them and their subtrees, hash their small files, as far as one
  call's budget goes), *hash a batch of small files* or *hash a large file*
  (:mod:`.survey`). The blocking part of each job is one call in a thread, at most
  ``concurrency`` at once (an ``anyio.CapacityLimiter``).
* A directory is complete when its listing and every child are; then its Merkle hash
  (:mod:`.merkle`) is computed, its hash record (``dirs``, ``files``, ``links``, the
  session id) queued, and its parent told. Records go to the database through
  ``insert_or_update_hashes`` in batches of ``batch_size``, children before parents.
* With a ``cache`` (:mod:`.cache`), files whose size and mtime match what was remembered
  are not read again; everything hashed is remembered for next time (by the threads,
  as they go).
* Cancelling the scan (Ctrl-C in the CLI) sets the threads' stop event at once: each
  gives up after its current file or chunk, the scan logs "scan interrupted after N
  files" (WARNING, and as the session's last log entry), and raises the cancellation.
* A file or directory that cannot be read is logged (WARNING), counted, and enters its
  parent's hash as ``unreadable``; an unreadable directory gets no record (so it shows
  up in ``find_untracked_children``). Nothing unreadable stops the scan; database errors
  do (they raise).
* The session gets a start and an end log entry (the end one with the counters); the
  first :data:`MAX_WARNINGS_LOGGED` problems get a WARNING entry each, and a summary if
  there were more.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, InitVar, asdict, dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from ..client import DBInstance
from ..models import MAX_SUMMARY_CHARS
from ..validation import check_site_arg
from . import survey
from .cache import FileStateCache
from .merkle import UNREADABLE, Entry, sorted_entries_hash
from .progress import NoProgress, ProgressReporter, ScanCounters

__all__ = ["MAX_WARNINGS_LOGGED", "ScanResult", "scan"]

logger = logging.getLogger("async_db_client.scanner")

#: Problems logged to the database one by one; beyond that, only counted.
MAX_WARNINGS_LOGGED = 100
#: How long a cancelled scan may take to log its interruption to the database: a
#: database that does not answer must not hold up Ctrl-C.
INTERRUPTED_LOG_SECONDS = 5.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class ScanResult:
    """What a scan did. ``root_hash`` is None if the root itself could not be read."""

    session_id: str
    root: str
    root_hash: str | None
    counters: ScanCounters
    records_stored: int
    records_rejected: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "counters": asdict(self.counters)}


async def scan(
    db: DBInstance,
    root: str | os.PathLike[str],
    *,
    cache: str | os.PathLike[str] | None = None,
    concurrency: int = 8,
    batch_size: int = 500,
    exclude: Sequence[str] = (),
    progress: ProgressReporter | None = None,
    session_id: str | None = None,
    site_id: str | None = None,
) -> ScanResult:
    """Hash the tree under ``root`` and store one hash record per directory in ``db``.

    ``cache``: the file-state sidecar (a SQLite file) that lets re-scans skip unchanged
    files; None hashes every file. ``exclude``: ``fnmatch`` patterns of names to leave
    out, at any depth (``.git``, ``*.tmp``). ``site_id`` goes into the log entries and,
    if ``db`` has a core tier, the site's heartbeat and root hash are reported there.
    """
    if concurrency < 1 or batch_size < 1:
        raise ValueError("concurrency and batch_size must be at least 1")
    if site_id is not None:
        site_id = check_site_arg(site_id)
    top = await anyio.to_thread.run_sync(_root_directory, root)
    job = _Scan(
        db,
        top,
        concurrency=concurrency,
        batch_size=batch_size,
        exclude=tuple(exclude),
        progress=progress or NoProgress(),
        session_id=session_id or uuid.uuid4().hex,
        site_id=site_id,
    )
    if cache is None:
        return await job.run(None)
    async with FileStateCache(cache) as state:
        return await job.run(state)


# ----------------------------------------------------------------------- helpers


def _root_directory(root: str | os.PathLike[str]) -> str:
    """The absolute path of ``root`` (links in it are kept, not resolved)."""
    top = os.path.abspath(os.fspath(root))
    if not os.path.isdir(top):
        raise NotADirectoryError(f"not a directory: {top}")
    return top


# ----------------------------------------------------------------------- the scan


class _Node:
    """A directory being scanned: its children's values so far, and what is pending."""

    __slots__ = ("children", "name", "parent", "path", "pending")

    def __init__(self, path: str, name: str, parent: _Node | None) -> None:
        self.path = path
        self.name = name
        self.parent = parent
        self.children: list[Entry] = []
        self.pending = 0


Job = Callable[[], Awaitable[None]]


@dataclass(eq=False, repr=False)
class _Scan:
    """One scan: what :func:`scan` was given (checked), and how far it got."""

    db: DBInstance
    root: str
    _: KW_ONLY
    concurrency: int
    batch_size: InitVar[int]
    exclude: tuple[str, ...]
    progress: ProgressReporter
    session_id: str
    site_id: str | None

    def __post_init__(self, batch_size: int) -> None:
        self.counters = ScanCounters()
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.writer = _RecordWriter(self.db, batch_size, self._warn)
        self.rules = survey.Rules(
            self.root, survey.exclusion(self.exclude), None, threading.Event()
        )
        self.root_hash: str | None = None
        self.warnings_logged = 0
        self.warnings = 0
        self._stack: list[Job | None] = []
        self._ready = anyio.Event()  # set (and replaced) whenever a job is pushed
        self._finished = anyio.Event()

    # ------------------------------------------------------------------- driving

    async def run(self, cache: FileStateCache | None) -> ScanResult:
        self.rules = dataclasses.replace(self.rules, cache=cache)
        started = time.monotonic()
        await self._log("INFO", f"scan started: {self.root}", {"exclude": list(self.exclude)})
        self.progress.start(self.root)
        try:
            try:
                await self._walk()
            finally:
                self.progress.stop(self.counters)
        except anyio.get_cancelled_exc_class():
            await self._interrupted()
            raise
        result = ScanResult(
            session_id=self.session_id,
            root=self.root,
            root_hash=self.root_hash,
            counters=self.counters,
            records_stored=self.writer.stored,
            records_rejected=self.writer.rejected,
            seconds=round(time.monotonic() - started, 3),
        )
        await self._finish(result)
        return result

    async def _walk(self) -> None:
        self._push(functools.partial(self._explore, [_Node(self.root, "", None)]))
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._stop_threads_when_done)
                for _ in range(self.concurrency):
                    group.start_soon(self._worker)
        except BaseExceptionGroup as failed:
            # Report the first failure as itself (the other workers were cancelled).
            first = failed.exceptions[0]
            if isinstance(first, Exception):
                raise first from None
            raise
        await self.writer.flush()

    async def _interrupted(self) -> None:
        """Say how far a cancelled scan got, on the log and in the session's entries."""
        summary = f"scan interrupted after {self.counters.files} files"
        logger.warning("%s: %s", summary, self.root)
        # Shielded: the task is being cancelled, and this write must still happen.
        with anyio.move_on_after(INTERRUPTED_LOG_SECONDS, shield=True):
            try:
                await self._log("WARNING", f"{summary}: {self.root}", asdict(self.counters))
            except Exception as exc:  # the cancellation is what the caller must see
                logger.warning("the interruption could not be logged: %s", exc)

    async def _stop_threads_when_done(self) -> None:
        """Set the threads' stop event when the scan ends, and as soon as it is cancelled
        (Ctrl-C, or a failed worker): threads then give up within one file or chunk."""
        try:
            await self._finished.wait()
        finally:
            self.rules.stop.set()

    def _push(self, job: Job | None) -> None:
        self._stack.append(job)
        # Wake every idle worker; later idlers wait on a fresh event.
        self._ready.set()
        self._ready = anyio.Event()

    async def _worker(self) -> None:
        while True:
            while not self._stack:
                await self._ready.wait()
            job = self._stack.pop()  # newest first: depth first
            if job is None:
                return
            await job()
            self.progress.update(self.counters)

    def _stop_workers(self) -> None:
        self._finished.set()
        for _ in range(self.concurrency):
            self._push(None)

    async def _in_thread(self, call: Callable[[], _T]) -> _T:
        """``call()`` in a worker thread (at most ``concurrency`` at once)."""
        try:
            return await anyio.to_thread.run_sync(call, limiter=self.limiter)
        except survey.Stopped:
            # The thread saw the stop event: this task is being cancelled; let it be.
            await anyio.lowlevel.checkpoint()
            raise RuntimeError("scan threads stopped, but the scan was not cancelled") from None

    # ----------------------------------------------------------------------- jobs

    async def _explore(self, starts: list[_Node]) -> None:
        """Directories, and as much of their subtrees as one thread call does."""
        paths = [start.path for start in starts]
        found = await self._in_thread(functools.partial(survey.explore, paths, self.rules))
        nodes: list[_Node] = []
        for each in found.surveys:
            if each.start >= 0:
                nodes.append(starts[each.start])
            else:
                nodes.append(_Node(each.path, each.name, nodes[each.parent]))
            if each.error is not None:
                await self._problem(each.path, f"cannot list directory: {each.error}")
                continue
            for path, reason in each.skipped:
                self.counters.skipped += 1
                logger.info("%s: %s", path, reason)
            self.counters.links += len(each.links)
        for each, at in zip(found.surveys, nodes, strict=True):
            at.children += each.links
            await self._take(at, each)
        # No await from here on until every job is pushed: the counts of pending work
        # are final before any of it can complete.
        for each, at in zip(found.surveys, nodes, strict=True):
            at.pending = each.waiting
        left = [starts[index] for index in found.unreached]
        for parent_index, name in found.rest:
            parent = nodes[parent_index]
            left.append(_Node(os.path.join(parent.path, name), name, parent))
        for first in range(0, len(left), survey.GROUP_DIRS):
            group = left[first : first + survey.GROUP_DIRS]
            self._push(functools.partial(self._explore, group))
        for each, at in zip(found.surveys, nodes, strict=True):
            for names in each.batches:
                call = functools.partial(survey.hash_batch, at.path, names, self.rules)
                self._push(functools.partial(self._files, at, call))
            for name in each.large:
                call = functools.partial(survey.hash_large, at.path, name, self.rules)
                self._push(functools.partial(self._files, at, call))
        # Directories waiting for nothing are complete: deepest first, so each completes
        # before its parent (which then completes with its last child).
        for each, at in zip(reversed(found.surveys), reversed(nodes), strict=True):
            if each.waiting == 0:
                await self._complete(at, readable=each.error is None)

    async def _files(self, node: _Node, call: Callable[[], survey.Done]) -> None:
        """A batch of small files, or one large file, of ``node``."""
        await self._take(node, await self._in_thread(call))
        node.pending -= 1
        if node.pending == 0:
            await self._complete(node, readable=True)

    async def _take(self, node: _Node, done: survey.Done) -> None:
        """Count and keep the files ``done``; warn about the ones that failed."""
        node.children += done.files
        c = self.counters
        c.files += len(done.files)
        c.files_hashed += done.files_hashed
        c.bytes_hashed += done.bytes_hashed
        c.files_cached += done.files_cached
        c.bytes_seen += done.bytes_hashed + done.bytes_cached
        for path, reason in done.problems:
            await self._problem(path, reason)

    async def _complete(self, node: _Node | None, *, readable: bool) -> None:
        """Finish ``node`` and every ancestor this completes (a loop, not recursion:
        trees may be deeper than Python's recursion limit)."""
        while node is not None:
            value = await self._record(node) if readable else UNREADABLE
            parent = node.parent
            if parent is None:
                self.root_hash = value if readable else None
                self._stop_workers()
                return
            parent.children.append((node.name, "d", value))
            parent.pending -= 1
            if parent.pending:
                return
            node, readable = parent, True

    async def _record(self, node: _Node) -> str:
        children = sorted(node.children)
        node.children = []  # free what is no longer needed
        digest = sorted_entries_hash(children)
        names: dict[str, list[str]] = {"d": [], "f": [], "l": []}
        for name, kind, _ in children:
            names[kind].append(name)
        await self.writer.add(
            {
                "path": node.path,
                "current_hash": digest,
                "dirs": names["d"],
                "files": names["f"],
                "links": names["l"],
                "session_id": self.session_id,
            }
        )
        self.counters.directories += 1
        return digest

    # -------------------------------------------------------------------- logging

    async def _problem(self, path: str, reason: str) -> None:
        """Something could not be read: counted as unreadable, and warned about."""
        self.counters.unreadable += 1
        await self._warn(path, reason)

    async def _warn(self, path: str, reason: str) -> None:
        self.warnings += 1
        logger.warning("%s: %s", path, reason)
        if self.warnings_logged < MAX_WARNINGS_LOGGED:
            self.warnings_logged += 1
            await self._log("WARNING", f"{reason}: {path}", None)

    async def _log(self, level: str, summary: str, details: dict[str, Any] | None) -> None:
        entry: dict[str, Any] = {
            "log_level": level,
            "summary_message": summary[:MAX_SUMMARY_CHARS],
            "session_id": self.session_id,
            "site_id": self.site_id,
        }
        if details is not None:
            entry["detailed_message"] = json.dumps({"root": self.root, **details})
        await self.db.put_log(entry)

    async def _finish(self, result: ScanResult) -> None:
        c = result.counters
        extra = self.warnings - self.warnings_logged
        if extra > 0:
            await self._log("WARNING", f"{extra} more problems not logged one by one", None)
        await self._log(
            "INFO" if result.root_hash else "ERROR",
            f"scan finished: {c.directories} dirs, {c.files} files ({c.files_hashed} hashed, "
            f"{c.files_cached} unchanged), {c.unreadable} unreadable in {result.seconds:.2f}s",
            {"root_hash": result.root_hash, **asdict(c), "seconds": result.seconds},
        )
        if self.site_id and result.root_hash and self.db.core_db is not None:
            await self.db.put_site_heartbeat(self.site_id, hash_record_count=c.directories)
            await self.db.put_site_root_hash(self.site_id, result.root_hash)


class _RecordWriter:
    """Buffers records and stores them with the bulk call, ``batch_size`` at a time, one
    batch at a time (a full buffer makes the next adder wait: back-pressure)."""

    def __init__(
        self,
        db: DBInstance,
        batch_size: int,
        warn: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.db = db
        self.batch_size = batch_size
        self.warn = warn
        self.buffer: list[dict[str, Any]] = []
        self.lock = anyio.Lock()
        self.stored = 0
        self.rejected = 0

    async def add(self, record: dict[str, Any]) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.batch_size:
            await self.flush(full_only=True)

    async def flush(self, *, full_only: bool = False) -> None:
        """Write full batches (and, unless ``full_only``, the rest) in order."""
        size = self.batch_size
        async with self.lock:
            # Other tasks keep adding while a batch is written: slice, never swap.
            while len(self.buffer) >= size or (self.buffer and not full_only):
                batch, self.buffer = self.buffer[:size], self.buffer[size:]
                result = await self.db.insert_or_update_hashes(batch)
                self.stored += result.stored
                self.rejected += len(result.rejected)
                for rejected in result.rejected:
                    await self.warn(rejected.path or "?", f"record rejected: {rejected.reason}")
