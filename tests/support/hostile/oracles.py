"""What tests/test_hostile_input.py checks each call and each run against.

The oracles: the documented rules (README, models.py, validation.py) written out
independently of the library (``valid_path`` ...), which decide whether a call must work
or be refused. The harness: one backend's three tiers on one event loop, the sentinel
rows written first, and the row counts the accepted calls should have produced;
``Harness.check_unharmed`` verifies all of them after each run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from async_db_client import FakeClock, InvalidInputError, LogLevel
from async_db_client.backends.memory import MemoryCoreStore, MemoryPipelineStore, MemoryRemoteStore
from async_db_client.models import (
    MAX_DETAIL_CHARS,
    MAX_HASH_CHARS,
    MAX_NAMES_JSON_BYTES,
    MAX_PATH_BYTES,
    MAX_SESSION_ID_CHARS,
    MAX_SITE_ID_CHARS,
    MAX_SUMMARY_CHARS,
)
from async_db_client.tiers import CoreRepository, PipelineRepository, RemoteRepository
from tests.support.backends import Backend, MySQLBackend, PostgreSQLBackend
from tests.support.live import TABLES, connect
from tests.support.postgres import pg_row_counts

T = TypeVar("T")


# ------------------------------------------------------------------------- oracles
# The documented rules (README, models.py, validation.py), independent of the library.


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def valid_path(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value != ""
        and "\x00" not in value
        and _encodable(value)
        and len(value.encode("utf-8")) <= MAX_PATH_BYTES
    )


def valid_hash(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_HASH_CHARS
        and value.isprintable()
        and " " not in value
    )


def valid_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value != ""
        and "/" not in value
        and "\x00" not in value
        and _encodable(value)
    )


def _valid_text(value: Any, limit: int) -> bool:
    return isinstance(value, str) and len(value) <= limit and "\x00" not in value


def valid_identifier(value: Any, limit: int) -> bool:
    """site_id, session_id: at most ``limit`` characters, no control characters, not
    ending in a space (SQL compares 'a' and 'a ' as equal)."""
    return (
        _valid_text(value, limit)
        and _encodable(value)
        and not any(unicodedata.category(c) == "Cc" for c in value)
        and not value.endswith(" ")
    )


def valid_site_arg(value: Any) -> bool:
    """The site arguments of the core and pipeline tiers: an identifier, not blank."""
    return valid_identifier(value, MAX_SITE_ID_CHARS) and value.strip() != ""


def valid_session(value: Any) -> bool:
    return valid_identifier(value, MAX_SESSION_ID_CHARS)


def valid_summary(value: Any) -> bool:
    return _valid_text(value, MAX_SUMMARY_CHARS) and _encodable(value) and value.strip() != ""


def valid_detail(value: Any) -> bool:
    return _valid_text(value, MAX_DETAIL_CHARS) and _encodable(value)


def valid_level(value: Any) -> bool:
    return isinstance(value, str) and value.upper() in LogLevel.__members__


def valid_idempotency_key(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 64
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )


NAME_FIELDS = ("dirs", "files", "links")
HASH_FIELDS = ("current_hash", "prev_hash", "target_hash")


def names_json_bytes(record: dict[str, Any]) -> int:
    """Each name as a JSON string (UTF-8) plus its comma, over the three lists."""
    return sum(
        len(json.dumps(name, ensure_ascii=False).encode()) + 1
        for f in NAME_FIELDS
        for name in record.get(f, [])
    )


def valid_record(record: dict[str, Any]) -> bool:
    checks = [valid_path(record.get("path")), valid_hash(record.get("current_hash"))]
    for name in ("prev_hash", "target_hash"):
        if record.get(name) is not None:
            checks.append(valid_hash(record[name]))
    if record.get("session_id") is not None:
        checks.append(valid_session(record["session_id"]))
    names_ok = all(
        isinstance(record.get(f, []), list) and all(map(valid_name, record.get(f, [])))
        for f in NAME_FIELDS
    )
    checks.append(names_ok)
    if all(checks):
        return names_json_bytes(record) <= MAX_NAMES_JSON_BYTES
    return False


def valid_log(entry: dict[str, Any]) -> bool:
    checks = [valid_summary(entry.get("summary_message"))]
    if entry.get("site_id") is not None:
        checks.append(valid_identifier(entry["site_id"], MAX_SITE_ID_CHARS))
    if entry.get("session_id") is not None:
        checks.append(valid_session(entry["session_id"]))
    if entry.get("detailed_message") is not None:
        checks.append(valid_detail(entry["detailed_message"]))
    if "log_level" in entry:
        checks.append(valid_level(entry["log_level"]))
    return all(checks)


# ------------------------------------------------------------------------- harness


async def attempt(call: Awaitable[T]) -> tuple[bool, T | None]:
    """(True, result), or (False, None) if the call raised InvalidInputError. Any other
    exception (a QueryError from a database that choked on the input) fails the test."""
    try:
        return True, await call
    except InvalidInputError as exc:
        assert isinstance(exc, ValueError)
        assert len(str(exc)) < 2000  # refusals never echo a huge input
        return False, None


#: The migrations' own table (MySQL): its rows must survive too.
VERSIONS = "async_db_client_schema"
SENTINEL_PATH = "/sentinel"
SENTINEL_SITE = "sentinel"
SENTINEL_RECORD = {
    "path": SENTINEL_PATH,
    "current_hash": "sentinel-hash",
    "dirs": ["d'", 'd"'],
    "files": ["f\\"],
    "links": ["l;"],
    "target_hash": "sentinel-target",
    "session_id": SENTINEL_SITE,
}
SENTINEL_LOG = {
    "site_id": SENTINEL_SITE,
    "log_level": "CRITICAL",
    "session_id": SENTINEL_SITE,
    "summary_message": "sentinel summary",
    "detailed_message": "sentinel detail",
}


@dataclass
class Harness:
    """One backend's three tiers on one event loop, their sentinels, and the row counts
    the accepted calls so far should have produced."""

    backend: Backend
    runner: asyncio.Runner
    remote: RemoteRepository
    core: CoreRepository
    pipeline: PipelineRepository
    clock: FakeClock
    expected: Counter[str] = field(default_factory=Counter)
    sentinels: dict[str, Any] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(call)

    def fresh(self, prefix: str = "/hostile") -> str:
        """A path (or site) no call has used yet."""
        return f"{prefix}/{next(self._ids)}"

    def census(self) -> Counter[str]:
        """Rows per table, read from the store itself (for MySQL, with a separate root
        connection: a dropped table would raise here)."""
        if isinstance(self.backend, MySQLBackend):
            counts: Counter[str] = Counter()
            with connect(self.backend.database) as conn, conn.cursor() as cursor:
                for table in (*itertools.chain.from_iterable(TABLES.values()), VERSIONS):
                    cursor.execute(f"SELECT COUNT(*) FROM {table}")
                    counts[table] = int(cursor.fetchone()[0])
            return counts
        if isinstance(self.backend, PostgreSQLBackend):
            tables = (*itertools.chain.from_iterable(TABLES.values()), VERSIONS)
            return Counter(pg_row_counts(self.backend.database, tables))
        assert isinstance(self.remote.store, MemoryRemoteStore)
        assert isinstance(self.core.store, MemoryCoreStore)
        assert isinstance(self.pipeline.store, MemoryPipelineStore)
        with (
            self.remote.store.reading() as remote,
            self.core.store.reading() as core,
            self.pipeline.store.reading() as pipeline,
        ):
            return Counter(
                {
                    "hash_records": len(remote.records),
                    "remote_logs": len(remote.logs.entries),
                    "core_sites": len(core.sites),
                    "core_baselines": len(core.baselines),
                    "core_logs": len(core.logs.entries),
                    "pipeline_updates": len(pipeline.updates),
                    "pipeline_sites": len(pipeline.sites),
                    "pipeline_completions": len(pipeline.completions),
                }
            )

    async def write_sentinels(self) -> None:
        assert await self.remote.insert_or_update_hash(SENTINEL_RECORD)
        assert await self.remote.put_log(SENTINEL_LOG) is not None
        await self.core.put_site_heartbeat(SENTINEL_SITE, hash_record_count=7)
        await self.core.put_site_root_hash(SENTINEL_SITE, "sentinel-root")
        await self.core.put_baseline("sentinel-baseline")
        assert await self.core.put_core_log(SENTINEL_LOG) is not None
        assert await self.pipeline.register_official_site(SENTINEL_SITE)
        await self.pipeline.enqueue_pipeline_update(SENTINEL_PATH, SENTINEL_SITE)
        assert await self.pipeline.put_pipeline_site_completion(SENTINEL_SITE)
        self.sentinels = await self.sentinel_state()
        self.expected = self.census()
        assert self.expected["core_baselines"] == 1
        assert sum(n for table, n in self.expected.items() if table != VERSIONS) == 8
        live = isinstance(self.backend, MySQLBackend | PostgreSQLBackend)
        assert self.expected[VERSIONS] == (3 if live else 0)

    async def sentinel_state(self) -> dict[str, Any]:
        return {
            "record": await self.remote.get_hash_record(SENTINEL_PATH),
            "logs": await self.remote.get_logs(session_id_filter=SENTINEL_SITE),
            "site": [s for s in await self.core.get_sites() if s.site_id == SENTINEL_SITE],
            "core_logs": [
                e for e in await self.core.get_recent_logs() if e.session_id == SENTINEL_SITE
            ],
            "official": SENTINEL_SITE in await self.pipeline.get_official_sites(),
            "pending": [
                u for u in await self.pipeline.get_pipeline_updates() if u.path == SENTINEL_PATH
            ],
            "completions": await self.pipeline.get_pipeline_site_completions(SENTINEL_SITE),
        }

    def check_unharmed(self) -> None:
        """Sentinels unchanged, every table there, and no row more or less than expected."""
        state = self.run(self.sentinel_state())
        assert state == self.sentinels
        assert state["record"] is not None and state["record"].path == SENTINEL_PATH
        assert len(state["logs"]) == 1 and state["official"] and len(state["pending"]) == 1
        assert self.census() == self.expected
        self.run(self.check_log_order())

    async def check_log_order(self) -> None:
        """get_logs orders hostile site and session ids as Python does (code points,
        NULL first), ties by log_id: SQL's PAD SPACE must not show through."""
        for column in ("site_id", "session_id"):
            for direction in ("ASC", "DESC"):
                entries = await self.remote.get_logs(order_by=column, order_direction=direction)
                keys = [(e[column] is not None, e[column] or "", e.log_id) for e in entries]
                assert keys == sorted(keys, reverse=direction == "DESC"), column
