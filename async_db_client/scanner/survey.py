"""The blocking half of a scan: what runs in worker threads, many files per call.

One call (:func:`explore`) lists a directory, stats its entries, takes unchanged files
from the cache and hashes its small files, then goes on into its subdirectories depth
first, until the call's budget is spent (:data:`EXPLORE_ENTRIES` entries listed,
:data:`BATCH_FILES` files or :data:`BATCH_BYTES` bytes hashed). A tree of many small
files thus costs one thread hop per few hundred files, not one per file. What a call
leaves is handed back: directories not reached (explored by later calls, in groups of
:data:`GROUP_DIRS`), small files over the budget (:func:`hash_batch`, a batch per call)
and files over :data:`SMALL_FILE` (:func:`hash_large`, one per call, read in
:data:`CHUNK`-sized pieces). Other workers pick these up, so several threads read and
hash at once: reads, ``fstat``, opens and hash updates of 2 KiB or more release the GIL.

Memory stays bounded: every thread reads into one reused buffer of :data:`CHUNK` bytes;
a call holds listings and hashes, never file contents beyond that buffer.

Files are opened relative to their directory's descriptor (one path lookup per
directory, not per file), never through a link (``O_NOFOLLOW``; the scan's root is the
one directory opened through a link, as given), and a FIFO swapped in for a file never
blocks the open (``O_NONBLOCK``). A file is read only if the open descriptor is a regular
file; ``fstat`` before and after reading tells whether it changed meanwhile (then its
hash is used but not remembered).

Every call checks the scan's ``stop`` event between directories, files and chunks and
raises :class:`Stopped` once it is set: a cancelled scan (Ctrl-C) waits for at most one
file or chunk per thread.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from .cache import RACY_WINDOW_NS, CachedFile, FileStateCache, Remembered
from .merkle import UNREADABLE, Entry

__all__ = [
    "BATCH_BYTES",
    "BATCH_FILES",
    "CHUNK",
    "EXPLORE_ENTRIES",
    "GROUP_DIRS",
    "SMALL_FILE",
    "Done",
    "Exploration",
    "Rules",
    "Stopped",
    "Survey",
    "exclusion",
    "explore",
    "hash_batch",
    "hash_large",
]

#: Files up to this size are hashed in batches; larger ones get a call of their own.
SMALL_FILE = 1024 * 1024
#: At most this many bytes (of small files) hashed in one call...
BATCH_BYTES = 8 * 1024 * 1024
#: ...and at most this many files: a call lasts milliseconds, not seconds.
BATCH_FILES = 512
#: The read size, and the size of each thread's reused buffer.
CHUNK = 1024 * 1024
#: One call goes on into subdirectories (depth first) until it has listed this many
#: entries (or spent its hashing budget): a tree of small directories costs a thread
#: hop per few hundred directories.
EXPLORE_ENTRIES = 2048
#: Directories left for other calls are handed out in groups of at most this many.
GROUP_DIRS = 32

# Never follow a link swapped in after listing; never block opening a FIFO swapped in.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_FILE_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC
#: Where descriptors work for directories (POSIX), files are opened relative to them.
_BY_DESCRIPTOR = os.open in os.supports_dir_fd and os.scandir in os.supports_fd
_SEQUENTIAL = getattr(os, "POSIX_FADV_SEQUENTIAL", None)

_local = threading.local()


class Stopped(Exception):
    """The scan is being cancelled: the thread stopped between two files or chunks."""


@dataclass(frozen=True, slots=True)
class Rules:
    """What every call of one scan needs."""

    root: str  # the scan's root: the one directory opened through a link
    exclude: re.Pattern[str] | None
    cache: FileStateCache | None
    stop: threading.Event


def exclusion(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regular expression matching a name iff ``fnmatchcase`` matches any pattern."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


@dataclass(slots=True)
class Done:
    """Files of one directory hashed (or found unchanged) in one call."""

    files: list[Entry] = field(default_factory=list)  # value: hash or UNREADABLE
    problems: list[tuple[str, str]] = field(default_factory=list)  # path, reason
    files_hashed: int = 0
    bytes_hashed: int = 0
    files_cached: int = 0
    bytes_cached: int = 0


@dataclass(slots=True)
class Survey(Done):
    """One directory: its entries, the files done, and the work left for other calls."""

    path: str = ""
    name: str = ""
    start: int = -1  # index in the call's ``starts``, or -1...
    parent: int = -1  # ...and then the index of the parent's survey in the same call
    error: str | None = None  # why it could not be listed (then it has nothing else)
    dirs: list[str] = field(default_factory=list)  # every subdirectory
    links: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # path, reason
    batches: list[list[str]] = field(default_factory=list)  # small files, by name
    large: list[str] = field(default_factory=list)  # large files, by name

    @property
    def waiting(self) -> int:
        """What the directory waits for: subdirectories, batches and large files."""
        return len(self.dirs) + len(self.batches) + len(self.large)


@dataclass(slots=True)
class Exploration:
    """What one :func:`explore` call found: directories in depth-first order (each
    after its parent), and the ones it left for other calls."""

    surveys: list[Survey] = field(default_factory=list)
    unreached: list[int] = field(default_factory=list)  # indexes in ``starts``
    rest: list[tuple[int, str]] = field(default_factory=list)  # parent's index, name


@dataclass(slots=True)
class _Budget:
    """What one call may still do before it hands the rest to other calls."""

    entries: int
    files: int
    size: int

    def spent(self) -> bool:
        return self.entries <= 0 or self.files <= 0 or self.size <= 0


# ---------------------------------------------------------------- opening (hooks)


def open_directory(path: str, *, follow: bool) -> int:
    """A descriptor of the directory ``path`` (``follow``: the scan's root may be a link)."""
    return os.open(path, _DIR_FLAGS if follow else _DIR_FLAGS | _NOFOLLOW)


def open_file(name: str, dir_fd: int | None) -> int:
    """A descriptor of the file ``name`` in ``dir_fd`` (or of the path ``name``)."""
    return os.open(name, _FILE_FLAGS, dir_fd=dir_fd)


# ------------------------------------------------------------------------ reading


def _buffer() -> tuple[bytearray, memoryview]:
    """This thread's read buffer (one per thread, reused by every file)."""
    found: tuple[bytearray, memoryview] | None = getattr(_local, "buffer", None)
    if found is None or len(found[0]) != CHUNK:
        data = bytearray(CHUNK)
        found = _local.buffer = (data, memoryview(data))
    return found


if hasattr(os, "readv"):

    def _read_into(fd: int, buffer: bytearray) -> int:
        return os.readv(fd, [buffer])

else:  # pragma: no cover - not POSIX

    def _read_into(fd: int, buffer: bytearray) -> int:
        data = os.read(fd, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _hash_open_file(
    fd: int, name: str, stop: threading.Event, *, large: bool
) -> tuple[str, os.stat_result, bool]:
    """SHA-256 of an open file, its ``fstat`` after reading, and whether it held still
    (same size and mtime before and after). ``stop`` is checked between chunks."""
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise OSError(f"not a regular file any more: {name}")
    if large and _SEQUENTIAL is not None:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, _SEQUENTIAL)  # a larger read-ahead
    buffer, view = _buffer()
    digest = hashlib.sha256()
    while True:
        count = _read_into(fd, buffer)
        if not count:
            break
        digest.update(view[:count])
        if stop.is_set():
            raise Stopped
    after = os.fstat(fd)
    stable = before.st_size == after.st_size and before.st_mtime_ns == after.st_mtime_ns
    return digest.hexdigest(), after, stable


def _hash_named(
    directory: str,
    name: str,
    dir_fd: int | None,
    started_ns: int,
    done: Done,
    fresh: list[CachedFile],
    stop: threading.Event,
    *,
    large: bool = False,
) -> None:
    """Hash one file of ``directory`` into ``done`` (and ``fresh``, if it held still)."""
    try:
        fd = open_file(name if dir_fd is not None else os.path.join(directory, name), dir_fd)
        try:
            sha256, after, stable = _hash_open_file(fd, name, stop, large=large)
        finally:
            os.close(fd)
    except OSError as exc:
        done.problems.append((os.path.join(directory, name), f"cannot read file: {reason(exc)}"))
        done.files.append((name, "f", UNREADABLE))
        return
    done.files.append((name, "f", sha256))
    done.files_hashed += 1
    done.bytes_hashed += after.st_size
    if stable:
        fresh.append(CachedFile(name, after.st_size, after.st_mtime_ns, started_ns, sha256))


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _valid_name(name: str) -> bool:
    try:
        name.encode("utf-8")  # undecodable bytes came back as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


# -------------------------------------------------------------------------- calls


def explore(starts: Sequence[str], rules: Rules) -> Exploration:
    """Survey the directories ``starts``, each followed by its subdirectories depth
    first, until the call's budget is spent (the first directory is always surveyed).
    The directories not reached are left in ``unreached`` and ``rest``.

    A directory that cannot be opened or listed is a survey with an ``error``.
    """
    out = Exploration()
    budget = _Budget(EXPLORE_ENTRIES, BATCH_FILES, BATCH_BYTES)
    # path, name, start (index in starts, or -1), parent (index in out.surveys, or -1)
    todo = [(path, "", start, -1) for start, path in reversed(list(enumerate(starts)))]
    while todo:
        if out.surveys and budget.spent():
            break
        if rules.stop.is_set():
            raise Stopped
        where, name, start, parent = todo.pop()
        found = Survey(path=where, name=name, start=start, parent=parent)
        try:
            _survey(found, rules, budget)
        except OSError as exc:
            found = Survey(path=where, name=name, start=start, parent=parent, error=reason(exc))
        index = len(out.surveys)
        out.surveys.append(found)
        todo.extend((os.path.join(where, sub), sub, -1, index) for sub in reversed(found.dirs))
    for _, name, start, parent in reversed(todo):
        if start >= 0:
            out.unreached.append(start)
        else:
            out.rest.append((parent, name))
    return out


def _survey(out: Survey, rules: Rules, budget: _Budget) -> None:
    """List ``out.path``, classify its entries without following links, take unchanged
    files from the cache and hash small files within ``budget``."""
    started_ns = time.time_ns()
    path = out.path
    cache = rules.cache
    remembered = cache.rows(path) if cache is not None else {}
    follow = path == rules.root
    dir_fd: int | None = open_directory(path, follow=follow) if _BY_DESCRIPTOR else None
    try:
        small = _list(out, dir_fd, rules, remembered)
        budget.entries -= len(out.dirs) + len(out.files) + len(out.links) + len(small)
        fresh: list[CachedFile] = []
        batch: list[str] = []
        batch_bytes = 0
        for name, size in small:
            if not budget.spent():  # may overshoot by one small file
                if rules.stop.is_set():
                    raise Stopped
                budget.files -= 1
                budget.size -= size
                _hash_named(path, name, dir_fd, started_ns, out, fresh, rules.stop)
                continue
            # Over this call's budget: batches for other calls.
            if batch and (len(batch) >= BATCH_FILES or batch_bytes + size > BATCH_BYTES):
                out.batches.append(batch)
                batch, batch_bytes = [], 0
            batch.append(name)
            batch_bytes += size
        if batch:
            out.batches.append(batch)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    if cache is not None and (fresh or remembered):
        # What is left of ``remembered`` was not found as a file: forget it.
        cache.remember(path, fresh, remembered)


def _list(
    out: Survey, dir_fd: int | None, rules: Rules, remembered: dict[str, Remembered]
) -> list[tuple[str, int]]:
    """Classify the entries of ``out.path`` into ``out``; unchanged files go to
    ``out.files`` (and leave ``remembered``), large ones to ``out.large``; the small
    files to hash are returned (name, size)."""
    path = out.path
    exclude = rules.exclude
    small: list[tuple[str, int]] = []
    # The loop runs once per entry of the tree: names looked up once, here.
    files, forget, window = out.files, remembered.pop, RACY_WINDOW_NS
    cached = cached_size = 0
    with os.scandir(dir_fd if dir_fd is not None else path) as entries:
        for entry in entries:
            name = entry.name
            if exclude is not None and exclude.match(name):
                continue
            if not name.isascii() and not _valid_name(name):
                out.skipped.append((os.path.join(path, name), "name is not valid UTF-8; left out"))
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    info = entry.stat(follow_symlinks=False)
                    size, mtime_ns = info.st_size, info.st_mtime_ns
                    known = forget(name, None)
                    # CachedFile.matches, inlined (this is the hot loop of a re-scan)
                    if (
                        known is not None
                        and known[0] == size
                        and known[1] == mtime_ns
                        and mtime_ns + window <= known[2]
                    ):
                        files.append((name, "f", known[3]))
                        cached += 1
                        cached_size += size
                    elif size > SMALL_FILE:
                        out.large.append(name)
                    else:
                        small.append((name, size))
                elif entry.is_dir(follow_symlinks=False):
                    out.dirs.append(name)
                elif entry.is_symlink():
                    try:
                        target = os.readlink(entry.path, dir_fd=dir_fd)
                    except OSError as exc:
                        out.problems.append((os.path.join(path, name), reason(exc)))
                        target = UNREADABLE
                    out.links.append((name, "l", target))
                else:
                    out.skipped.append(
                        (os.path.join(path, name), "not a file, directory or link; left out")
                    )
            except FileNotFoundError:
                continue  # gone since the listing: as if it had not been there
            except OSError as exc:
                out.problems.append((os.path.join(path, name), reason(exc)))
    out.files_cached += cached
    out.bytes_cached += cached_size
    return small


def hash_batch(path: str, names: list[str], rules: Rules) -> Done:
    """Hash these small files of the directory ``path`` (one call, one descriptor)."""
    started_ns = time.time_ns()
    done = Done()
    fresh: list[CachedFile] = []
    try:
        follow = path == rules.root
        dir_fd: int | None = open_directory(path, follow=follow) if _BY_DESCRIPTOR else None
    except OSError:
        dir_fd = None  # each file then fails (or not) on its own, by path
    try:
        for name in names:
            if rules.stop.is_set():
                raise Stopped
            _hash_named(path, name, dir_fd, started_ns, done, fresh, rules.stop)
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    if fresh and rules.cache is not None:
        rules.cache.remember(path, fresh, ())
    return done


def hash_large(path: str, name: str, rules: Rules) -> Done:
    """Hash one large file of the directory ``path``, a chunk at a time."""
    started_ns = time.time_ns()
    done = Done()
    fresh: list[CachedFile] = []
    _hash_named(path, name, None, started_ns, done, fresh, rules.stop, large=True)
    if fresh and rules.cache is not None:
        rules.cache.remember(path, fresh, ())
    return done
