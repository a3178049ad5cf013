"""The core tier's contracts (dashboard buckets, central logs), on every backend."""

from __future__ import annotations

from datetime import timedelta

import pytest

from async_db_client import DashboardMetrics, FakeClock, InvalidInputError
from async_db_client.tiers import CoreRepository

pytestmark = pytest.mark.asyncio

ZERO = dict.fromkeys(DashboardMetrics.model_fields, 0)


def metrics(**counts: int) -> dict[str, int]:
    return {**ZERO, **counts}


async def test_empty_dashboard(core: CoreRepository) -> None:
    dashboard = await core.get_dashboard_content()
    assert dashboard.model_dump() == ZERO
    assert dashboard["crit_error_count"] == 0
    assert list(dashboard.keys()) == [
        "crit_error_count",
        "hash_record_count",
        "sync_current",
        "sync_1_behind",
        "sync_l24_behind",
        "sync_g24_behind",
        "sync_unknown",
        "live_current",
        "live_1_behind",
        "live_l24_behind",
        "live_inactive",
    ]


async def test_sync_buckets(core: CoreRepository, clock: FakeClock) -> None:
    start = clock.now()
    await core.put_baseline("B0", created_at=start - timedelta(days=3))
    await core.put_baseline("B1", created_at=start - timedelta(days=2))
    await core.put_baseline("B2", created_at=start - timedelta(days=1))
    await core.put_site_root_hash("current", "B2")
    await core.put_site_root_hash("one-behind", "B1")
    await core.put_site_root_hash(
        "two-behind-recent", "B0", computed_at=start - timedelta(hours=24)
    )
    await core.put_site_root_hash("stale", "B0", computed_at=start - timedelta(hours=24, seconds=1))
    await core.put_site_root_hash("other-recent", "XX", computed_at=start - timedelta(hours=1))
    await core.put_site_heartbeat("no-hash")
    dashboard = await core.get_dashboard_content()
    assert dashboard.model_dump() == metrics(
        sync_current=1,
        sync_1_behind=1,
        sync_l24_behind=2,
        sync_g24_behind=1,
        sync_unknown=1,
        live_current=1,
        live_l24_behind=1,
        live_inactive=5,  # only "no-hash" sent a heartbeat
    )


async def test_no_baseline_makes_every_site_unknown(core: CoreRepository) -> None:
    await core.put_site_root_hash("a", "H")
    await core.put_site_root_hash("b", "H")
    assert (await core.get_dashboard_content()).sync_unknown == 2


async def test_newest_baseline_is_by_creation_time_then_insertion(
    core: CoreRepository, clock: FakeClock
) -> None:
    now = clock.now()
    await core.put_baseline("LATE", created_at=now)
    await core.put_baseline("EARLY", created_at=now - timedelta(hours=5))  # inserted after
    await core.put_site_root_hash("s", "LATE")
    assert (await core.get_dashboard_content()).sync_current == 1
    await core.put_baseline("SAME-TIME", created_at=now)  # ties: the later insert is newer
    dashboard = await core.get_dashboard_content()
    assert (dashboard.sync_current, dashboard.sync_1_behind) == (0, 1)


async def test_liveness_buckets_and_boundaries(core: CoreRepository, clock: FakeClock) -> None:
    start = clock.now()
    ages = {
        "now": timedelta(0),
        "35m": timedelta(minutes=35),
        "35m1s": timedelta(minutes=35, seconds=1),
        "24h": timedelta(hours=24),
        "24h1s": timedelta(hours=24, seconds=1),
        "week": timedelta(days=7),
    }
    for site, age in ages.items():
        clock.set(start - age)
        await core.put_site_heartbeat(site)
    clock.set(start)
    await core.put_site_root_hash("never-seen", "H")
    dashboard = await core.get_dashboard_content()
    assert (dashboard.live_current, dashboard.live_1_behind, dashboard.live_inactive) == (2, 2, 3)
    assert dashboard.live_l24_behind == 4
    assert dashboard.sync_unknown == 7
    clock.advance(minutes=1)  # "35m" drops out of current
    dashboard = await core.get_dashboard_content()
    assert (dashboard.live_current, dashboard.live_1_behind, dashboard.live_inactive) == (1, 2, 4)


async def test_every_site_in_one_sync_and_one_live_bucket(
    core: CoreRepository, clock: FakeClock
) -> None:
    await core.put_baseline("B1")
    await core.put_baseline("B2")
    for n in range(12):
        site = f"site-{n:02d}"
        if n % 3:
            await core.put_site_heartbeat(site)
        if n % 4:
            await core.put_site_root_hash(site, ["B1", "B2", "X"][n % 3])
        clock.advance(hours=3)
    d = await core.get_dashboard_content()
    sites = len(await core.get_sites())
    assert sites == sum(1 for n in range(12) if n % 3 or n % 4)
    assert (
        d.sync_current + d.sync_1_behind + d.sync_l24_behind + d.sync_g24_behind + (d.sync_unknown)
        == sites
    )
    assert d.live_current + d.live_1_behind + d.live_inactive == sites
    assert d.live_l24_behind == d.live_current + d.live_1_behind


