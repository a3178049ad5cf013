"""Scanning a directory tree into hash records: ``result = await scan(db, root)``.

How a scan runs:

* ``concurrency`` workers take jobs from one LIFO stack (so the walk goes depth first
  and memory stays proportional to the open directories, not to the tree): *list a
  directory* or *hash a file*. The blocking part of each job runs in a thread, at most
  ``concurrency`` at once (an ``anyio.CapacityLimiter``).
* A directory is complete when its listing and every child are; then its Merkle hash
  (:mod:`.merkle`) is computed, its hash record (``dirs``, ``files``, ``links``, the
  session id) queued, and its parent told. Records go to the database through
  ``insert_or_update_hashes`` in batches of ``batch_size``, children before parents.
* With a ``cache`` (:mod:`.cache`), files whose size and mtime match what was remembered
  are not read again; everything hashed is remembered for next time.
* A file or directory that cannot be read is logged (WARNING), counted, and enters its
  parent's hash as ``unreadable``; an unreadable directory gets no record (so it shows
  up in ``find_untracked_children``). Nothing unreadable stops the scan; database errors
  do (they raise).
* The session gets a start and an end log entry (the end one with the counters); the
  first :data:`MAX_WARNINGS_LOGGED` problems get a WARNING entry each, and a summary if
  there were more.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import anyio.to_thread

from ..client import DBInstance
from ..models import MAX_SUMMARY_CHARS
from ..validation import check_site_arg
from .cache import CachedFile, FileStateCache
from .merkle import UNREADABLE, Child, directory_hash, hash_file
from .progress import NoProgress, ProgressReporter, ScanCounters

__all__ = ["MAX_WARNINGS_LOGGED", "ScanResult", "scan"]

logger = logging.getLogger("async_db_client.scanner")

#: Problems logged to the database one by one; beyond that, only counted.
MAX_WARNINGS_LOGGED = 100


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


# --------------------------------------------------------------------------- listing


def _root_directory(root: str | os.PathLike[str]) -> str:
    """The absolute path of ``root`` (links in it are kept, not resolved)."""
    top = os.path.abspath(os.fspath(root))
    if not os.path.isdir(top):
        raise NotADirectoryError(f"not a directory: {top}")
    return top


@dataclass(slots=True)
class _Listing:
    dirs: list[str] = field(default_factory=list)
    files: list[tuple[str, int]] = field(default_factory=list)  # name, size
    stats: dict[str, int] = field(default_factory=dict)  # name -> mtime_ns
    links: list[tuple[str, str]] = field(default_factory=list)  # name, target
    problems: list[tuple[str, str]] = field(default_factory=list)  # path, reason
    skipped: list[tuple[str, str]] = field(default_factory=list)  # path, reason


def _valid_name(name: str) -> bool:
    try:
        name.encode("utf-8")  # undecodable bytes came back as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def _list_directory(path: str, exclude: tuple[str, ...]) -> _Listing:
    """One directory's entries, classified without following links (blocking)."""
    out = _Listing()
    with os.scandir(path) as entries:
        for entry in entries:
            name = entry.name
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
                continue
            if not _valid_name(name):
                out.skipped.append((entry.path, "name is not valid UTF-8; left out"))
                continue
            try:
                if entry.is_symlink():
                    try:
                        out.links.append((name, os.readlink(entry.path)))
                    except OSError as exc:
                        out.problems.append((entry.path, _reason(exc)))
                        out.links.append((name, UNREADABLE))
                elif entry.is_dir(follow_symlinks=False):
                    out.dirs.append(name)
                elif entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    out.files.append((name, info.st_size))
                    out.stats[name] = info.st_mtime_ns
                else:
                    out.skipped.append((entry.path, "not a file, directory or link; left out"))
            except FileNotFoundError:
                continue  # gone since the listing: as if it had not been there
            except OSError as exc:
                out.problems.append((entry.path, _reason(exc)))
    return out


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


# ----------------------------------------------------------------------- the scan


class _Node:
    """A directory being scanned: its children's values so far, and what is pending."""

    __slots__ = ("children", "fresh", "gone", "name", "parent", "path", "pending")

    def __init__(self, path: str, name: str, parent: _Node | None) -> None:
        self.path = path
        self.name = name
        self.parent = parent
        self.children: dict[str, Child] = {}
        self.pending = 0
        self.fresh: list[CachedFile] = []  # hashed in this scan: remember them
        self.gone: list[str] = []  # remembered, no longer here: forget them


Job = Callable[[], Awaitable[None]]


