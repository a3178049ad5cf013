"""How a record's path relates to its parent and to the key it is stored under.

Paths use ``/`` as the separator. A record's parent is the path up to its last ``/``
(trailing slashes ignored); the root ``/`` and paths with no ``/`` have no parent. Every
backend derives the parent and name here, at write time, so orphan and untracked-child
queries agree across engines and run in SQL on indexed columns.
"""

from __future__ import annotations

import hashlib

__all__ = ["join_child", "parent_and_name", "path_key"]


def path_key(path: str) -> str:
    """The fixed-size primary key of a path: SHA-256 of its UTF-8, as 64 hex digits."""
    return hashlib.sha256(path.encode("utf-8")).hexdigest()


def parent_and_name(path: str) -> tuple[str, str] | None:
    """``('/a/b', 'c')`` for ``'/a/b/c'``; ``('/', 'a')`` for ``'/a'``; None at a root."""
    trimmed = path.rstrip("/")
    if not trimmed:
        return None
    parent, sep, name = trimmed.rpartition("/")
    if not sep:
        return None
    return (parent or "/"), name


def join_child(parent: str, name: str) -> str:
    """The path of child ``name`` of ``parent`` (no doubled ``/`` below the root)."""
    return f"{parent}{name}" if parent.endswith("/") else f"{parent}/{name}"
