"""In-memory pipeline tier (config type ``local``): update requests, sites, completions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ...models import PipelineUpdate, SiteCompletion
from .base import MemoryStoreBase, Sequence

__all__ = ["MemoryPipelineStore"]


@dataclass
class PipelineState:
    updates: dict[int, PipelineUpdate] = field(default_factory=dict)
    sites: dict[str, datetime] = field(default_factory=dict)
    completions: list[SiteCompletion] = field(default_factory=list)
    update_ids: Sequence = field(default_factory=Sequence)

    def copy(self) -> PipelineState:
        return PipelineState(
            dict(self.updates), dict(self.sites), list(self.completions), self.update_ids
        )


class MemoryPipelineStore(MemoryStoreBase[PipelineState]):
    """The pipeline tier in memory; same contracts as the SQL Server backend."""

    state_class = PipelineState

    async def pending(self) -> list[PipelineUpdate]:
        with self.reading() as state:
            pending = [u for u in state.updates.values() if u.hash_value is None]
        return sorted(pending, key=lambda u: (u.requested_at, u.update_id))

    async def answer(self, path: str, hash_value: str, now: datetime) -> bool:
        async with self.writing() as state:
            pending = [u for u in state.updates.values() if u.path == path and u.hash_value is None]
            for update in pending:
                state.updates[update.update_id] = update.model_copy(
                    update={"hash_value": hash_value, "answered_at": now}
                )
            return bool(pending)

    async def official_sites(self) -> list[str]:
        with self.reading() as state:
            return sorted(state.sites)

    async def complete(self, site: str, now: datetime) -> bool:
        async with self.writing() as state:
            if site not in state.sites:
                return False
            state.completions.append(SiteCompletion(site_id=site, completed_at=now))
            return True

    async def enqueue(self, path: str, site_id: str | None, now: datetime) -> int:
        async with self.writing() as state:
            update_id = state.update_ids.take()
            state.updates[update_id] = PipelineUpdate(
                update_id=update_id, site_id=site_id, path=path, requested_at=now
            )
            return update_id

    async def register(self, site_id: str, now: datetime) -> bool:
        async with self.writing() as state:
            if site_id in state.sites:
                return False
            state.sites[site_id] = now
            return True

    async def completions(self, site: str | None) -> list[SiteCompletion]:
        with self.reading() as state:
            rows = [
                (c.completed_at, n, c)
                for n, c in enumerate(state.completions)
                if site is None or c.site_id == site
            ]
        return [c for _, _, c in sorted(rows, key=lambda row: row[:2])]
