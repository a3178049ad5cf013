"""The core tier (central): every site's liveness and sync state, baselines, central logs.

:class:`CoreRepository` is the contract (the dashboard rules below are stated once, here,
and kept by every backend); :class:`CoreStore` is what a backend implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

from ..errors import InvalidInputError
from ..models import DashboardMetrics, LogEntry, LogLevel, SiteStatus, as_utc
from ..validation import check_choice, check_hash_arg, check_non_negative_int, check_site_arg
from .base import LogStore, Repository

__all__ = [
    "LIVE_CURRENT_WINDOW",
    "RECENT_LOG_WINDOW",
    "SYNC_RECENT_WINDOW",
    "CoreRepository",
    "CoreStore",
]

#: A heartbeat this recent makes a site ``live_current``.
LIVE_CURRENT_WINDOW = timedelta(minutes=35)
#: A heartbeat this recent (but older than 35 min) makes a site ``live_1_behind``; a site
#: whose root hash was computed this recently and matches no baseline is ``sync_l24_behind``.
SYNC_RECENT_WINDOW = timedelta(hours=24)
#: ``get_recent_logs`` returns this much history.
RECENT_LOG_WINDOW = timedelta(days=30)


class CoreStore(LogStore, Protocol):
    """The primitives of a core-tier backend (arguments validated, times in UTC)."""

    async def dashboard(self, now: datetime) -> DashboardMetrics:
        """The counters by the rules of :class:`CoreRepository`, as of ``now``."""
        ...

    async def logs_since(self, since: datetime) -> list[LogEntry]:
        """Central log entries at or after ``since``, newest first."""
        ...

    async def record_count(self) -> int: ...

    async def count_logs(self, level: LogLevel, since: datetime) -> int: ...

    async def sites(self) -> list[SiteStatus]: ...

    async def heartbeat(self, site_id: str, now: datetime, count: int | None) -> None: ...

    async def root_hash(self, site_id: str, root_hash: str, when: datetime) -> None: ...

    async def add_baseline(self, baseline_hash: str, when: datetime) -> int: ...


class CoreRepository(Repository[CoreStore]):
    """The central tier: every site's liveness and sync state, baselines, central logs.

    Dashboard rules, with ``now`` from the clock:

    * sync: no root hash or no baseline -> ``sync_unknown``; root hash equals the newest
      baseline -> ``sync_current``; equals the one before -> ``sync_1_behind``; otherwise
      ``sync_l24_behind`` if the root hash was computed within 24 h, else
      ``sync_g24_behind``.
    * liveness by last heartbeat: within 35 min (inclusive) -> ``live_current``; within
      24 h -> ``live_1_behind``; older or never -> ``live_inactive``;
      ``live_l24_behind`` = ``live_current + live_1_behind`` (sites seen within 24 h).
    * ``crit_error_count``: CRITICAL central logs in the last 24 h;
      ``hash_record_count``: the sum of the counts the sites last reported.

    Baselines are ordered by ``created_at``, then by insertion.
    """

    tier = "core"
    health_key = "core_db"

    async def get_dashboard_content(self) -> DashboardMetrics:
        """The eleven dashboard counters; every site in one sync and one live bucket."""
        with self._logged("get_dashboard_content"):
            return await self.store.dashboard(self._now())

    async def get_recent_logs(self) -> list[LogEntry]:
        """Central log entries of the last 30 days, newest first."""
        with self._logged("get_recent_logs"):
            return await self.store.logs_since(self._now() - RECENT_LOG_WINDOW)

    async def get_hash_record_count(self) -> int:
        """Total hash records over all sites, as last reported in their heartbeats."""
        with self._logged("get_hash_record_count"):
            return await self.store.record_count()

    async def get_log_count_last_24h(self, log_level: str) -> int:
        """How many central log entries of ``log_level`` (any case) in the last 24 h."""
        level = LogLevel(check_choice(log_level, "log_level", list(LogLevel), fold_case=True))
        with self._logged("get_log_count_last_24h"):
            return await self.store.count_logs(level, self._now() - SYNC_RECENT_WINDOW)

    async def get_sites(self) -> list[SiteStatus]:
        """Every known site's status, sorted by site id."""
        with self._logged("get_sites"):
            return await self.store.sites()

    async def put_site_heartbeat(
        self, site_id: str, *, hash_record_count: int | None = None
    ) -> None:
        """Record that ``site_id`` is alive now (registering it if new).

        ``hash_record_count``, if given, replaces the site's reported record count.
        """
        site_id = check_site_arg(site_id)
        count = check_non_negative_int(hash_record_count, "hash_record_count", allow_none=True)
        with self._logged("put_site_heartbeat"):
            await self.store.heartbeat(site_id, self._now(), count)

    async def put_site_root_hash(
        self, site_id: str, root_hash: str, *, computed_at: datetime | None = None
    ) -> None:
        """Record the root hash a site computed (at ``computed_at``, default now)."""
        site_id = check_site_arg(site_id)
        root_hash = check_hash_arg(root_hash, "root_hash")
        when = _utc_arg(computed_at, "computed_at") or self._now()
        with self._logged("put_site_root_hash"):
            await self.store.root_hash(site_id, root_hash, when)

    async def put_baseline(self, baseline_hash: str, *, created_at: datetime | None = None) -> int:
        """Publish a new baseline hash (the newest becomes the sync reference); its id."""
        baseline_hash = check_hash_arg(baseline_hash, "baseline_hash")
        when = _utc_arg(created_at, "created_at") or self._now()
        with self._logged("put_baseline"):
            return await self.store.add_baseline(baseline_hash, when)

    async def put_core_log(
        self, args_dict: Mapping[str, Any] | LogEntry, *, idempotency_key: str | None = None
    ) -> int | None:
        """Store a central log entry (same rules as the remote ``put_log``)."""
        return await self._put_log(self.store, "put_core_log", args_dict, idempotency_key)


def _utc_arg(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{name} must be a datetime", field=name)
    try:
        return as_utc(value)
    except ValueError as exc:
        raise InvalidInputError(f"{name} {exc}", field=name) from None
