"""The hashes the scanner computes: file contents, and a Merkle hash per directory.

Definitions (all hashes are lower-case hex SHA-256):

* **file**: ``SHA-256(contents)``, read in a stream (never the whole file in memory).
* **directory**: ``SHA-256(entry(c1) || entry(c2) || ...)`` over the directory's children
  ``c1, c2, ...`` sorted by name in code point order (the byte order of their UTF-8),
  where ``||`` is concatenation and::

      entry(c) = kind(c) NUL name(c) NUL value(c) NUL      (NUL is the byte 0x00)

  ``kind`` is ``d`` (directory), ``f`` (regular file) or ``l`` (symbolic link);
  ``value`` is the child directory's hash, the file's hash, or the link's target as
  stored in the link (``os.readlink``; links are never followed). A child that could
  not be read has the value ``unreadable``. Names, targets and hashes never contain
  NUL, so the encoding is unambiguous. An empty directory hashes to ``SHA-256("")``.

  Everything is UTF-8; a link target that is not valid UTF-8 is taken as its raw bytes
  (``os.fsencode``). A directory's own name is not part of its hash, so identical trees
  have identical hashes wherever they are.

The children hashed are exactly the ones the directory's hash record lists in ``dirs``,
``files`` and ``links``: entries the scanner leaves out (excluded by pattern, names that
are not valid Unicode, sockets, FIFOs and devices) are in neither.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "UNREADABLE",
    "Child",
    "Entry",
    "FileDigest",
    "directory_hash",
    "hash_file",
    "sorted_entries_hash",
]

#: The value of a child that could not be read (never a valid SHA-256 hex digest).
UNREADABLE = "unreadable"

Kind = Literal["d", "f", "l"]

# Never follow a link swapped in after listing; never block opening a FIFO swapped in.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


@dataclass(frozen=True, slots=True)
class Child:
    """One entry of a directory, as it enters the directory's hash."""

    kind: Kind
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class FileDigest:
    """A file's hash, and its size and mtime as read from the open file."""

    sha256: str
    size: int
    mtime_ns: int
    #: False if the file changed while it was read (the hash may mix two versions).
    stable: bool


def hash_file(path: str) -> FileDigest:
    """Hash a regular file's contents in a stream (blocking: run it in a thread).

    Raises ``OSError`` if it cannot be read, or is no longer a regular file.
    """
    fd = os.open(path, _OPEN_FLAGS)
    with open(fd, "rb", buffering=0) as handle:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise OSError(f"not a regular file any more: {path}")
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
        after = os.fstat(fd)
    stable = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    return FileDigest(digest, after.st_size, after.st_mtime_ns, stable)


def directory_hash(children: Iterable[Child]) -> str:
    """The Merkle hash of a directory with these children (see the module docstring)."""
    ordered = sorted(children, key=lambda c: c.name)
    return sorted_entries_hash((c.name, c.kind, c.value) for c in ordered)


#: A child as the scanner carries it: (name, kind, value). Names are unique within a
#: directory, so sorting these tuples sorts by name.
Entry = tuple[str, Kind, str]


def sorted_entries_hash(entries: Iterable[Entry]) -> str:
    """:func:`directory_hash` of children given as :data:`Entry` tuples, already sorted
    by name (one ``update`` call; the bytes hashed are exactly the definition's)."""
    parts = [
        # kind, hashes and names are valid Unicode; a link's target may hold raw bytes.
        b"l\0%s\0%s\0" % (name.encode(), os.fsencode(value))
        if kind == "l"
        else f"{kind}\0{name}\0{value}\0".encode()
        for name, kind, value in entries
    ]
    return hashlib.sha256(b"".join(parts)).hexdigest()