class _Scan:
    def __init__(
        self,
        db: DBInstance,
        root: str,
        *,
        concurrency: int,
        batch_size: int,
        exclude: tuple[str, ...],
        progress: ProgressReporter,
        session_id: str,
        site_id: str | None,
    ) -> None:
        self.db = db
        self.root = root
        self.concurrency = concurrency
        self.exclude = exclude
        self.progress = progress
        self.session_id = session_id
        self.site_id = site_id
        self.counters = ScanCounters()
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.writer = _RecordWriter(db, batch_size, self._warn)
        self.cache: FileStateCache | None = None
        self.root_hash: str | None = None
        self.warnings_logged = 0
        self.warnings = 0
        self._stack: list[Job | None] = []
        self._ready = anyio.Event()  # set (and replaced) whenever a job is pushed

    # ------------------------------------------------------------------- driving

    async def run(self, cache: FileStateCache | None) -> ScanResult:
        self.cache = cache
        started = time.monotonic()
        await self._log("INFO", f"scan started: {self.root}", {"exclude": list(self.exclude)})
        self.progress.start(self.root)
        try:
            self._push(functools.partial(self._list, _Node(self.root, "", None)))
            try:
                async with anyio.create_task_group() as group:
                    for _ in range(self.concurrency):
                        group.start_soon(self._worker)
            except BaseExceptionGroup as failed:
                # Report the first failure as itself (the other workers were cancelled).
                first = failed.exceptions[0]
                if isinstance(first, Exception):
                    raise first from None
                raise
            await self.writer.flush()
        finally:
            self.progress.stop(self.counters)
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
        for _ in range(self.concurrency):
            self._push(None)

    # ----------------------------------------------------------------------- jobs

    async def _list(self, node: _Node) -> None:
        try:
            listing = await anyio.to_thread.run_sync(
                _list_directory, node.path, self.exclude, limiter=self.limiter
            )
        except OSError as exc:
            await self._problem(node.path, f"cannot list directory: {_reason(exc)}")
            await self._complete(node, readable=False)
            return
        for path, reason in listing.problems:
            await self._problem(path, reason)
        for path, reason in listing.skipped:
            self.counters.skipped += 1
            logger.info("%s: %s", path, reason)
        remembered = await self.cache.files_in(node.path) if self.cache else {}
        # No await from here on until every job is pushed: node.pending is final
        # before any child can complete.
        for name in listing.dirs:
            node.pending += 1
            child = _Node(os.path.join(node.path, name), name, node)
            self._push(functools.partial(self._list, child))
        for name, target in listing.links:
            node.children[name] = Child("l", name, target)
            self.counters.links += 1
        for name, size in listing.files:
            known = remembered.get(name)
            if known is not None and known.matches(size, listing.stats[name]):
                node.children[name] = Child("f", name, known.sha256)
                self.counters.files += 1
                self.counters.files_cached += 1
                self.counters.bytes_seen += size
            else:
                node.pending += 1
                self._push(functools.partial(self._hash, node, name))
        node.gone = [name for name in remembered if name not in listing.stats]
        if node.pending == 0:
            await self._complete(node, readable=True)

    async def _hash(self, node: _Node, name: str) -> None:
        path = os.path.join(node.path, name)
        started_ns = time.time_ns()
        try:
            digest = await anyio.to_thread.run_sync(hash_file, path, limiter=self.limiter)
        except OSError as exc:
            await self._problem(path, f"cannot read file: {_reason(exc)}")
            node.children[name] = Child("f", name, UNREADABLE)
        else:
            node.children[name] = Child("f", name, digest.sha256)
            self.counters.files_hashed += 1
            self.counters.bytes_hashed += digest.size
            self.counters.bytes_seen += digest.size
            if digest.stable:
                node.fresh.append(
                    CachedFile(name, digest.size, digest.mtime_ns, started_ns, digest.sha256)
                )
        self.counters.files += 1
        node.pending -= 1
        if node.pending == 0:
            await self._complete(node, readable=True)

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
            parent.children[node.name] = Child("d", node.name, value)
            parent.pending -= 1
            if parent.pending:
                return
            node, readable = parent, True

    async def _record(self, node: _Node) -> str:
        children = node.children
        digest = directory_hash(children.values())
        names: dict[str, list[str]] = {"d": [], "f": [], "l": []}
        for name in sorted(children):
            names[children[name].kind].append(name)
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
        if self.cache is not None:
            await self.cache.update(node.path, node.fresh, node.gone)
        node.children, node.fresh, node.gone = {}, [], []  # free what is no longer needed
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
