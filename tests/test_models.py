"""Model validation rules, each failure naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pydantic
import pytest

from async_db_client import HashRecord, InvalidInputError, LogEntry, LogLevel
from async_db_client.models import DashboardMetrics, describe_validation_error, parse_model


def test_hash_record_defaults_and_dict_reads() -> None:
    record = HashRecord(path="/a", current_hash="h")
    assert record.dirs == [] and record.files == [] and record.links == []
    assert record["path"] == "/a" and record.get("prev_hash") is None
    assert len(record) == 11 and set(record.keys()) == set(HashRecord.model_fields)
    assert dict(record.items())["current_hash"] == "h"
    with pytest.raises(pydantic.ValidationError):
        record.path = "/b"  # type: ignore[misc]  # frozen


@pytest.mark.parametrize(
    ("fields", "location", "message"),
    [
        ({"path": ""}, "path", "must not be empty"),
        ({"path": "/a\x00"}, "path", "NUL"),
        ({"path": "/" + "é" * 2048}, "path", "4097 bytes"),
        ({"path": b"/a"}, "path", "valid string"),
        ({"current_hash": "a" * 129}, "current_hash", "129 characters"),
        ({"current_hash": "a\tb"}, "current_hash", "whitespace"),
        ({"current_hash": "a\x07b"}, "current_hash", "control"),
        ({"prev_hash": ""}, "prev_hash", "empty"),
        ({"dirs": ["a", "b/c"]}, "dirs", "#1 contains '/'"),
        ({"links": ["\x00"]}, "links", "NUL"),
        ({"files": [""]}, "files", "#0 is empty"),
        ({"session_id": "x" * 65}, "session_id", "65 characters"),
        ({"session_id": "s "}, "session_id", "must not end with a space"),
        ({"session_id": "a\tb"}, "session_id", "control characters"),
        ({"session_id": "a\x85"}, "session_id", "control characters"),
        ({"session_id": "\ud800"}, "session_id", "lone surrogate"),
        ({"files": ["x" * 4_000_000, "y" * 194_299]}, "files", "4194305 bytes as JSON"),
        ({"dirs": ["x" * 4_000_000], "links": ["y" * 194_299]}, "links", "limit is 4194304"),
        ({"current_dtg_first": True}, "current_dtg_first", "valid integer"),
        ({"current_dtg_first": "12"}, "current_dtg_first", "valid integer"),
        ({"prev_dtg_latest": -5}, "prev_dtg_latest", "greater than or equal"),
        ({"bogus": 1}, "bogus", "Extra inputs"),
    ],
)
def test_hash_record_rules(fields: dict[str, object], location: str, message: str) -> None:
    values = {"path": "/a", "current_hash": "h", **fields}
    with pytest.raises(InvalidInputError) as info:
        parse_model(HashRecord, values, "hash record")
    assert info.value.field is not None and info.value.field.startswith(location)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_boundaries_are_inclusive() -> None:
    HashRecord(path="/" + "x" * 4095, current_hash="h" * 128, session_id="s" * 64)
    # Names: each counts as its JSON string plus a comma; 4 MiB in all.
    HashRecord(path="/a", current_hash="h", files=["x" * 4_000_000], dirs=["y" * 194_298])
    HashRecord(path="/a", current_hash="h", session_id=" s\u202e\u00e9")  # leading space


def test_error_messages_never_echo_input() -> None:
    secret_like = "hunter2-super-secret"
    with pytest.raises(InvalidInputError) as info:
        parse_model(HashRecord, {"path": "/a", "current_hash": secret_like + " x"}, "rec")
    assert secret_like not in str(info.value)
    with pytest.raises(pydantic.ValidationError) as raw:
        HashRecord(path="/a", current_hash=secret_like + " x")
    assert secret_like not in describe_validation_error(raw.value)


def test_log_entry_level_is_case_insensitive_and_timestamps_utc() -> None:
    entry = LogEntry(summary_message="x", log_level="critical")  # type: ignore[arg-type]
    assert entry.log_level is LogLevel.CRITICAL and entry["log_level"] == "CRITICAL"
    naive = LogEntry(summary_message="x", timestamp=datetime(2024, 1, 8, 10, 30))
    assert naive.timestamp == datetime(2024, 1, 8, 10, 30, tzinfo=UTC)
    plus2 = timezone(timedelta(hours=2))
    aware = LogEntry(summary_message="x", timestamp=datetime(2024, 1, 8, 12, 30, tzinfo=plus2))
    assert aware.timestamp == naive.timestamp and aware.timestamp is not None
    assert aware.timestamp.tzinfo is UTC
    with pytest.raises(pydantic.ValidationError):
        LogEntry(summary_message="x", log_level="NOTICE")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        LogEntry(summary_message=" \n ")


def test_parse_model_accepts_models_and_refuses_non_mappings() -> None:
    record = HashRecord(path="/a", current_hash="h")
    assert parse_model(HashRecord, record, "rec") is record
    with pytest.raises(InvalidInputError, match="must be a mapping, not list"):
        parse_model(HashRecord, ["/a", "h"], "rec")


def test_dashboard_has_exactly_the_eleven_seed_fields() -> None:
    assert list(DashboardMetrics.model_fields) == [
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
