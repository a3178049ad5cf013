"""The core tier on any SQL engine: sites, baselines, central logs, the dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...executor import Session
from ...models import DashboardMetrics, LogEntry, LogLevel, SiteStatus
from ...tiers.core import LIVE_CURRENT_WINDOW, SYNC_RECENT_WINDOW
from .base import SQLStore, insert_returning_id

__all__ = ["SQLCoreStore"]

NO_BASELINE = " "  # hashes never contain whitespace, so this matches no site


class SQLCoreStore(SQLStore):
    """``core_sites``, ``core_baselines`` and ``core_logs`` in SQL tables."""

    tier = "core"

    async def dashboard(self, now: datetime) -> DashboardMetrics:
        d = self.dialect
        day_ago = d.to_db_time(now - SYNC_RECENT_WINDOW)
        live_cutoff = d.to_db_time(now - LIVE_CURRENT_WINDOW)

        async def work(session: Session) -> tuple[list[Any], int]:
            baselines = [row[0] for row in await session.fetchall(d.newest_baselines())]
            newest = baselines[0] if baselines else NO_BASELINE
            previous = baselines[1] if len(baselines) > 1 else NO_BASELINE
            buckets = await session.fetchall(
                d.dashboard_buckets,
                (1 if baselines else 0, newest, previous, day_ago, live_cutoff, day_ago),
            )
            crit = await session.fetchone(d.count_logs("core"), (LogLevel.CRITICAL.value, day_ago))
            return buckets, int(crit[0]) if crit else 0

        buckets, crit = await self._db.run(work)
        counts = dict.fromkeys(DashboardMetrics.model_fields, 0)
        for sync_bucket, live_bucket, sites, high, low in buckets:
            counts[sync_bucket] += int(sites)
            counts[live_bucket] += int(sites)
            counts["hash_record_count"] += _exact_sum(high, low)
        counts["live_l24_behind"] = counts["live_current"] + counts["live_1_behind"]
        counts["crit_error_count"] = crit
        return DashboardMetrics(**counts)

    async def logs_since(self, since: datetime) -> list[LogEntry]:
        d = self.dialect
        sql = d.select_logs("core", by_session=False, older=False, since=True)
        rows = await self._db.fetchall(sql, (d.to_db_time(since),))
        return [self._log_entry(row) for row in rows]

    async def record_count(self) -> int:
        row = await self._db.fetchone(self.dialect.record_count)
        return 0 if row is None else _exact_sum(row[0], row[1])

    async def count_logs(self, level: LogLevel, since: datetime) -> int:
        d = self.dialect
        row = await self._db.fetchone(d.count_logs("core"), (level.value, d.to_db_time(since)))
        return int(row[0]) if row else 0

    async def sites(self) -> list[SiteStatus]:
        d = self.dialect
        return [
            SiteStatus.trusted(
                site_id=row[0],
                last_heartbeat=d.from_db_time(row[1]),
                root_hash=row[2],
                root_hash_at=d.from_db_time(row[3]),
                hash_record_count=int(row[4]),
            )
            for row in await self._db.fetchall(d.select_sites)
        ]

    async def heartbeat(self, site_id: str, now: datetime, count: int | None) -> None:
        d = self.dialect
        params: tuple[Any, ...] = (site_id, d.to_db_time(now))
        if count is not None:
            params += (count,)
        await self._db.execute(d.upsert_heartbeat(with_count=count is not None), params)

    async def root_hash(self, site_id: str, root_hash: str, when: datetime) -> None:
        d = self.dialect
        await self._db.execute(d.upsert_root_hash(), (site_id, root_hash, d.to_db_time(when)))

    async def add_baseline(self, baseline_hash: str, when: datetime) -> int:
        d = self.dialect
        params = (baseline_hash, d.to_db_time(when))
        # Not retried: a retry after a lost reply could publish the baseline twice, which
        # would make it both the newest and the second-newest.
        return await self._db.run(
            lambda s: insert_returning_id(s, d, d.insert_baseline, params), retry=False
        )


def _exact_sum(high: Any, low: Any) -> int:
    """The sum the dialect's ``count_sums`` split in two (NULL: no rows)."""
    return (int(high or 0) << 32) + int(low or 0)
