"""One pool per distinct server and credentials, shared by every tier pointing there,
and the routers that choose among a tier's servers (see :mod:`async_db_client.routing`)
with their background work, all closed together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any

from .errors import PoolClosedError
from .pool import ConnectionPool, PoolStats

if TYPE_CHECKING:
    from .routing import Topology

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
        #: The routers of tiers with several hosts, by tier.
        self.topologies: dict[str, Topology] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

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

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``work`` in the background until it ends or the manager closes (a router's
        discovery): kept referenced, cancelled and awaited by :meth:`aclose`."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def stats(self) -> dict[str, PoolStats]:
        """Statistics of every pool, by pool name (a redacted URL of its target)."""
        return {pool.name: pool.get_stats() for pool in self._pools.values()}

    async def aclose(self) -> None:
        """Stop background work, then close every pool, newest first. Idempotent."""
        self._closed = True
        tasks = [task for task in self._tasks if not task.done()]
        for task in tasks:
            task.cancel()
        # Tasks of another loop (a client closed from elsewhere) are only cancelled.
        here = [t for t in tasks if t.get_loop() is asyncio.get_running_loop()]
        if here:
            await asyncio.gather(*here, return_exceptions=True)
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
        self._tasks.clear()  # the parent's loop: never run here
        for topology in self.topologies.values():
            topology.forget()
        self._closed = False
