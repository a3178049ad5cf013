"""Hostile input against every string parameter of every tier, on the in-memory backend and
on the live MariaDB (aiomysql).

Each call must either work (and what it stored reads back exactly) or be refused the
documented way: :class:`InvalidInputError` (a ``ValueError``) from the methods that raise,
False/None from ``insert_or_update_hash``, ``put_log``, ``put_core_log``,
``put_pipeline_hash`` and ``put_pipeline_site_completion``. Which one is decided by the
documented rules, written out below as oracles (``valid_path`` ...), so the library can
neither refuse valid input nor take invalid input. After each run the tables are unharmed:
sentinel rows written first are unchanged, every table still exists, and every table holds
exactly the rows the accepted calls added.

Two sources of input: :data:`PAYLOADS`, classic injection and breakage strings, each fed to
every string parameter (one test per parameter); and hypothesis-generated Unicode (lone
surrogates, NUL and other controls, bidi overrides, long repeats), fed to everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import unicodedata
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from async_db_client import FakeClock, InvalidInputError, LogLevel
from async_db_client.backends.memory_core import MemoryCoreRepository
from async_db_client.backends.memory_pipeline import MemoryPipelineRepository
from async_db_client.backends.memory_remote import MemoryRemoteRepository
from async_db_client.interfaces import CoreRepository, PipelineRepository, RemoteRepository
from async_db_client.models import (
    MAX_DETAIL_CHARS,
    MAX_HASH_CHARS,
    MAX_NAMES_JSON_BYTES,
    MAX_PATH_BYTES,
    MAX_SESSION_ID_CHARS,
    MAX_SITE_ID_CHARS,
    MAX_SUMMARY_CHARS,
)
from async_db_client.validation import LOG_ORDER_COLUMNS, SINGLE_FIELDS
from tests.support.backends import Backend, MemoryBackend, MySQLBackend
from tests.support.live import TABLES, connect

T = TypeVar("T")

# ------------------------------------------------------------------------ payloads

#: Classic payloads: SQL injection for MySQL and SQL Server, placeholder and escape
#: confusion for the drivers, JSON breakers for the JSON columns, Unicode tricks, and
#: sizes around every limit.
PAYLOADS: list[str] = [
    # quotes and escapes
    "'",
    "''",
    '"',
    "`",
    "\\",
    "\\'",
    "\\\\'",
    "\\0",
    "\\Z",
    "\\n",
    "'\\",
    "a'b\"c`d\\e",
    # classic SQL injection
    "' OR '1'='1",
    "' OR 1=1 -- ",
    "' OR 1=1#",
    '" OR ""="',
    "admin'--",
    "1' AND SLEEP(5) AND '1'='1",
    "1; SELECT SLEEP(5)",
    "'; DROP TABLE hash_records; --",
    "'); DROP TABLE remote_logs; --",
    '"; DELETE FROM core_sites; --',
    "x'; UPDATE hash_records SET current_hash='pwned' WHERE '1'='1",
    "1; TRUNCATE TABLE pipeline_sites",
    "' UNION SELECT path, current_hash FROM hash_records --",
    "' UNION ALL SELECT NULL,NULL,NULL,NULL,NULL,NULL,NULL-- -",
    "') OR ('a'='a",
    "1 OR 1=1",
    "log_id; DROP TABLE remote_logs",
    "timestamp DESC, (SELECT SLEEP(5))",
    "current_hash FROM hash_records; --",
    "/*! SELECT 1 */",
    "/*M! SELECT 1 */",
    "*/",
    "/*",
    "-- ",
    "#",
    ";",
    "' INTO OUTFILE '/tmp/adc_pwned",
    "LOAD_FILE('/etc/passwd')",
    "BENCHMARK(10000000,MD5(1))",
    "0x27204f5220313d31",
    "CHAR(39)",
    "N'x' + 'y'",
    "_binary'x'",
    "x' COLLATE utf8mb4_bin --",
    "'; EXEC xp_cmdshell('dir'); --",
    "'; WAITFOR DELAY '0:0:5'; --",
    "[log_id]",
    # placeholders and format strings
    "%s",
    "%(path)s",
    "%%",
    "%",
    "?",
    "??",
    ":1",
    "$1",
    "@p1",
    "{0}",
    "{}",
    "%n%n%n",
    # control characters, NUL, Unicode tricks
    "\x00",
    "a\x00b",
    "\x1a",
    "\x7f",
    "\n",
    "\r\n",
    "\t",
    "\x0b\x0c",
    "\x85",
    "\u2028\u2029",
    "\u202eevil\u202c",
    "\u200b",
    "\ufeff",
    "\u2018 OR \u20181\u2019=\u20191",
    "\u02bc OR 1=1 --",
    "\uff07 OR 1=1 --",
    "e\u0301",
    "\U0001f600",
    "\U0001d54f\U000e0001",
    "\ud800",
    "\udfff",
    "a\ud83d",
    "\udc80\udc81",
    "\ufffd",
    "\uffff",
    # JSON breakers (dirs, files and links are JSON columns)
    '"]',
    '["',
    '{"a":',
    "\\u0000",
    "\\ud800",
    '"\\',
    "}",
    "]",
    "[",
    "null",
    "true",
    "1e999",
    "$[*]",
    "$.a",
    # trailing spaces: SQL compares 'x' and 'x ' as equal (PAD SPACE / ANSI padding)
    "sentinel ",
    "/sentinel ",
    " ",
    "   ",
    # sizes around every limit
    "x" * MAX_SITE_ID_CHARS,
    "x" * (MAX_SITE_ID_CHARS + 1),
    "h" * MAX_HASH_CHARS,
    "h" * (MAX_HASH_CHARS + 1),
    "/" + "p" * (MAX_PATH_BYTES - 1),
    "/" + "p" * MAX_PATH_BYTES,
    "/" + "\U0001f600" * ((MAX_PATH_BYTES - 1) // 4),
    "/" + "\U0001f600" * (MAX_PATH_BYTES // 4),
    "s" * MAX_SUMMARY_CHARS,
    "s" * (MAX_SUMMARY_CHARS + 1),
    "'" * 5000,
    "\\" * 4097,
    "A" * 70_000,
]

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
        assert isinstance(self.remote, MemoryRemoteRepository)
        assert isinstance(self.core, MemoryCoreRepository)
        assert isinstance(self.pipeline, MemoryPipelineRepository)
        remote, core = self.remote._store.state, self.core._store.state
        pipeline = self.pipeline._store.state
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
        assert self.expected[VERSIONS] == (3 if isinstance(self.backend, MySQLBackend) else 0)

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


BACKEND_PARAMS = [
    pytest.param(MemoryBackend, id="memory"),
    pytest.param(MySQLBackend, id="mysql", marks=pytest.mark.live),
]


@pytest.fixture(params=BACKEND_PARAMS)
def harness(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Harness]:
    backend: Backend = request.param()
    backend.setup(request)
    with asyncio.Runner() as runner:
        stack = contextlib.AsyncExitStack()
        try:
            remote = runner.run(stack.enter_async_context(backend.remote(clock)))
            core = runner.run(stack.enter_async_context(backend.core(clock)))
            pipeline = runner.run(stack.enter_async_context(backend.pipeline(clock)))
            h = Harness(backend, runner, remote, core, pipeline, clock)
            runner.run(h.write_sentinels())
            yield h
        finally:
            runner.run(stack.aclose())


# ----------------------------------------------------------------------- operations
# One per string parameter. Each feeds ``p`` to it, checks the outcome against the
# oracle and reads back what was stored; it adds the rows it created to h.expected.


async def _path_exists(h: Harness, path: str) -> bool:
    return valid_path(path) and await h.remote.get_hash_record(path) is not None


async def op_get_hash_record(h: Harness, p: str) -> None:
    ok, record = await attempt(h.remote.get_hash_record(p))
    assert ok == valid_path(p)
    assert record is None or record.path == p


async def _insert_with(h: Harness, p: str, name: str) -> None:
    path = p if name == "path" else h.fresh()
    value: Any = [p] if name in NAME_FIELDS else p
    record = {"path": path, "current_hash": "h0", name: value}
    existed = await _path_exists(h, path)
    stored = await h.remote.insert_or_update_hash(record)
    assert stored is valid_record(record)
    got = await h.remote.get_hash_record(path) if valid_path(path) else None
    if stored:
        assert got is not None and got.path == path
        if name != "prev_hash":  # computed by the backend; a given value is ignored
            assert got[name] == value
        h.expected["hash_records"] += not existed
    elif not existed:
        assert got is None


def _insert_op(name: str) -> Callable[[Harness, str], Awaitable[None]]:
    async def op(h: Harness, p: str) -> None:
        await _insert_with(h, p, name)

    op.__name__ = f"op_insert_or_update_hash_{name}"
    return op


async def op_insert_or_update_hashes(h: Harness, p: str) -> None:
    records: list[dict[str, Any]] = [
        {"path": p, "current_hash": "h1"},
        {"path": h.fresh(), "current_hash": p},
        {"path": h.fresh(), "current_hash": "h1", "files": [p, "ok"]},
        {"path": h.fresh(), "current_hash": "h1", "session_id": p},
        {"path": h.fresh(), "current_hash": "h1", "target_hash": p},
    ]
    existed = await _path_exists(h, p)
    result = await h.remote.insert_or_update_hashes(records)
    valid = [valid_record(r) for r in records]
    assert result.stored == sum(valid)
    assert [r.index for r in result.rejected] == [i for i, ok in enumerate(valid) if not ok]
    for rejected in result.rejected:
        assert rejected.reason and len(rejected.reason) < 2000
    for record, ok in zip(records, valid, strict=True):
        if ok:
            got = await h.remote.get_hash_record(record["path"])
            assert got is not None
            assert {k: got[k] for k in record} == record
    h.expected["hash_records"] += sum(valid) - (existed and valid[0])


async def op_get_single_field(h: Harness, p: str) -> None:
    ok, value = await attempt(h.remote.get_single_field(p, "current_hash"))
    assert ok == valid_path(p)
    assert value is None or isinstance(value, str)
    ok, value = await attempt(h.remote.get_single_field(SENTINEL_PATH, p))
    assert ok == (p in SINGLE_FIELDS)


async def op_set_target_hash(h: Harness, p: str) -> None:
    existed = await _path_exists(h, p)
    ok, found = await attempt(h.remote.set_target_hash(p, "t1"))
    assert ok == valid_path(p)
    assert not ok or found == existed
    path = h.fresh()
    assert await h.remote.insert_or_update_hash({"path": path, "current_hash": "h"})
    h.expected["hash_records"] += 1
    ok, found = await attempt(h.remote.set_target_hash(path, p))
    assert ok == valid_hash(p)
    expected = p if ok else None
    assert await h.remote.get_single_field(path, "target_hash") == expected
    assert not ok or found is True


async def _newest_log(h: Harness, tier: str) -> Any:
    if tier == "remote":
        logs = await h.remote.get_logs(limit=1, order_by="log_id", order_direction="DESC")
    else:
        logs = (await h.core.get_recent_logs())[:1]  # one timestamp: newest id first
    return logs[0] if logs else None


async def _put_log_with(h: Harness, p: str, name: str, tier: str) -> None:
    entry: dict[str, Any] = {"summary_message": "hostile", name: p}
    put = h.remote.put_log if tier == "remote" else h.core.put_core_log
    log_id = await put(entry)
    assert (log_id is not None) is valid_log(entry)
    if log_id is not None:
        newest = await _newest_log(h, tier)
        assert newest.log_id == log_id
        expected = p.upper() if name == "log_level" else p
        assert newest[name] == expected
        h.expected[f"{tier}_logs"] += 1


async def _idempotency_key(h: Harness, p: str, tier: str) -> None:
    put = h.remote.put_log if tier == "remote" else h.core.put_core_log
    before = await _newest_log(h, tier)
    ok, first = await attempt(put({"summary_message": "keyed"}, idempotency_key=p))
    assert ok == valid_idempotency_key(p)
    if ok:
        assert first is not None
        assert await put({"summary_message": "keyed"}, idempotency_key=p) == first
        h.expected[f"{tier}_logs"] += first > (before.log_id if before else 0)


def _log_op(name: str, tier: str) -> Callable[[Harness, str], Awaitable[None]]:
    async def op(h: Harness, p: str) -> None:
        if name == "idempotency_key":
            await _idempotency_key(h, p, tier)
        else:
            await _put_log_with(h, p, name, tier)

    op.__name__ = f"op_{'put_log' if tier == 'remote' else 'put_core_log'}_{name}"
    return op


async def op_get_logs_order_by(h: Harness, p: str) -> None:
    ok, _ = await attempt(h.remote.get_logs(order_by=p))
    assert ok == (p in LOG_ORDER_COLUMNS)


async def op_get_logs_order_direction(h: Harness, p: str) -> None:
    ok, _ = await attempt(h.remote.get_logs(order_direction=p))
    assert ok == (p.upper() in ("ASC", "DESC"))


async def op_get_logs_session_id_filter(h: Harness, p: str) -> None:
    stored = valid_log({"summary_message": "hostile", "session_id": p})
    await _put_log_with(h, p, "session_id", "remote")  # so a match may exist
    ok, entries = await attempt(h.remote.get_logs(session_id_filter=p))
    assert ok == valid_session(p)
    if ok:
        assert entries is not None
        assert all(e.session_id == p for e in entries)
        assert len(entries) >= stored  # the one just stored


async def op_delete_log_entries(h: Harness, p: str) -> None:
    ok, _ = await attempt(h.remote.delete_log_entries([p]))  # type: ignore[list-item]
    assert not ok
    ok, _ = await attempt(h.remote.delete_log_entries(p))  # type: ignore[arg-type]
    assert not ok


async def op_get_log_count_last_24h(h: Harness, p: str) -> None:
    ok, count = await attempt(h.core.get_log_count_last_24h(p))
    assert ok == valid_level(p)
    assert count is None or count >= 0


async def _site(h: Harness, site_id: str) -> list[Any]:
    return [s for s in await h.core.get_sites() if s.site_id == site_id]


async def op_put_site_heartbeat(h: Harness, p: str) -> None:
    existed = bool(valid_site_arg(p) and await _site(h, p))
    ok, _ = await attempt(h.core.put_site_heartbeat(p, hash_record_count=3))
    assert ok == valid_site_arg(p)
    if ok:
        [site] = await _site(h, p)
        assert site.last_heartbeat == h.clock.now() and site.hash_record_count == 3
        h.expected["core_sites"] += not existed


async def op_put_site_root_hash(h: Harness, p: str) -> None:
    existed = bool(valid_site_arg(p) and await _site(h, p))
    ok, _ = await attempt(h.core.put_site_root_hash(p, "root"))
    assert ok == valid_site_arg(p)
    if ok:
        [site] = await _site(h, p)
        assert site.root_hash == "root"
        h.expected["core_sites"] += not existed
    site_id = h.fresh("site")
    ok, _ = await attempt(h.core.put_site_root_hash(site_id, p))
    assert ok == valid_hash(p)
    if ok:
        [site] = await _site(h, site_id)
        assert site.root_hash == p
        h.expected["core_sites"] += 1


async def op_put_baseline(h: Harness, p: str) -> None:
    ok, baseline_id = await attempt(h.core.put_baseline(p))
    assert ok == valid_hash(p)
    if ok:
        assert isinstance(baseline_id, int)
        h.expected["core_baselines"] += 1


async def _pending(h: Harness) -> list[Any]:
    return await h.pipeline.get_pipeline_updates()


async def op_enqueue_pipeline_update(h: Harness, p: str) -> None:
    ok, update_id = await attempt(h.pipeline.enqueue_pipeline_update(p))
    assert ok == valid_path(p)
    if ok:
        [update] = [u for u in await _pending(h) if u.update_id == update_id]
        assert update.path == p and update.site_id is None
        h.expected["pipeline_updates"] += 1
    ok, update_id = await attempt(h.pipeline.enqueue_pipeline_update(h.fresh(), p))
    assert ok == valid_site_arg(p)
    if ok:
        [update] = [u for u in await _pending(h) if u.update_id == update_id]
        assert update.site_id == p
        h.expected["pipeline_updates"] += 1


async def op_put_pipeline_hash(h: Harness, p: str) -> None:
    waiting = any(u.path == p for u in await _pending(h))
    assert await h.pipeline.put_pipeline_hash(p, "answer") is (valid_path(p) and waiting)
    assert not any(u.path == p for u in await _pending(h))
    path = h.fresh()
    await h.pipeline.enqueue_pipeline_update(path)
    h.expected["pipeline_updates"] += 1
    answered = await h.pipeline.put_pipeline_hash(path, p)
    assert answered is valid_hash(p)
    assert any(u.path == path for u in await _pending(h)) is not answered


async def op_register_official_site(h: Harness, p: str) -> None:
    known = p in await h.pipeline.get_official_sites()
    ok, added = await attempt(h.pipeline.register_official_site(p))
    assert ok == valid_site_arg(p)
    if ok:
        assert added is not known
        assert (await h.pipeline.get_official_sites()).count(p) == 1
        h.expected["pipeline_sites"] += bool(added)


async def op_put_pipeline_site_completion(h: Harness, p: str) -> None:
    official = p in await h.pipeline.get_official_sites()
    done = await h.pipeline.put_pipeline_site_completion(p)
    assert done is (valid_site_arg(p) and official)
    h.expected["pipeline_completions"] += done


async def op_get_pipeline_site_completions(h: Harness, p: str) -> None:
    ok, completions = await attempt(h.pipeline.get_pipeline_site_completions(p))
    assert ok == valid_site_arg(p)
    assert completions is None or all(c.site_id == p for c in completions)


OPERATIONS: list[Callable[[Harness, str], Awaitable[None]]] = [
    op_get_hash_record,
    *(_insert_op(name) for name in ("path", *HASH_FIELDS, "session_id", *NAME_FIELDS)),
    op_insert_or_update_hashes,
    op_get_single_field,
    op_set_target_hash,
    *(
        _log_op(name, "remote")
        for name in (
            "site_id",
            "log_level",
            "session_id",
            "summary_message",
            "detailed_message",
            "idempotency_key",
        )
    ),
    op_get_logs_order_by,
    op_get_logs_order_direction,
    op_get_logs_session_id_filter,
    op_delete_log_entries,
    op_get_log_count_last_24h,
    op_put_site_heartbeat,
    op_put_site_root_hash,
    op_put_baseline,
    *(
        _log_op(name, "core")
        for name in ("site_id", "log_level", "session_id", "summary_message", "idempotency_key")
    ),
    op_enqueue_pipeline_update,
    op_put_pipeline_hash,
    op_register_official_site,
    op_put_pipeline_site_completion,
    op_get_pipeline_site_completions,
]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.__name__[3:])
def test_every_payload_in_every_string_parameter(
    harness: Harness, operation: Callable[[Harness, str], Awaitable[None]]
) -> None:
    async def sweep() -> None:
        for payload in PAYLOADS:
            try:
                await operation(harness, payload)
            except AssertionError as exc:
                raise AssertionError(f"payload {payload[:60]!r}: {exc}") from exc

    harness.run(sweep())
    harness.check_unharmed()
    # The integrity queries read every stored row, hostile names included.
    orphans = harness.run(harness.remote.find_orphaned_entries())
    untracked = harness.run(harness.remote.find_untracked_children())
    assert isinstance(orphans, list) and isinstance(untracked, list)


SPECIAL_CHARS = "\x00\x01\x1a\x1f\x7f\x85 \t\n\r'\"`\\/%?;#-*\u2028\u202e\u200b\ufeff\ufffd"
characters = st.one_of(
    st.characters(exclude_categories=[]),  # any code point, surrogates included
    st.characters(categories=["Cs"]),  # lone surrogates, more often
    st.sampled_from(SPECIAL_CHARS),
)
hostile_text = st.one_of(
    st.text(characters, max_size=80),
    st.sampled_from(PAYLOADS),
    st.builds(lambda a, b: a + b, st.sampled_from(PAYLOADS), st.text(characters, max_size=8)),
    st.builds(
        lambda s, n: s * n, st.text(characters, min_size=1, max_size=4), st.integers(1, 5000)
    ),
)
HYPOTHESIS = settings(
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@HYPOTHESIS
@given(value=hostile_text)
def test_generated_strings_in_every_string_parameter(harness: Harness, value: str) -> None:
    async def every() -> None:
        for operation in OPERATIONS:
            try:
                await operation(harness, value)
            except AssertionError as exc:
                raise AssertionError(f"{operation.__name__}: {exc}") from exc

    harness.run(every())
    harness.check_unharmed()


names = st.lists(st.one_of(hostile_text, st.text(characters, min_size=1, max_size=12)), max_size=6)
optional_text = st.one_of(st.none(), hostile_text)


@HYPOTHESIS
@given(
    record=st.fixed_dictionaries(
        {"path": st.one_of(hostile_text, st.builds("/{}".format, hostile_text))},
        optional={
            "current_hash": hostile_text,
            "target_hash": optional_text,
            "session_id": optional_text,
            "dirs": names,
            "files": names,
            "links": names,
        },
    )
)
def test_generated_records_round_trip(harness: Harness, record: dict[str, Any]) -> None:
    record.setdefault("current_hash", "h")

    async def body() -> None:
        existed = await _path_exists(harness, record["path"])
        stored = await harness.remote.insert_or_update_hash(record)
        assert stored is valid_record(record)
        if stored:
            got = await harness.remote.get_hash_record(record["path"])
            assert got is not None
            assert {k: got[k] for k in record if record[k] is not None} == {
                k: v for k, v in record.items() if v is not None
            }
            harness.expected["hash_records"] += not existed

    harness.run(body())
    harness.check_unharmed()


@HYPOTHESIS
@given(
    entry=st.fixed_dictionaries(
        {"summary_message": hostile_text},
        optional={
            "site_id": optional_text,
            "log_level": st.one_of(hostile_text, st.sampled_from(["info", "Critical", "debug"])),
            "session_id": optional_text,
            "detailed_message": optional_text,
        },
    )
)
def test_generated_log_entries_round_trip(harness: Harness, entry: dict[str, Any]) -> None:
    async def body() -> None:
        for tier in ("remote", "core"):
            put = harness.remote.put_log if tier == "remote" else harness.core.put_core_log
            log_id = await put(entry)
            assert (log_id is not None) is valid_log(entry)
            if log_id is not None:
                newest = await _newest_log(harness, tier)
                assert newest.log_id == log_id
                for key, value in entry.items():
                    assert newest[key] == (value.upper() if key == "log_level" else value)
                harness.expected[f"{tier}_logs"] += 1

    harness.run(body())
    harness.check_unharmed()


child_names = st.lists(
    st.text(characters, min_size=1, max_size=10).filter(valid_name), min_size=1, max_size=5
)


@settings(
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(listed=child_names, unlisted=child_names, mask=st.lists(st.booleans(), max_size=5))
@example(listed=["\x1f", "\x0b"], unlisted=["0"], mask=[True, False])  # JSON \u001F vs \u001f
@example(listed=["a ", "A"], unlisted=["a"], mask=[])  # PAD SPACE, case folding
@example(listed=['a"b', "c\\d", "\u00e9", "e\u0301", "%_"], unlisted=["e"], mask=[True, False])
def test_integrity_queries_agree_on_hostile_names(
    harness: Harness, listed: list[str], unlisted: list[str], mask: list[bool]
) -> None:
    """A parent lists ``listed`` in ``dirs``; records exist for the listed names ``mask``
    picks and for the ``unlisted`` ones. Orphans are exactly the unlisted children,
    untracked children exactly the listed names without a record: names are compared
    exactly (trailing spaces, case, JSON escapes and combining marks all count)."""
    listed = list(dict.fromkeys(n for n in listed if _encodable(n)))
    unlisted = [n for n in dict.fromkeys(unlisted) if _encodable(n) and n not in listed]
    with_record = [name for name, pick in zip(listed, mask, strict=False) if pick]
    parent = harness.fresh("/tree")

    async def body() -> tuple[set[str], set[str]]:
        records = [{"path": parent, "current_hash": "p", "dirs": listed}]
        records += [{"path": f"{parent}/{n}", "current_hash": "c"} for n in with_record]
        records += [{"path": f"{parent}/{n}", "current_hash": "c"} for n in unlisted]
        result = await harness.remote.insert_or_update_hashes(records)
        assert result.stored == len(records) and result.rejected == []
        harness.expected["hash_records"] += len(records)
        inside = parent + "/"
        orphans = await harness.remote.find_orphaned_entries()
        untracked = await harness.remote.find_untracked_children()
        return {p for p in orphans if p.startswith(inside)}, {
            p for p in untracked if p.startswith(inside)
        }

    orphans, untracked = harness.run(body())
    assert orphans == {f"{parent}/{n}" for n in unlisted}
    assert untracked == {f"{parent}/{n}" for n in listed if n not in with_record}
    harness.check_unharmed()


# ------------------------------------------------------------- 100,000 names, sizes

HUNDRED_THOUSAND = 100_000


def names_of_json_size(size: int, unit: str = '"') -> list[str]:
    """Names that take exactly ``size`` bytes by :func:`names_json_bytes`, made of ``unit``
    (by default the double quote: 2 bytes of JSON each, 4 once escaped into MySQL's SQL,
    the worst expansion there is)."""
    per_unit = len(json.dumps(unit, ensure_ascii=False).encode()) - 2
    name = unit * 1000
    cost = len(json.dumps(name, ensure_ascii=False).encode()) + 1  # with its comma
    names = [name] * (size // cost)
    rest = size - len(names) * cost
    if rest:
        tail_units, filler = divmod(rest - 3, per_unit)  # quotes and comma: 3 bytes
        names.append(unit * tail_units + "x" * filler)
    assert names_json_bytes({"dirs": names}) == size
    return names


@settings(
    deadline=None,
    max_examples=4,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seeds=st.lists(st.text(characters, min_size=1, max_size=12), min_size=1, max_size=6))
def test_generated_lists_of_a_hundred_thousand_names(harness: Harness, seeds: list[str]) -> None:
    """100,000 generated names: stored and read back intact, or refused (False), exactly
    as the rules say, on every backend."""
    names = [f"{seeds[i % len(seeds)]}{i}" for i in range(HUNDRED_THOUSAND)]
    record = {"path": harness.fresh(), "current_hash": "h", "files": names}

    async def body() -> None:
        stored = await harness.remote.insert_or_update_hash(record)
        assert stored is valid_record(record)
        got = await harness.remote.get_hash_record(record["path"])
        if stored:
            assert got is not None and got.files == names
            harness.expected["hash_records"] += 1
        else:
            assert got is None

    harness.run(body())
    harness.check_unharmed()


def test_a_hundred_thousand_names_round_trip(harness: Harness) -> None:
    files = [f"f{i:06d}-ï😀" for i in range(HUNDRED_THOUSAND)]
    dirs = [f"d{i}'\"\\" for i in range(HUNDRED_THOUSAND)]
    links = ["\x1f", "e\u0301", "%", "?"] * 25
    record = {"path": harness.fresh(), "current_hash": "h", "dirs": dirs, "files": files}
    record["links"] = links
    assert valid_record(record)
    bulk = [{**record, "path": harness.fresh()} for _ in range(3)]
    restore = [
        {**record, "path": harness.fresh(), "current_dtg_first": 1, "current_dtg_latest": 2}
        for _ in range(2)
    ]

    async def body() -> None:
        assert await harness.remote.insert_or_update_hash(record)
        result = await harness.remote.insert_or_update_hashes(bulk)
        assert (result.stored, result.rejected) == (3, [])
        result = await harness.remote.restore_hash_records(restore)
        assert (result.stored, result.rejected) == (2, [])
        for path in [record["path"]] + [r["path"] for r in bulk + restore]:
            got = await harness.remote.get_hash_record(path)
            assert got is not None
            assert (got.dirs, got.files, got.links) == (dirs, files, links)
        exported = [r async for r in harness.remote.iter_hash_records(batch_size=2)]
        assert sum(len(r.files) == HUNDRED_THOUSAND for r in exported) == 6
        harness.expected["hash_records"] += 6

    harness.run(body())
    harness.check_unharmed()


def test_names_up_to_the_limit_are_stored_one_byte_more_is_refused(harness: Harness) -> None:
    """At exactly MAX_NAMES_JSON_BYTES, with the escape-heaviest names, a record is stored
    (single, bulk next to small records, and restored: each must fit MySQL's packet);
    one byte more is refused by every write path, on every backend."""
    at_limit = names_of_json_size(MAX_NAMES_JSON_BYTES)
    over = names_of_json_size(MAX_NAMES_JSON_BYTES + 1)
    small = [
        {"path": harness.fresh(), "current_hash": "s", "files": ["x" * 3000]} for _ in range(500)
    ]
    big = [{"path": harness.fresh(), "current_hash": "b", "links": at_limit} for _ in range(2)]
    restored = [  # three: two would just fit one MySQL packet
        {
            "path": harness.fresh(),
            "current_hash": "r",
            "dirs": at_limit,
            "current_dtg_first": 1,
            "current_dtg_latest": 1,
        }
        for _ in range(3)
    ]
    too_big = {"path": harness.fresh(), "current_hash": "o", "dirs": over}
    split = {"path": harness.fresh(), "current_hash": "o", "dirs": at_limit, "files": ["x"]}
    spread = {  # exactly at the limit over three lists
        "path": harness.fresh(),
        "current_hash": "s",
        "dirs": names_of_json_size(MAX_NAMES_JSON_BYTES - 300_000),
        "files": names_of_json_size(200_000),
        "links": names_of_json_size(100_000, unit="\u00e9"),
    }
    assert names_json_bytes(spread) == MAX_NAMES_JSON_BYTES

    async def body() -> None:
        assert await harness.remote.insert_or_update_hash(big[0])
        assert await harness.remote.insert_or_update_hash(spread)
        got = await harness.remote.get_hash_record(spread["path"])
        assert got is not None and [got.dirs, got.files, got.links] == [
            spread["dirs"],
            spread["files"],
            spread["links"],
        ]
        harness.expected["hash_records"] += 1
        result = await harness.remote.insert_or_update_hashes([*small, big[1], *small[:1]])
        assert result.stored == 502 and result.rejected == []
        result = await harness.remote.restore_hash_records(restored)
        assert result.stored == 3 and result.rejected == []
        for record in (*big, *restored):
            got = await harness.remote.get_hash_record(record["path"])
            assert got is not None and (got.links or got.dirs) == at_limit
        harness.expected["hash_records"] += 1 + 501 + 3
        # One byte over, in one list or spread over two: refused everywhere.
        for record in (too_big, split):
            assert await harness.remote.insert_or_update_hash(record) is False
            result = await harness.remote.insert_or_update_hashes([record])
            assert result.stored == 0
            [rejected] = result.rejected
            assert "limit is 4194304" in rejected.reason
            assert rejected.reason.startswith("dirs:" if record is too_big else "files:")
            result = await harness.remote.restore_hash_records(
                [{**record, "current_dtg_first": 1, "current_dtg_latest": 1}]
            )
            assert result.stored == 0 and len(result.rejected) == 1
            assert await harness.remote.get_hash_record(record["path"]) is None

    harness.run(body())
    harness.check_unharmed()


def test_oversize_fields_are_refused_not_failed(harness: Harness) -> None:
    """Fields far over their limits (25 MB of names, 70,000-character hashes and ids, a
    log detail over 1,000,000 characters) are validation errors on every backend; the
    largest accepted log detail is stored, restored and read back whole."""
    huge_names = ["n" * 255] * HUNDRED_THOUSAND  # 25.6 MB of JSON
    detail = "\U0001f600\"'\\" * (MAX_DETAIL_CHARS // 4)  # the largest, escape-heavy
    entries = [
        {"summary_message": f"big{n}", "detailed_message": detail, "timestamp": harness.clock.now()}
        for n in range(3)
    ]

    async def body() -> None:
        path = harness.fresh()
        assert not await harness.remote.insert_or_update_hash(
            {"path": path, "current_hash": "h", "files": huge_names}
        )
        result = await harness.remote.insert_or_update_hashes(
            [{"path": path, "current_hash": "h", "dirs": huge_names}]
        )
        assert result.stored == 0 and result.rejected[0].index == 0
        assert await harness.remote.get_hash_record(path) is None
        for bad in ("h" * 70_000, "x" * 70_000):
            assert not await harness.remote.insert_or_update_hash(
                {"path": path, "current_hash": bad}
            )
            assert await harness.pipeline.put_pipeline_site_completion(bad) is False
            for call in (
                harness.core.put_site_heartbeat(bad),
                harness.core.put_baseline(bad),
                harness.pipeline.register_official_site(bad),
                harness.remote.get_logs(session_id_filter=bad),
            ):
                assert not (await attempt(call))[0]
        assert (
            await harness.remote.put_log({"summary_message": "s", "detailed_message": detail + "x"})
            is None
        )
        log_id = await harness.remote.put_log({"summary_message": "s", "detailed_message": detail})
        assert log_id is not None
        result = await harness.remote.restore_logs(entries)
        assert result.stored == 3 and result.rejected == []
        stored = [
            e
            async for e in harness.remote.iter_logs()
            if e.summary_message in ("s", "big0", "big1", "big2")
        ]
        assert len(stored) == 4 and all(e.detailed_message == detail for e in stored)
        harness.expected["remote_logs"] += 4

    harness.run(body())
    harness.check_unharmed()
