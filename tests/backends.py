"""The backends the contract suites run against; a new engine is one more entry here.

Each backend hands out fresh, empty repositories on a given clock. Live backends
register themselves in later modules (``tests/live.py``) and are skipped or failed,
according to ``CI``, when their server is unreachable.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from async_db_client import FakeClock
from async_db_client.backends.memory_core import MemoryCoreRepository
from async_db_client.backends.memory_pipeline import MemoryPipelineRepository
from async_db_client.backends.memory_remote import MemoryRemoteRepository
from async_db_client.interfaces import CoreRepository, PipelineRepository, RemoteRepository


class Backend:
    """Makes empty repositories of one engine. Subclasses override what they support."""

    name = "?"
    tiers: tuple[str, ...] = ()
    marks: tuple[Any, ...] = ()

    def remote(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[RemoteRepository]:
        raise NotImplementedError

    def core(self, clock: FakeClock) -> contextlib.AbstractAsyncContextManager[CoreRepository]:
        raise NotImplementedError

    def pipeline(
        self, clock: FakeClock
    ) -> contextlib.AbstractAsyncContextManager[PipelineRepository]:
        raise NotImplementedError


class MemoryBackend(Backend):
    name = "memory"
    tiers = ("remote", "core", "pipeline")

    @contextlib.asynccontextmanager
    async def remote(self, clock: FakeClock) -> AsyncIterator[RemoteRepository]:
        yield MemoryRemoteRepository(clock=clock)

    @contextlib.asynccontextmanager
    async def core(self, clock: FakeClock) -> AsyncIterator[CoreRepository]:
        yield MemoryCoreRepository(clock=clock)

    @contextlib.asynccontextmanager
    async def pipeline(self, clock: FakeClock) -> AsyncIterator[PipelineRepository]:
        yield MemoryPipelineRepository(clock=clock)


#: Every backend, by name. Live backends are appended by their own modules.
BACKENDS: list[Callable[[], Backend]] = [MemoryBackend]
