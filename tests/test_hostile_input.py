"""Hostile input against every string parameter of every tier, on the in-memory backend and
on the live MariaDB (aiomysql, and asyncmy).

Each call must either work (and what it stored reads back exactly) or be refused the
documented way: :class:`InvalidInputError` (a ``ValueError``) from the methods that raise,
False/None from ``insert_or_update_hash``, ``put_log``, ``put_core_log``,
``put_pipeline_hash`` and ``put_pipeline_site_completion``. Which one is decided by the
documented rules, written out as oracles (``valid_path`` ...), so the library can
neither refuse valid input nor take invalid input. After each run the tables are unharmed:
sentinel rows written first are unchanged, every table still exists, and every table holds
exactly the rows the accepted calls added. The oracles and that harness are in
tests/support/hostile/oracles.py.

Two sources of input (tests/support/hostile/payloads.py): :data:`PAYLOADS`, classic
injection and breakage strings, each fed to every string parameter (one test per
parameter); and hypothesis-generated Unicode (lone surrogates, NUL and other controls,
bidi overrides, long repeats), fed to everything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from async_db_client import FakeClock
from async_db_client.models import MAX_DETAIL_CHARS, MAX_NAMES_JSON_BYTES
from async_db_client.validation import LOG_ORDER_COLUMNS, SINGLE_FIELDS
from tests.support.backends import (
    Backend,
    MemoryBackend,
    MySQLAsyncmyBackend,
    MySQLBackend,
    PostgreSQLBackend,
)
from tests.support.hostile.oracles import (
    HASH_FIELDS,
    NAME_FIELDS,
    SENTINEL_PATH,
    Harness,
    _encodable,
    attempt,
    names_json_bytes,
    valid_hash,
    valid_idempotency_key,
    valid_level,
    valid_log,
    valid_path,
    valid_record,
    valid_session,
    valid_site_arg,
)
from tests.support.hostile.payloads import (
    PAYLOADS,
    characters,
    child_names,
    hostile_text,
    names,
    names_of_json_size,
    optional_text,
)

# ------------------------------------------------------------------------- harness


BACKEND_PARAMS = [
    pytest.param(MemoryBackend, id="memory"),
    pytest.param(MySQLBackend, id="mysql", marks=pytest.mark.live),
    # Prepared statements (binary parameters) and the quoting of the text protocol.
    pytest.param(MySQLAsyncmyBackend, id="mysql-asyncmy", marks=pytest.mark.live),
    # asyncpg: binary parameters, COPY for bulk writes, json columns, COLLATE "C".
    pytest.param(PostgreSQLBackend, id="postgresql", marks=pytest.mark.live),
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
