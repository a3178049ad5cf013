"""In-memory core tier (config type ``local``): sites, baselines and central logs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ...models import DashboardMetrics, LogEntry, LogLevel, SiteStatus
from ...tiers.core import LIVE_CURRENT_WINDOW, SYNC_RECENT_WINDOW
from .base import LogTable, MemoryStoreBase, Sequence

__all__ = ["MemoryCoreStore"]


@dataclass
class CoreState:
    sites: dict[str, SiteStatus] = field(default_factory=dict)
    baselines: list[tuple[datetime, int, str]] = field(default_factory=list)
    logs: LogTable = field(default_factory=LogTable)
    baseline_ids: Sequence = field(default_factory=Sequence)

    def copy(self) -> CoreState:
        return CoreState(
            dict(self.sites), list(self.baselines), self.logs.copy(), self.baseline_ids
        )


class MemoryCoreStore(MemoryStoreBase[CoreState]):
    """The core tier in memory; same contracts as the SQL backends."""

    state_class = CoreState

    async def dashboard(self, now: datetime) -> DashboardMetrics:
        with self.reading() as state:  # one consistent view, as one SQL transaction has
            return _dashboard(state, now)

    async def logs_since(self, since: datetime) -> list[LogEntry]:
        with self.reading() as state:
            logs = state.logs.entries.values()
            entries = [e for e in logs if e.timestamp and e.timestamp >= since]
        entries.sort(key=lambda e: (e.timestamp, e.log_id), reverse=True)
        return entries

    async def record_count(self) -> int:
        with self.reading() as state:
            return _record_count(state)

    async def count_logs(self, level: LogLevel, since: datetime) -> int:
        with self.reading() as state:
            return _count_logs(state, level, since)

    async def sites(self) -> list[SiteStatus]:
        with self.reading() as state:
            return [site for _, site in sorted(state.sites.items())]

    def _site(self, state: CoreState, site_id: str) -> SiteStatus:
        return state.sites.get(site_id) or SiteStatus(site_id=site_id)

    async def heartbeat(self, site_id: str, now: datetime, count: int | None) -> None:
        async with self.writing() as state:
            site = self._site(state, site_id)
            update: dict[str, object] = {"last_heartbeat": now}
            if count is not None:
                update["hash_record_count"] = count
            state.sites[site_id] = site.model_copy(update=update)

    async def root_hash(self, site_id: str, root_hash: str, when: datetime) -> None:
        async with self.writing() as state:
            site = self._site(state, site_id)
            state.sites[site_id] = site.model_copy(
                update={"root_hash": root_hash, "root_hash_at": when}
            )

    async def add_baseline(self, baseline_hash: str, when: datetime) -> int:
        async with self.writing() as state:
            baseline_id = state.baseline_ids.take()
            state.baselines.append((when, baseline_id, baseline_hash))
            return baseline_id

    async def insert_log(self, entry: LogEntry, key: str) -> int:
        async with self.writing() as state:
            return state.logs.insert(entry, key)


def _dashboard(state: CoreState, now: datetime) -> DashboardMetrics:
    ordered = sorted(state.baselines)
    newest = ordered[-1][2] if ordered else None
    previous = ordered[-2][2] if len(ordered) > 1 else None
    counts = dict.fromkeys(DashboardMetrics.model_fields, 0)
    for site in state.sites.values():
        if site.root_hash is None or newest is None:
            counts["sync_unknown"] += 1
        elif site.root_hash == newest:
            counts["sync_current"] += 1
        elif site.root_hash == previous:
            counts["sync_1_behind"] += 1
        elif site.root_hash_at is not None and now - site.root_hash_at <= SYNC_RECENT_WINDOW:
            counts["sync_l24_behind"] += 1
        else:
            counts["sync_g24_behind"] += 1
        seen = site.last_heartbeat
        if seen is None or now - seen > SYNC_RECENT_WINDOW:
            counts["live_inactive"] += 1
        elif now - seen <= LIVE_CURRENT_WINDOW:
            counts["live_current"] += 1
        else:
            counts["live_1_behind"] += 1
    counts["live_l24_behind"] = counts["live_current"] + counts["live_1_behind"]
    counts["crit_error_count"] = _count_logs(state, LogLevel.CRITICAL, now - SYNC_RECENT_WINDOW)
    counts["hash_record_count"] = _record_count(state)
    return DashboardMetrics(**counts)


def _record_count(state: CoreState) -> int:
    return sum(site.hash_record_count for site in state.sites.values())


def _count_logs(state: CoreState, level: LogLevel, since: datetime) -> int:
    return sum(
        1
        for e in state.logs.entries.values()
        if e.log_level == level and e.timestamp is not None and e.timestamp >= since
    )
