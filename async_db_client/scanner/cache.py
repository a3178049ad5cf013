"""What the scanner remembers about files between scans, so re-scans skip unchanged ones.

Hash records hold one row per *directory*; the per-file state a re-scan needs (size,
mtime, hash) is a cache local to the machine that scans, so it lives in a small SQLite
file of the scanner's own (the "sidecar"), whatever backend holds the records. Losing or
deleting it is harmless: the next scan hashes every file again.

A remembered hash is reused only if the file's size and mtime (nanoseconds) are the ones
it had when hashed, **and** that mtime was at least :data:`RACY_WINDOW_NS` older than the
moment hashing started. A file written within that window of being hashed might be
written again with the same size and an mtime in the same clock tick (file systems keep
mtimes at coarse granularity); such a "racily clean" file is hashed again next time
instead of trusted, as git does with its index.

The cache only saves time, so it never stops a scan: a damaged cache file is replaced
by a new one; a cache that cannot be opened or written (read-only directory, full disk)
is logged once (WARNING) and the scan goes on without it, hashing every file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.to_thread

__all__ = ["RACY_WINDOW_NS", "CachedFile", "FileStateCache", "Remembered"]

logger = logging.getLogger("async_db_client.scanner")

#: A file modified this close to being hashed is never trusted from the cache (2 s: the
#: coarsest mtime granularity in use, FAT's).
RACY_WINDOW_NS = 2_000_000_000
#: Bump when the table changes: a cache of another format is dropped and rebuilt.
FORMAT_VERSION = 1
#: Directories' worth of writes per transaction.
COMMIT_EVERY = 200
#: SQLite result codes of a file that is not a (sound) database: replace it.
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26


@dataclass(frozen=True, slots=True)
class CachedFile:
    """A file as it was when hashed."""

    name: str
    size: int
    mtime_ns: int
    hashed_at_ns: int
    sha256: str

    def matches(self, size: int, mtime_ns: int) -> bool:
        """True if a file of this size and mtime may reuse the remembered hash."""
        return (
            self.size == size
            and self.mtime_ns == mtime_ns
            and mtime_ns + RACY_WINDOW_NS <= self.hashed_at_ns
        )


#: A remembered file as :meth:`FileStateCache.rows` gives it: size, mtime_ns,
#: hashed_at_ns, sha256 (the fields of :class:`CachedFile` after its name).
Remembered = tuple[int, int, int, str]


class FileStateCache:
    """The sidecar file: ``async with FileStateCache(path) as cache: ...``.

    One SQLite connection behind a lock, used directly by the scan's worker threads
    (:meth:`rows`, :meth:`remember`: blocking, thread-safe, one statement or one
    ``executemany`` each) so that checking a directory's files costs no thread hop of its
    own; the ``async`` methods run the same in a thread. Writes are grouped into
    transactions of :data:`COMMIT_EVERY` directories and committed on close. After a
    failure the cache is off (:attr:`enabled` False): lookups find nothing and updates
    are dropped.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._uncommitted = 0

    async def __aenter__(self) -> FileStateCache:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def enabled(self) -> bool:
        return self._conn is not None

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self._conn = self._connect()
                except sqlite3.DatabaseError as exc:
                    if _code(exc) not in (SQLITE_CORRUPT, SQLITE_NOTADB):
                        raise
                    logger.warning("scan cache %s is damaged (%s); starting afresh", self.path, exc)
                    self._remove_files()
                    self._conn = self._connect()
            except (OSError, sqlite3.Error) as exc:
                self._give_up("cannot be opened", exc)

    def _give_up(self, what: str, exc: BaseException) -> None:
        """Log once and turn the cache off (with the lock held)."""
        logger.warning(
            "scan cache %s %s (%s: %s); going on without it: every file is hashed",
            self.path,
            what,
            type(exc).__name__,
            exc,
        )
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _remove_files(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            conn.execute("PRAGMA synchronous=NORMAL")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version != FORMAT_VERSION:
                conn.execute("DROP TABLE IF EXISTS files")
                conn.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS files ("
                " dir TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,"
                " mtime_ns INTEGER NOT NULL, hashed_at_ns INTEGER NOT NULL,"
                " sha256 TEXT NOT NULL, PRIMARY KEY (dir, name)) WITHOUT ROWID"
            )
            conn.commit()
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        # Shielded: a cancelled scan still keeps what it hashed.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        with self._lock:
            conn = self._conn
            if conn is None:
                return
            try:
                conn.commit()
            except sqlite3.Error as exc:
                self._give_up("could not be saved", exc)
                return
            self._conn = None
            conn.close()

    async def files_in(self, directory: str) -> dict[str, CachedFile]:
        """What was remembered about the files of ``directory``, by name."""
        return await anyio.to_thread.run_sync(self.lookup, directory)

    async def update(
        self, directory: str, hashed: Iterable[CachedFile], gone: Iterable[str]
    ) -> None:
        """Remember newly hashed files of ``directory``; forget the ones ``gone``."""
        await anyio.to_thread.run_sync(self.remember, directory, hashed, gone)

    def lookup(self, directory: str) -> dict[str, CachedFile]:
        """:meth:`files_in`, blocking (from any thread)."""
        return {name: CachedFile(name, *row) for name, row in self.rows(directory).items()}

    def rows(self, directory: str) -> dict[str, Remembered]:
        """:meth:`lookup` as plain tuples, by name (blocking, from any thread)."""
        with self._lock:
            if self._conn is None:
                return {}
            try:
                rows = self._conn.execute(
                    "SELECT name, size, mtime_ns, hashed_at_ns, sha256 FROM files WHERE dir = ?",
                    (directory,),
                ).fetchall()
            except sqlite3.Error as exc:
                self._give_up("cannot be read", exc)
                return {}
        return {row[0]: row[1:] for row in rows}

    def remember(self, directory: str, hashed: Iterable[CachedFile], gone: Iterable[str]) -> None:
        """:meth:`update`, blocking (from any thread)."""
        rows = [(directory, f.name, f.size, f.mtime_ns, f.hashed_at_ns, f.sha256) for f in hashed]
        names = [(directory, name) for name in gone]
        with self._lock:
            if self._conn is None:
                return
            try:
                self._write(self._conn, rows, names)
            except sqlite3.Error as exc:
                self._give_up("cannot be written", exc)

    def _write(
        self,
        db: sqlite3.Connection,
        rows: list[tuple[str, str, int, int, int, str]],
        names: list[tuple[str, str]],
    ) -> None:
        if rows:
            db.executemany(
                "INSERT OR REPLACE INTO files (dir, name, size, mtime_ns, hashed_at_ns, sha256)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        if names:
            db.executemany("DELETE FROM files WHERE dir = ? AND name = ?", names)
        self._uncommitted += 1
        if self._uncommitted >= COMMIT_EVERY:
            self._uncommitted = 0
            db.commit()


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None
