"""The pipeline tier: update requests to answer with hashes, official sites, completions.

:class:`PipelineRepository` is the contract; :class:`PipelineStore` is what a backend
implements (SQL Server in production, SQLite, or in memory).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from ..errors import InvalidInputError
from ..models import PipelineUpdate, SiteCompletion
from ..validation import check_hash_arg, check_path_arg, check_site_arg
from .base import Repository, Store

__all__ = ["PipelineRepository", "PipelineStore"]

logger = logging.getLogger("async_db_client")


class PipelineStore(Store, Protocol):
    """The primitives of a pipeline-tier backend (arguments validated, times in UTC)."""

    async def pending(self) -> list[PipelineUpdate]:
        """Unanswered requests, oldest first (ties by id)."""
        ...

    async def answer(self, path: str, hash_value: str, now: datetime) -> bool:
        """Answer every pending request for ``path``; False if none was pending."""
        ...

    async def official_sites(self) -> list[str]: ...

    async def complete(self, site: str, now: datetime) -> bool:
        """Record a completion of ``site``; False (nothing stored) if it is not official."""
        ...

    async def enqueue(self, path: str, site_id: str | None, now: datetime) -> int: ...

    async def register(self, site_id: str, now: datetime) -> bool:
        """Make ``site_id`` official; False if it already was."""
        ...

    async def completions(self, site: str | None) -> list[SiteCompletion]: ...


class PipelineRepository(Repository[PipelineStore]):
    """Update requests to answer with hashes, official sites, completions."""

    tier = "pipeline"
    health_key = "pipeline_db"

    async def get_pipeline_updates(self) -> list[PipelineUpdate]:
        """Pending (unanswered) update requests, oldest first."""
        with self._logged("get_pipeline_updates"):
            return await self.store.pending()

    async def put_pipeline_hash(self, update_path: str, hash_value: str) -> bool:
        """Answer every pending request for ``update_path`` with ``hash_value``.

        Returns True if at least one request was answered; False (logged) when none was
        pending or the hash is invalid.
        """
        try:
            update_path = check_path_arg(update_path, "update_path")
            hash_value = check_hash_arg(hash_value, "hash_value")
        except InvalidInputError as exc:
            logger.error("pipeline.put_pipeline_hash rejected its input: %s", exc)
            return False
        with self._logged("put_pipeline_hash"):
            answered = await self.store.answer(update_path, hash_value, self._now())
        if not answered:
            logger.warning("pipeline.put_pipeline_hash: no pending request for that path")
        return answered

    async def get_official_sites(self) -> list[str]:
        """Identifiers of the official sites, sorted."""
        with self._logged("get_official_sites"):
            return await self.store.official_sites()

    async def put_pipeline_site_completion(self, site: str) -> bool:
        """Record that official site ``site`` completed now; False if not official/invalid."""
        try:
            site = check_site_arg(site, "site")
        except InvalidInputError as exc:
            logger.error("pipeline.put_pipeline_site_completion rejected its input: %s", exc)
            return False
        with self._logged("put_pipeline_site_completion"):
            done = await self.store.complete(site, self._now())
        if not done:
            logger.warning("pipeline.put_pipeline_site_completion: not an official site")
        return done

    async def enqueue_pipeline_update(self, path: str, site_id: str | None = None) -> int:
        """Queue an update request for ``path`` (optionally for a site); its id."""
        path = check_path_arg(path)
        if site_id is not None:
            site_id = check_site_arg(site_id)
        with self._logged("enqueue_pipeline_update"):
            return await self.store.enqueue(path, site_id, self._now())

    async def register_official_site(self, site_id: str) -> bool:
        """Make ``site_id`` official; False if it already was."""
        site_id = check_site_arg(site_id)
        with self._logged("register_official_site"):
            return await self.store.register(site_id, self._now())

    async def get_pipeline_site_completions(self, site: str | None = None) -> list[SiteCompletion]:
        """Completion records (of one site, or all), oldest first."""
        if site is not None:
            site = check_site_arg(site, "site")
        with self._logged("get_pipeline_site_completions"):
            return await self.store.completions(site)

    async def pipeline_health_check(self) -> dict[str, bool]:
        """``{'pipeline_db': True}`` if the database answers, else False (never raises)."""
        return await self.health_check()
