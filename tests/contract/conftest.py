"""Contract fixtures: ``remote``, ``core`` and ``pipeline`` run once per backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from async_db_client import FakeClock
from async_db_client.tiers import CoreRepository, PipelineRepository, RemoteRepository
from tests.support.backends import BACKENDS, Backend


def _params(tier: str) -> list[object]:
    params = []
    for make in BACKENDS:
        backend = make()
        if tier in backend.tiers:
            params.append(pytest.param(backend, id=backend.name, marks=backend.marks))
    return params


@pytest.fixture(params=_params("remote"))
def remote_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    backend.setup(request)
    return backend


@pytest.fixture(params=_params("core"))
def core_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    backend.setup(request)
    return backend


@pytest.fixture(params=_params("pipeline"))
def pipeline_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.param
    backend.setup(request)
    return backend


@pytest_asyncio.fixture
async def remote(remote_backend: Backend, clock: FakeClock) -> AsyncIterator[RemoteRepository]:
    async with remote_backend.remote(clock) as repo:
        yield repo


@pytest_asyncio.fixture
async def core(core_backend: Backend, clock: FakeClock) -> AsyncIterator[CoreRepository]:
    async with core_backend.core(clock) as repo:
        yield repo


@pytest_asyncio.fixture
async def pipeline(
    pipeline_backend: Backend, clock: FakeClock
) -> AsyncIterator[PipelineRepository]:
    async with pipeline_backend.pipeline(clock) as repo:
        yield repo
