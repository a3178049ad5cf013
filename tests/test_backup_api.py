"""Backup and restore through the clients: async iterators on DBInstance, generators on
the sync facade, both streaming in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from async_db_client import DBClientFactory, FakeClock
from async_db_client.sync import DBClientFactory as SyncFactory


def sqlite_config(path: Path) -> dict[str, Any]:
    return {"database": {"remote_type": "sqlite", "remote_config": {"path": str(path)}}}


@pytest.mark.asyncio
async def test_async_client_round_trips_records_and_logs(tmp_path: Path, clock: FakeClock) -> None:
    source = DBClientFactory(sqlite_config(tmp_path / "a.db"), clock=clock).create_client()
    target = DBClientFactory(sqlite_config(tmp_path / "b.db"), clock=clock).create_client()
    async with source, target:
        await source.insert_or_update_hashes(
            [{"path": f"/d/{i}", "current_hash": f"h{i}", "files": [f"f{i}"]} for i in range(12)]
        )
        clock.advance(5)
        await source.insert_or_update_hash({"path": "/d/0", "current_hash": "new"})
        await source.put_log({"summary_message": "one", "session_id": "s"})
        await source.put_log({"summary_message": "two", "log_level": "error"})

        records = [r async for r in source.iter_hash_records(batch_size=5)]
        logs = [e async for e in source.iter_logs(batch_size=1)]
        assert len(records) == 12 and len(logs) == 2
        assert (await target.restore_hash_records(records)).stored == 12
        assert (await target.restore_logs(logs)).stored == 2

        copied = [r async for r in target.iter_hash_records()]
        assert copied == records
        rotated = await target.get_hash_record("/d/0")
        assert rotated is not None and (rotated.current_hash, rotated.prev_hash) == ("new", "h0")
        copied_logs = [e async for e in target.iter_logs()]
        fields = ("summary_message", "log_level", "timestamp", "session_id")
        assert [[e[f] for f in fields] for e in copied_logs] == [
            [e[f] for f in fields] for e in logs
        ]


@pytest.mark.asyncio
async def test_async_iterators_need_the_remote_tier() -> None:
    async with DBClientFactory({"database": {"core_type": "local"}}).create_client() as db:
        with pytest.raises(NotImplementedError, match="remote tier is not configured"):
            db.iter_hash_records()


def test_sync_facade_streams_in_batches_and_stops_early(tmp_path: Path) -> None:
    with SyncFactory(sqlite_config(tmp_path / "s.db")).create_client() as db:
        db.insert_or_update_hashes([{"path": f"/s/{i:02}", "current_hash": "h"} for i in range(25)])
        for n in range(3):
            db.put_log({"summary_message": f"m{n}"})
        paths = [r.path for r in db.iter_hash_records(batch_size=7)]
        assert len(paths) == 25 and len(set(paths)) == 25
        assert [e.summary_message for e in db.iter_logs(batch_size=2)] == ["m0", "m1", "m2"]

        first_two = []
        for record in db.iter_hash_records(batch_size=5):
            first_two.append(record)
            if len(first_two) == 2:
                break  # the generator is closed; its async iterator is closed in the loop
        assert len(first_two) == 2

        result = db.restore_hash_records(db.iter_hash_records())
        assert (result.stored, result.rejected) == (25, [])
        assert db.restore_logs([]).stored == 0