async def test_heartbeat_counts_and_sites(core: CoreRepository, clock: FakeClock) -> None:
    await core.put_site_heartbeat("b", hash_record_count=100)
    await core.put_site_heartbeat("a", hash_record_count=20)
    clock.advance(60)
    await core.put_site_heartbeat("b")  # keeps its count
    await core.put_site_root_hash("a", "R")
    assert await core.get_hash_record_count() == 120
    assert (await core.get_dashboard_content()).hash_record_count == 120
    sites = await core.get_sites()
    assert [s.site_id for s in sites] == ["a", "b"]
    assert sites[1].last_heartbeat == clock.now()
    assert sites[0].root_hash == "R" and sites[0].root_hash_at == clock.now()
    assert sites[0]["hash_record_count"] == 20
    with pytest.raises(InvalidInputError):
        await core.put_site_heartbeat("a", hash_record_count=-1)
    with pytest.raises(InvalidInputError):
        await core.put_site_heartbeat("")
    with pytest.raises(InvalidInputError):
        await core.put_site_root_hash("a", "has space")


async def test_critical_count_and_level_counts(core: CoreRepository, clock: FakeClock) -> None:
    start = clock.now()
    for age, level in [
        (timedelta(0), "CRITICAL"),
        (timedelta(hours=24), "CRITICAL"),  # exactly 24 h old: counted
        (timedelta(hours=24, seconds=1), "CRITICAL"),
        (timedelta(hours=1), "error"),
        (timedelta(hours=2), "ERROR"),
        (timedelta(days=3), "ERROR"),
    ]:
        assert await core.put_core_log(
            {"summary_message": level, "log_level": level, "timestamp": start - age, "site_id": "s"}
        )
    assert (await core.get_dashboard_content()).crit_error_count == 2
    assert await core.get_log_count_last_24h("ERROR") == 2
    assert await core.get_log_count_last_24h("critical") == 2
    assert await core.get_log_count_last_24h("DEBUG") == 0
    with pytest.raises(ValueError, match="log_level"):
        await core.get_log_count_last_24h("ERROR' OR '1'='1")


async def test_recent_logs_are_thirty_days_newest_first(
    core: CoreRepository, clock: FakeClock
) -> None:
    start = clock.now()
    ids = {}
    for days in [0, 29, 30, 31, 2]:
        ids[days] = await core.put_core_log(
            {"summary_message": f"{days}d", "timestamp": start - timedelta(days=days)}
        )
    recent = await core.get_recent_logs()
    assert [e.log_id for e in recent] == [ids[0], ids[2], ids[29], ids[30]]
    assert recent[0]["summary_message"] == "0d"


async def test_core_log_validation_and_idempotency(core: CoreRepository) -> None:
    assert await core.put_core_log({"summary_message": ""}) is None
    first = await core.put_core_log({"summary_message": "x"}, idempotency_key="abc")
    assert first is not None
    assert await core.put_core_log({"summary_message": "x"}, idempotency_key="abc") == first
    assert len(await core.get_recent_logs()) == 1


async def test_core_health_and_transaction(core: CoreRepository) -> None:
    assert await core.health_check() == {"core_db": True}
    with pytest.raises(RuntimeError):
        async with core.transaction() as tx:
            await tx.put_site_heartbeat("rolled-back")
            raise RuntimeError
    assert await core.get_sites() == []
    async with core.transaction() as tx:
        await tx.put_site_heartbeat("kept")
        await tx.put_baseline("B")
    assert [s.site_id for s in await core.get_sites()] == ["kept"]


async def test_record_counts_up_to_64_bits_sum_exactly(core: CoreRepository) -> None:
    big = 2**63 - 1
    await core.put_site_heartbeat("a", hash_record_count=big)
    await core.put_site_heartbeat("b", hash_record_count=big)
    await core.put_site_heartbeat("c", hash_record_count=3)
    assert await core.get_hash_record_count() == 2 * big + 3
    assert (await core.get_dashboard_content()).hash_record_count == 2 * big + 3
    with pytest.raises(InvalidInputError, match="hash_record_count"):
        await core.put_site_heartbeat("d", hash_record_count=2**63)


async def test_times_out_of_range_in_utc_are_refused(core: CoreRepository) -> None:
    from datetime import datetime, timezone

    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    with pytest.raises(InvalidInputError, match="computed_at"):
        await core.put_site_root_hash("s", "h", computed_at=early)
    with pytest.raises(InvalidInputError, match="created_at"):
        await core.put_baseline("h", created_at=early)
    assert await core.put_core_log({"summary_message": "m", "timestamp": early}) is None
