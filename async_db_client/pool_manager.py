"""One pool per distinct server and credentials, shared by every tier pointing there."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

from .errors import PoolClosedError
from .pool import ConnectionPool, PoolStats

__all__ = ["PoolManager", "PoolStats"]

logger = logging.getLogger("async_db_client.pool")


class PoolManager:
    """Owns a client's pools: created on first use, closed together by :meth:`aclose`.

    Pools are keyed by everything that makes a connection different (engine, server,
    port, database, user, a digest of the password, TLS and pool settings), so two tiers
    configured for the same database share one pool.
    """

    def __init__(self) -> None:
        self._pools: dict[Hashable, ConnectionPool[Any]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<PoolManager pools={len(self._pools)}{' closed' if self._closed else ''}>"

    def get(
        self, key: Hashable, create: Callable[[str], ConnectionPool[Any]], name: str
    ) -> ConnectionPool[Any]:
        """The pool for ``key``, made with ``create(unique_name)`` the first time."""
        pool = self._pools.get(key)
        if pool is None:
            if self._closed:
                raise PoolClosedError("the client is closed")
            taken = {p.name for p in self._pools.values()}
            unique, n = name, 1
            while unique in taken:
                n += 1
                unique = f"{name}#{n}"
            pool = self._pools[key] = create(unique)
        return pool

    def stats(self) -> dict[str, PoolStats]:
        """Statistics of every pool, by pool name (a redacted URL of its target)."""
        return {pool.name: pool.get_stats() for pool in self._pools.values()}

    async def aclose(self) -> None:
        """Close every pool, newest first. Idempotent."""
        self._closed = True
        for pool in reversed(list(self._pools.values())):
            try:
                await pool.aclose()
            except Exception:  # closing must go on for the other pools
                logger.exception("closing pool %s failed", pool.name)

    def forget(self) -> None:
        """Drop every pool without closing its sockets (after ``fork()``, in the child).

        The manager stays usable: the next call opens fresh pools.
        """
        for pool in self._pools.values():
            pool.forget()
        self._pools.clear()
        self._closed = False
