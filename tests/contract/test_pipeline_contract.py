"""The pipeline tier's contracts, on every backend."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from async_db_client import FakeClock, InvalidInputError
from async_db_client.tiers import PipelineRepository

pytestmark = pytest.mark.asyncio


async def test_updates_are_pending_until_answered(
    pipeline: PipelineRepository, clock: FakeClock
) -> None:
    first = await pipeline.enqueue_pipeline_update("/data/a", "site-1")
    clock.advance(10)
    second = await pipeline.enqueue_pipeline_update("/data/b")
    clock.advance(10)
    third = await pipeline.enqueue_pipeline_update("/data/a", "site-2")
    pending = await pipeline.get_pipeline_updates()
    assert [u.update_id for u in pending] == [first, second, third]
    assert pending[0].model_dump() == {
        "update_id": first,
        "site_id": "site-1",
        "path": "/data/a",
        "requested_at": clock.now() - timedelta(seconds=20),
        "hash_value": None,
        "answered_at": None,
    }
    assert pending[1]["site_id"] is None
    clock.advance(5)
    assert await pipeline.put_pipeline_hash("/data/a", "abc123") is True
    assert [u.update_id for u in await pipeline.get_pipeline_updates()] == [second]
    assert await pipeline.put_pipeline_hash("/data/a", "again") is False


async def test_put_pipeline_hash_rejects_bad_input(
    pipeline: PipelineRepository, caplog: pytest.LogCaptureFixture
) -> None:
    await pipeline.enqueue_pipeline_update("/p")
    with caplog.at_level(logging.ERROR, logger="async_db_client"):
        assert await pipeline.put_pipeline_hash("/p", "two words") is False
        assert await pipeline.put_pipeline_hash("", "h") is False
        assert await pipeline.put_pipeline_hash("/p", "x" * 129) is False
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 3
    assert len(await pipeline.get_pipeline_updates()) == 1
    assert await pipeline.put_pipeline_hash("/nothing-pending", "h") is False


async def test_official_sites_and_completions(
    pipeline: PipelineRepository, clock: FakeClock
) -> None:
    assert await pipeline.get_official_sites() == []
    assert await pipeline.register_official_site("site-b") is True
    assert await pipeline.register_official_site("site-a") is True
    assert await pipeline.register_official_site("site-a") is False
    assert await pipeline.get_official_sites() == ["site-a", "site-b"]
    assert await pipeline.put_pipeline_site_completion("site-a") is True
    first = clock.now()
    clock.advance(60)
    assert await pipeline.put_pipeline_site_completion("site-b") is True
    assert await pipeline.put_pipeline_site_completion("site-a") is True
    assert await pipeline.put_pipeline_site_completion("unknown") is False
    assert await pipeline.put_pipeline_site_completion("") is False
    done = await pipeline.get_pipeline_site_completions()
    assert [(c.site_id, c.completed_at) for c in done] == [
        ("site-a", first),
        ("site-b", clock.now()),
        ("site-a", clock.now()),
    ]
    assert len(await pipeline.get_pipeline_site_completions("site-a")) == 2
    with pytest.raises(InvalidInputError):
        await pipeline.register_official_site("x" * 65)


async def test_enqueue_validates(pipeline: PipelineRepository) -> None:
    with pytest.raises(InvalidInputError):
        await pipeline.enqueue_pipeline_update("")
    with pytest.raises(InvalidInputError):
        await pipeline.enqueue_pipeline_update("/p\x00")
    long_unicode = "/" + "é" * 2047  # 4095 bytes
    update_id = await pipeline.enqueue_pipeline_update(long_unicode)
    [pending] = await pipeline.get_pipeline_updates()
    assert (pending.update_id, pending.path) == (update_id, long_unicode)


async def test_pipeline_health_and_transaction(pipeline: PipelineRepository) -> None:
    assert await pipeline.pipeline_health_check() == {"pipeline_db": True}
    with pytest.raises(RuntimeError):
        async with pipeline.transaction() as tx:
            await tx.register_official_site("rolled-back")
            raise RuntimeError
    assert await pipeline.get_official_sites() == []
