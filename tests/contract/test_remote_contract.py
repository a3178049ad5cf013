"""The remote tier's contracts, run unchanged against every backend."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from async_db_client import FakeClock, HashRecord, InvalidInputError, LogEntry, LogLevel
from async_db_client.clock import epoch_seconds
from async_db_client.tiers import RemoteRepository
from async_db_client.validation import LOG_ORDER_COLUMNS, SINGLE_FIELDS

pytestmark = pytest.mark.asyncio

INJECTIONS = [
    "timestamp; DROP TABLE remote_logs",
    "timestamp DESC, (SELECT 1)",
    "log_id -- ",
    "1=1",
    "' OR '1'='1",
    "`log_id`",
    "log_id/**/",
    "TIMESTAMP",  # right name, wrong case: column names are exact
    "summary_message",  # a column, but not one get_logs may order by
    "",
]


def rec(path: str = "/data", current_hash: str = "h1", **extra: object) -> dict[str, object]:
    return {"path": path, "current_hash": current_hash, **extra}


# ------------------------------------------------------------------ hash records


async def test_new_record_has_both_current_stamps_at_now(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    record = rec(dirs=["a", "b"], files=["f.txt"], links=["l"], session_id="s1")
    assert await remote.insert_or_update_hash(record) is True
    stored = await remote.get_hash_record("/data")
    now = epoch_seconds(clock.now())
    assert stored is not None
    assert stored.model_dump() == {
        "path": "/data",
        "current_hash": "h1",
        "prev_hash": None,
        "current_dtg_first": now,
        "current_dtg_latest": now,
        "prev_dtg_latest": None,
        "dirs": ["a", "b"],
        "files": ["f.txt"],
        "links": ["l"],
        "target_hash": None,
        "session_id": "s1",
    }


async def test_same_hash_only_advances_latest(remote: RemoteRepository, clock: FakeClock) -> None:
    first = epoch_seconds(clock.now())
    await remote.insert_or_update_hash(rec())
    clock.advance(90)
    await remote.insert_or_update_hash(rec())
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert (stored.current_dtg_first, stored.current_dtg_latest) == (first, first + 90)
    assert (stored.prev_hash, stored.prev_dtg_latest) == (None, None)


async def test_new_hash_rotates_current_into_prev(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    t0 = epoch_seconds(clock.now())
    await remote.insert_or_update_hash(rec(current_hash="h1"))
    clock.advance(60)
    await remote.insert_or_update_hash(rec(current_hash="h1"))  # latest = t0+60
    clock.advance(60)
    await remote.insert_or_update_hash(rec(current_hash="h2"))  # rotation at t0+120
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert stored.current_hash == "h2"
    assert stored.prev_hash == "h1"
    assert stored.prev_dtg_latest == t0 + 60
    assert stored.current_dtg_first == stored.current_dtg_latest == t0 + 120
    clock.advance(60)
    await remote.insert_or_update_hash(rec(current_hash="h3"))
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert (stored.current_hash, stored.prev_hash) == ("h3", "h2")
    assert stored.prev_dtg_latest == t0 + 120
    assert stored.current_dtg_first == t0 + 180


async def test_hash_comparison_is_exact(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hash(rec(current_hash="abc"))
    await remote.insert_or_update_hash(rec(current_hash="ABC"))
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert (stored.current_hash, stored.prev_hash) == ("ABC", "abc")


async def test_children_replaced_target_and_session_kept_when_omitted(
    remote: RemoteRepository,
) -> None:
    await remote.insert_or_update_hash(
        rec(dirs=["a"], files=["x"], links=["y"], target_hash="t", session_id="s1")
    )
    await remote.insert_or_update_hash(rec(dirs=["b"]))
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert (stored.dirs, stored.files, stored.links) == (["b"], [], [])
    assert (stored.target_hash, stored.session_id) == ("t", "s1")
    await remote.insert_or_update_hash(rec(target_hash="t2", session_id="s2"))
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert (stored.target_hash, stored.session_id) == ("t2", "s2")


async def test_computed_fields_given_by_caller_are_ignored(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    await remote.insert_or_update_hash(
        rec(prev_hash="forged", current_dtg_first=1, current_dtg_latest=2, prev_dtg_latest=3)
    )
    stored = await remote.get_hash_record("/data")
    now = epoch_seconds(clock.now())
    assert stored is not None
    assert (stored.prev_hash, stored.prev_dtg_latest) == (None, None)
    assert stored.current_dtg_first == stored.current_dtg_latest == now


async def test_records_read_like_dicts(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hash(rec(files=["doc1.txt"]))
    record = await remote.get_hash_record("/data")
    assert record is not None
    assert record["files"] == ["doc1.txt"]
    assert record.get("current_hash") == "h1"
    assert record.get("no_such_key", "default") == "default"
    assert "path" in record and "nope" not in record
    assert dict(record)["path"] == "/data"
    with pytest.raises(KeyError):
        record["nope"]
    record["files"].append("mine")  # the caller's copy
    again = await remote.get_hash_record("/data")
    assert again is not None and again["files"] == ["doc1.txt"]


async def test_missing_record_is_none(remote: RemoteRepository) -> None:
    assert await remote.get_hash_record("/nowhere") is None
    assert await remote.get_single_field("/nowhere", "current_hash") is None


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"current_hash": "h"}, "path"),
        (rec(path=""), "path"),
        (rec(path="/a\x00b"), "path"),
        (rec(path="/" + "x" * 4096), "path"),
        (rec(path="/\ud800"), "path"),
        (rec(path=42), "path"),
        ({"path": "/p"}, "current_hash"),
        (rec(current_hash=""), "current_hash"),
        (rec(current_hash="x" * 129), "current_hash"),
        (rec(current_hash="ab cd"), "current_hash"),
        (rec(current_hash="ab\ncd"), "current_hash"),
        (rec(target_hash="a b"), "target_hash"),
        (rec(dirs=["ok", ""]), "dirs"),
        (rec(files=["a/b"]), "files"),
        (rec(links=["a\x00"]), "links"),
        (rec(dirs="abc"), "dirs"),
        (rec(files=[1]), "files"),
        (rec(session_id="s" * 65), "session_id"),
        (rec(current_dtg_latest=-1), "current_dtg_latest"),
        (rec(unknown_key=1), "unknown_key"),
    ],
)
async def test_invalid_record_returns_false_and_stores_nothing(
    remote: RemoteRepository,
    caplog: pytest.LogCaptureFixture,
    record: dict[str, object],
    field: str,
) -> None:
    with caplog.at_level(logging.ERROR, logger="async_db_client"):
        assert await remote.insert_or_update_hash(record) is False
    assert any(field in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert await remote.get_hash_record("/data") is None
    assert await remote.get_hash_record("/p") is None


async def test_non_mapping_record_returns_false(remote: RemoteRepository) -> None:
    assert await remote.insert_or_update_hash(["/data", "h"]) is False  # type: ignore[arg-type]


async def test_longest_path_and_unicode_round_trip(remote: RemoteRepository) -> None:
    unit = "/é漢😀"  # 1 + 2 + 3 + 4 bytes
    longest = (unit * (4096 // 10)) + "/" * (4096 % 10)
    assert len(longest.encode()) == 4096
    names = ["naïve café", "日本語", "emoji 😀", "tab\there", "quote'\"", "back\\slash", "%_"]
    assert await remote.insert_or_update_hash(rec(path=longest, dirs=names, files=names))
    stored = await remote.get_hash_record(longest)
    assert stored is not None
    assert stored.path == longest
    assert stored.dirs == names and stored.files == names
    too_long = longest + "x"
    assert await remote.insert_or_update_hash(rec(path=too_long)) is False
    with pytest.raises(InvalidInputError, match="4097 bytes"):
        await remote.get_hash_record(too_long)


async def test_paths_differing_only_in_case_or_accents_are_distinct(
    remote: RemoteRepository,
) -> None:
    for path, digest in [("/Data", "a"), ("/data", "b"), ("/dàta", "c"), ("/data ", "d")]:
        assert await remote.insert_or_update_hash(rec(path=path, current_hash=digest))
    for path, digest in [("/Data", "a"), ("/data", "b"), ("/dàta", "c"), ("/data ", "d")]:
        assert await remote.get_single_field(path, "current_hash") == digest


async def test_get_single_field_reads_every_whitelisted_field(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    await remote.insert_or_update_hash(rec(target_hash="t", session_id="s"))
    clock.advance(5)
    await remote.insert_or_update_hash(rec(current_hash="h2"))
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    for field in SINGLE_FIELDS:
        assert await remote.get_single_field("/data", field) == getattr(stored, field)


@pytest.mark.parametrize("field", [*INJECTIONS, "path_key", "dirs", "password", "*"])
async def test_get_single_field_refuses_other_names(remote: RemoteRepository, field: str) -> None:
    await remote.insert_or_update_hash(rec())
    with pytest.raises(ValueError, match="field must be one of"):
        await remote.get_single_field("/data", field)


async def test_priority_updates(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hash(rec(path="/b", current_hash="x", target_hash="y"))
    await remote.insert_or_update_hash(rec(path="/a", current_hash="x", target_hash="z"))
    await remote.insert_or_update_hash(rec(path="/c", current_hash="x", target_hash="x"))
    await remote.insert_or_update_hash(rec(path="/d", current_hash="x"))
    assert await remote.get_priority_updates() == ["/a", "/b"]
    await remote.insert_or_update_hash(rec(path="/b", current_hash="y"))
    assert await remote.get_priority_updates() == ["/a"]
    assert await remote.set_target_hash("/a", None) is True
    assert await remote.get_priority_updates() == []
    assert await remote.set_target_hash("/d", "x") is True  # same as current: not a priority
    assert await remote.set_target_hash("/d", "x") is True  # unchanged value still "found"
    assert await remote.get_priority_updates() == []
    assert await remote.set_target_hash("/missing", "x") is False
    with pytest.raises(InvalidInputError):
        await remote.set_target_hash("/d", "bad hash")


# ---------------------------------------------------------------------- bulk


async def test_bulk_stores_valid_and_reports_rejected(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    records = [
        rec(path="/a", dirs=["x"]),
        rec(path="/b", current_hash=""),
        rec(path="/c"),
        {"path": "/d"},
        "not a record",
        rec(path="/e", files=["bad/name"]),
    ]
    result = await remote.insert_or_update_hashes(records)  # type: ignore[arg-type]
    assert result.stored == 2
    assert [(r.index, r.path) for r in result.rejected] == [
        (1, "/b"),
        (3, "/d"),
        (4, None),
        (5, "/e"),
    ]
    assert "current_hash" in result.rejected[0].reason
    assert "files" in result.rejected[3].reason
    assert result["stored"] == 2
    assert await remote.get_hash_record("/a") is not None
    assert await remote.get_hash_record("/b") is None


async def test_bulk_rotation_matches_single_calls(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    t0 = epoch_seconds(clock.now())
    await remote.insert_or_update_hashes(
        [rec(path=f"/p{i}", current_hash="old") for i in range(50)]
    )
    clock.advance(30)
    batch = [rec(path=f"/p{i}", current_hash="new" if i % 2 else "old") for i in range(50)]
    batch.append(rec(path="/p0", current_hash="newest"))  # same path twice: rotates in order
    result = await remote.insert_or_update_hashes(batch)
    assert result.stored == 51 and result.rejected == []
    odd = await remote.get_hash_record("/p1")
    even = await remote.get_hash_record("/p2")
    twice = await remote.get_hash_record("/p0")
    assert odd is not None and even is not None and twice is not None
    assert (odd.current_hash, odd.prev_hash, odd.prev_dtg_latest) == ("new", "old", t0)
    assert odd.current_dtg_first == t0 + 30
    assert (even.current_hash, even.prev_hash, even.current_dtg_first) == ("old", None, t0)
    assert even.current_dtg_latest == t0 + 30
    assert (twice.current_hash, twice.prev_hash, twice.prev_dtg_latest) == (
        "newest",
        "old",
        t0 + 30,
    )


async def test_bulk_accepts_models_and_empty_input(remote: RemoteRepository) -> None:
    assert (await remote.insert_or_update_hashes([])).stored == 0
    result = await remote.insert_or_update_hashes(
        [HashRecord(path="/m", current_hash="h")] + [rec(path=f"/g{i}") for i in range(3)]
    )
    assert result.stored == 4
    with pytest.raises(InvalidInputError):
        await remote.insert_or_update_hashes(rec())  # type: ignore[arg-type]


async def test_concurrent_writers_on_one_path_keep_rotation_consistent(
    remote: RemoteRepository,
) -> None:
    hashes = [f"h{i}" for i in range(20)]
    assert all(
        await asyncio.gather(*(remote.insert_or_update_hash(rec(current_hash=h)) for h in hashes))
    )
    stored = await remote.get_hash_record("/data")
    assert stored is not None
    assert stored.current_hash in hashes
    assert stored.prev_hash in hashes and stored.prev_hash != stored.current_hash


# ---------------------------------------------------------------------- logs


async def test_put_log_returns_increasing_ids_and_defaults(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    first = await remote.put_log({"summary_message": "one"})
    second = await remote.put_log(
        {
            "summary_message": "two",
            "detailed_message": "details",
            "log_level": "warning",
            "session_id": "s",
            "site_id": "site-1",
        }
    )
    assert isinstance(first, int) and isinstance(second, int) and second > first
    logs = await remote.get_logs(order_by="log_id", order_direction="ASC")
    assert [entry.model_dump() for entry in logs] == [
        LogEntry(
            log_id=first, log_level=LogLevel.INFO, timestamp=clock.now(), summary_message="one"
        ).model_dump(),
        LogEntry(
            log_id=second,
            site_id="site-1",
            log_level=LogLevel.WARNING,
            timestamp=clock.now(),
            session_id="s",
            summary_message="two",
            detailed_message="details",
        ).model_dump(),
    ]
    assert logs[1]["log_level"] == "WARNING"


async def test_put_log_keeps_given_timestamp_to_the_microsecond(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    when = clock.now() - timedelta(days=3, microseconds=123457)
    log_id = await remote.put_log({"summary_message": "old", "timestamp": when})
    [entry] = await remote.get_logs()
    assert entry.log_id == log_id and entry.timestamp == when


async def test_put_log_is_idempotent_per_key(remote: RemoteRepository) -> None:
    first = await remote.put_log({"summary_message": "x"}, idempotency_key="k" * 32)
    again = await remote.put_log({"summary_message": "x"}, idempotency_key="k" * 32)
    assert first == again
    assert len(await remote.get_logs()) == 1


@pytest.mark.parametrize(
    "entry",
    [
        {},
        {"summary_message": ""},
        {"summary_message": "   "},
        {"summary_message": "x", "log_level": "LOUD"},
        {"summary_message": "x", "session_id": "s" * 65},
        {"summary_message": "x", "site_id": 7},
        {"summary_message": "x\x00y"},
        {"summary_message": "x", "extra": 1},
        "just a string",
    ],
)
async def test_invalid_log_returns_none(
    remote: RemoteRepository, caplog: pytest.LogCaptureFixture, entry: object
) -> None:
    with caplog.at_level(logging.ERROR, logger="async_db_client"):
        assert await remote.put_log(entry) is None  # type: ignore[arg-type]
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    assert await remote.get_logs() == []


async def _three_logs(remote: RemoteRepository, clock: FakeClock) -> list[int]:
    ids = []
    for level, session, site in [("ERROR", "s2", "b"), ("DEBUG", "s1", None), ("INFO", "s1", "a")]:
        log_id = await remote.put_log(
            {"summary_message": level, "log_level": level, "session_id": session, "site_id": site}
        )
        assert log_id is not None
        ids.append(log_id)
        clock.advance(1)
    return ids


@pytest.mark.parametrize("column", LOG_ORDER_COLUMNS)
@pytest.mark.parametrize("direction", ["ASC", "desc", "Asc"])
async def test_get_logs_orders_by_each_column(
    remote: RemoteRepository, clock: FakeClock, column: str, direction: str
) -> None:
    ids = await _three_logs(remote, clock)
    logs = await remote.get_logs(order_by=column, order_direction=direction)
    expected = {
        "log_id": ids,
        "timestamp": ids,
        "log_level": [ids[1], ids[0], ids[2]],  # DEBUG < ERROR < INFO
        "session_id": [ids[1], ids[2], ids[0]],  # s1 (ids tie-break) < s2
        "site_id": [ids[1], ids[2], ids[0]],  # NULL first, then a < b
    }[column]
    if direction.upper() == "DESC":
        expected = list(reversed(expected))
    assert [entry.log_id for entry in logs] == expected


@pytest.mark.parametrize("bad", INJECTIONS)
async def test_get_logs_refuses_injection_in_order_by(remote: RemoteRepository, bad: str) -> None:
    with pytest.raises(ValueError, match="order_by"):
        await remote.get_logs(order_by=bad)


@pytest.mark.parametrize("bad", ["ASC; DROP TABLE remote_logs", "DESCENDING", "", "up", None])
async def test_get_logs_refuses_bad_direction(remote: RemoteRepository, bad: object) -> None:
    with pytest.raises(ValueError, match="order_direction"):
        await remote.get_logs(order_direction=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": -1}, {"offset": -1}, {"limit": "10"}, {"older_than_days": -2}, {"offset": True}],
)
async def test_get_logs_refuses_bad_numbers(
    remote: RemoteRepository, kwargs: dict[str, object]
) -> None:
    with pytest.raises(InvalidInputError):
        await remote.get_logs(**kwargs)  # type: ignore[arg-type]


async def test_get_logs_filters_and_pages(remote: RemoteRepository, clock: FakeClock) -> None:
    ids = []
    for day in range(10):
        log_id = await remote.put_log(
            {"summary_message": f"day {day}", "session_id": "even" if day % 2 == 0 else "odd"}
        )
        assert log_id is not None
        ids.append(log_id)
        clock.advance(days=1)
    # now = start + 10 days; entry i is 10 - i days old
    assert [e.log_id for e in await remote.get_logs(session_id_filter="odd")] == ids[9::-2]
    older = await remote.get_logs(older_than_days=7, order_direction="ASC")
    assert [e.log_id for e in older] == ids[:3]  # 10, 9 and 8 days old; 7 days is not older
    page1 = await remote.get_logs(limit=4, offset=0, order_by="log_id", order_direction="ASC")
    page2 = await remote.get_logs(limit=4, offset=4, order_by="log_id", order_direction="ASC")
    page3 = await remote.get_logs(limit=4, offset=8, order_by="log_id", order_direction="ASC")
    assert [e.log_id for e in page1 + page2 + page3] == ids
    assert await remote.get_logs(limit=0) == []
    assert [e.log_id for e in await remote.get_logs(offset=8, order_by="log_id")] == ids[1::-1]
    assert await remote.get_logs(session_id_filter="none such") == []
    assert await remote.get_logs(session_id_filter="x'; DROP TABLE remote_logs; --") == []


async def test_delete_log_entries(remote: RemoteRepository, clock: FakeClock) -> None:
    ids = await _three_logs(remote, clock)
    deleted, failed = await remote.delete_log_entries([ids[0], ids[2], 999_999, ids[0]])
    assert (deleted, failed) == (2, [999_999])
    assert [e.log_id for e in await remote.get_logs()] == [ids[1]]
    assert await remote.delete_log_entries([]) == (0, [])
    with pytest.raises(InvalidInputError, match=r"log_ids\[1\]"):
        await remote.delete_log_entries([ids[1], "2; DROP TABLE remote_logs"])  # type: ignore[list-item]
    assert len(await remote.get_logs()) == 1


async def test_old_logs_cleanup_as_in_the_seed_example(
    remote: RemoteRepository, clock: FakeClock
) -> None:
    await remote.put_log({"summary_message": "ancient"})
    clock.advance(days=40)
    keep = await remote.put_log({"summary_message": "fresh"})
    old = await remote.get_logs(older_than_days=30)
    deleted, failed = await remote.delete_log_entries([log["log_id"] for log in old])
    assert (deleted, failed) == (1, [])
    assert [e.log_id for e in await remote.get_logs()] == [keep]


# ----------------------------------------------------------------- integrity


async def test_orphans_and_untracked_children(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hashes(
        [
            rec(path="/", dirs=["root"]),
            rec(path="/root", dirs=["a", "b", "gone"], files=["f"], links=["l"]),
            rec(path="/root/a"),  # listed in dirs
            rec(path="/root/f"),  # listed in files
            rec(path="/root/l"),  # listed in links
            rec(path="/root/stray"),  # not listed: orphan
            rec(path="/root/b", dirs=["deep"]),
            rec(path="/elsewhere/x"),  # parent has no record: not an orphan
            rec(path="relative", dirs=["r1"]),
        ]
    )
    assert await remote.find_orphaned_entries() == ["/root/stray"]
    assert await remote.find_untracked_children() == [
        "/root/b/deep",
        "/root/gone",
        "relative/r1",
    ]
    await remote.insert_or_update_hash(rec(path="/root", dirs=["a", "b", "gone", "stray"]))
    assert await remote.find_orphaned_entries() == ["/root/f", "/root/l"]


async def test_integrity_on_unicode_names(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hash(rec(path="/ü", dirs=["日本", "Ä"]))
    await remote.insert_or_update_hash(rec(path="/ü/日本"))
    await remote.insert_or_update_hash(rec(path="/ü/ä"))  # differs from "Ä" only in case
    assert await remote.find_untracked_children() == ["/ü/Ä"]
    assert await remote.find_orphaned_entries() == ["/ü/ä"]


async def test_untracked_names_equal_under_any_collation_stay_apart(
    remote: RemoteRepository,
) -> None:
    # Case, accents composed or not, pad space, non-BMP: each name is its own child.
    names = ["a", "A", "á", "a\u0301", "a ", "😀", "😁"]
    for n in range(5):
        await remote.insert_or_update_hash(rec(path=f"/t{n}", dirs=names))
        await remote.insert_or_update_hash(rec(path=f"/t{n}/{names[n]}"))
    untracked = await remote.find_untracked_children()
    assert untracked == sorted(
        f"/t{n}/{name}" for n in range(5) for name in names if name != names[n]
    )


async def test_untracked_names_longer_than_any_column(remote: RemoteRepository) -> None:
    long_name = "x" * 5000  # no limit per name, only per record
    await remote.insert_or_update_hash(rec(path="/p", dirs=[long_name, "short"]))
    assert await remote.find_untracked_children() == ["/p/short", f"/p/{long_name}"]


async def test_untracked_is_a_set_of_paths(remote: RemoteRepository) -> None:
    # '/a' and '/a/' both list 'b': one untracked path, as a set.
    await remote.insert_or_update_hash(rec(path="/a", dirs=["b"]))
    await remote.insert_or_update_hash(rec(path="/a/", dirs=["b", "b"]))
    assert await remote.find_untracked_children() == ["/a/b"]


@pytest.mark.parametrize("value", [2**63, 2**64, -1])
async def test_integers_beyond_64_bits_are_refused_before_any_sql(
    remote: RemoteRepository, value: int
) -> None:
    for call in (
        lambda: remote.get_logs(limit=value),
        lambda: remote.get_logs(offset=value),
        lambda: remote.iter_hash_records(batch_size=value).__anext__(),
    ):
        with pytest.raises(InvalidInputError):
            await call()
    if value < 0:
        assert await remote.delete_log_entries([value]) == (0, [value])  # an id, not found
    else:
        with pytest.raises(InvalidInputError, match="log_ids"):
            await remote.delete_log_entries([value])
    assert await remote.get_logs(limit=2**63 - 1, offset=2**63 - 1) == []


async def test_put_log_with_a_time_out_of_range_in_utc_is_refused(
    remote: RemoteRepository,
) -> None:
    from datetime import datetime, timezone

    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    assert await remote.put_log({"summary_message": "m", "timestamp": early}) is None
    assert await remote.get_logs() == []


async def test_health_check(remote: RemoteRepository) -> None:
    assert await remote.health_check() == {"local_db": True}


# --------------------------------------------------------------- transactions


async def test_transaction_commits(remote: RemoteRepository) -> None:
    async with remote.transaction() as tx:
        assert await tx.insert_or_update_hash(rec(path="/t1"))
        assert await tx.put_log({"summary_message": "in tx"}) is not None
        assert await tx.get_hash_record("/t1") is not None
    assert await remote.get_hash_record("/t1") is not None
    assert len(await remote.get_logs()) == 1


async def test_transaction_rolls_back_on_error(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hash(rec(path="/kept"))
    with pytest.raises(RuntimeError, match="boom"):
        async with remote.transaction() as tx:
            await tx.insert_or_update_hash(rec(path="/t2"))
            await tx.insert_or_update_hash(rec(path="/kept", current_hash="changed"))
            await tx.put_log({"summary_message": "in tx"})
            raise RuntimeError("boom")
    assert await remote.get_hash_record("/t2") is None
    assert await remote.get_single_field("/kept", "current_hash") == "h1"
    assert await remote.get_logs() == []
    async with remote.transaction() as tx:  # the tier is usable afterwards
        await tx.insert_or_update_hash(rec(path="/t3"))
    assert await remote.get_hash_record("/t3") is not None


# ------------------------------------------------------------ backup, restore


async def test_export_pages_through_every_record(remote: RemoteRepository) -> None:
    await remote.insert_or_update_hashes(
        [rec(path=f"/e/{i}", dirs=[f"d{i}"], target_hash="t" if i % 2 else None) for i in range(23)]
    )
    exported = [r async for r in remote.iter_hash_records(batch_size=5)]
    assert sorted(r.path for r in exported) == sorted(f"/e/{i}" for i in range(23))
    for record in exported:
        assert record == await remote.get_hash_record(record.path)
    assert [r.path async for r in remote.iter_hash_records(batch_size=1000)] == [
        r.path for r in exported
    ]


async def test_restore_writes_records_verbatim(remote: RemoteRepository, clock: FakeClock) -> None:
    await remote.insert_or_update_hash(rec(path="/r1", current_hash="a", files=["x"]))
    clock.advance(10)
    await remote.insert_or_update_hash(rec(path="/r1", current_hash="b", target_hash="c"))
    await remote.insert_or_update_hash(rec(path="/r2", links=["l"]))
    backup = [r async for r in remote.iter_hash_records()]
    clock.advance(10)
    await remote.insert_or_update_hash(rec(path="/r1", current_hash="changed"))
    result = await remote.restore_hash_records([r.model_dump() for r in backup])
    assert (result.stored, result.rejected) == (2, [])
    assert sorted([r async for r in remote.iter_hash_records()], key=lambda r: r.path) == sorted(
        backup, key=lambda r: r.path
    )
    bad = await remote.restore_hash_records([{"path": "/r3", "current_hash": "h"}])
    assert bad.stored == 0 and "current_dtg_first" in bad.rejected[0].reason


async def test_logs_export_and_restore_once(remote: RemoteRepository, clock: FakeClock) -> None:
    ids = await _three_logs(remote, clock)
    exported = [e async for e in remote.iter_logs(batch_size=2)]
    assert [e.log_id for e in exported] == ids
    await remote.delete_log_entries(ids)
    assert (await remote.restore_logs(exported)).stored == 3
    assert (await remote.restore_logs(exported)).stored == 3  # stored once, not twice
    restored = [e async for e in remote.iter_logs()]
    assert len(restored) == 3
    key = ["summary_message", "log_level", "timestamp", "session_id", "site_id"]
    assert [[e[k] for k in key] for e in restored] == [[e[k] for k in key] for e in exported]
