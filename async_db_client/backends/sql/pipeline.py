"""The pipeline tier on any SQL engine: update requests, official sites, completions."""

from __future__ import annotations

from datetime import datetime

from ...errors import IntegrityError
from ...executor import Session
from ...models import PipelineUpdate, SiteCompletion
from ...paths import path_key
from .base import SQLStore, insert_returning_id

__all__ = ["SQLPipelineStore"]


class SQLPipelineStore(SQLStore):
    """``pipeline_updates``, ``pipeline_sites``, ``pipeline_completions`` in SQL tables."""

    tier = "pipeline"

    async def pending(self) -> list[PipelineUpdate]:
        d = self.dialect
        return [
            PipelineUpdate.trusted(
                update_id=int(row[0]),
                site_id=row[1],
                path=row[2],
                requested_at=d.from_db_time_required(row[3]),
                hash_value=row[4],
                answered_at=d.from_db_time(row[5]),
            )
            for row in await self._db.fetchall(d.pending_updates)
        ]

    async def answer(self, path: str, hash_value: str, now: datetime) -> bool:
        d = self.dialect
        result = await self._db.execute(
            d.answer_updates, (hash_value, d.to_db_time(now), path_key(path))
        )
        return result.rowcount > 0

    async def official_sites(self) -> list[str]:
        return [row[0] for row in await self._db.fetchall(self.dialect.official_sites)]

    async def complete(self, site: str, now: datetime) -> bool:
        d = self.dialect

        async def work(session: Session) -> bool:
            if await session.fetchone(d.official_site_exists, (site,)) is None:
                return False
            await session.execute(d.insert_completion, (site, d.to_db_time(now)))
            return True

        # Not retried after a lost reply: the completion could be recorded twice.
        return await self._db.run(work, transaction=True, retry=False)

    async def enqueue(self, path: str, site_id: str | None, now: datetime) -> int:
        d = self.dialect
        params = (site_id, path, path_key(path), d.to_db_time(now))
        # Not retried after a lost reply: the request could be queued twice.
        return await self._db.run(
            lambda s: insert_returning_id(s, d, d.insert_update, params), retry=False
        )

    async def register(self, site_id: str, now: datetime) -> bool:
        try:
            result = await self._db.execute(
                self.dialect.insert_site, (site_id, self.dialect.to_db_time(now))
            )
        except IntegrityError:
            return False
        # An engine whose failed statement would end the caller's transaction
        # (PostgreSQL) skips a known site instead (ON CONFLICT DO NOTHING): 0 rows.
        return result.rowcount != 0

    async def completions(self, site: str | None) -> list[SiteCompletion]:
        d = self.dialect
        sql = d.completions(one_site=site is not None)
        rows = await self._db.fetchall(sql, (site,) if site is not None else ())
        return [
            SiteCompletion.trusted(
                site_id=row[0], completed_at=d.from_db_time_required(row[1])
            )
            for row in rows
        ]
