"""The differential driver: the same random operations on a backend and on the in-memory
reference, every answer compared.

A seeded generator (:func:`operations`) draws operations of one tier from a vocabulary
chosen to hit what backends get wrong: names equal under case-insensitive, accent- or
pad-space collations, non-BMP characters, names longer than any column, integers at and
beyond 64 bits, a path given twice in one bulk call, clock moves landing exactly on every
window edge, transactions that commit or roll back. :func:`run` applies them in lockstep
to both repositories (each on its own clock, moved together) and raises
:class:`Divergence` at the first answer that differs, with the seed, the step and the
operations so far (enough to replay the run).

Answers are compared after :func:`normalise`: log ids are per backend (an
``AUTO_INCREMENT`` is not rolled back with its transaction), so an operation names a log
entry by the order it was written, and answers show that order instead of the id.
Errors compare by kind: an invalid argument must be refused alike
(``InvalidInputError``) everywhere; any other error fails the run.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from async_db_client import FakeClock, InvalidInputError
from async_db_client.tiers import Repository

INT64_MAX = 2**63 - 1
#: Child names: case, accents (composed and not), pad space, non-BMP, JSON escapes,
#: SQL wildcards, and one longer than any VARCHAR(4096) column.
NAMES = [
    "a", "A", "á", "a\u0301", "a ", " a", "ä", "Ä", "😀", "😁", "\U0001d49c", "b", "a%", "a_", "\\",
    '"', "a\x1f", "ß", "ss", "İ", "i", "x" * 4097, "y" * 5000,
]  # fmt: skip
ROOTS = ["/t0", "/t1", "/t0/", "/"]
HASHES = ["h1", "h2", "h3", "H1", "h1 "[:2], "ü", "😀"]
SITES = ["s1", "S1", "s2", "ś1", "😀"]
SESSIONS = ["sess", "SESS", None]
LEVELS = ["DEBUG", "info", "WARNING", "ERROR", "CRITICAL"]
BIG_INTS = [0, 1, 2**31, 2**53, INT64_MAX, INT64_MAX + 1, 2**64, -1]
#: Clock moves: nothing, a second, and exactly on (and just past) every window edge.
MOVES = [
    timedelta(0),
    timedelta(seconds=1),
    timedelta(minutes=35),
    timedelta(minutes=35, microseconds=1),
    timedelta(hours=24),
    timedelta(hours=24, microseconds=1),
    timedelta(days=30),
    timedelta(days=30, seconds=1),
]


#: Timestamps at the ends of what datetime and the engines hold, and one whose conversion
#: to UTC leaves the datetime range.
EXTREME_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))),
    datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),
    datetime(1000, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


class Divergence(AssertionError):
    """A backend answered differently from the in-memory reference."""


@dataclass
class Op:
    """One operation: the repository method, its arguments, and what the driver needs."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: Set for the pseudo-operations: a clock move, or a transaction's body.
    move: timedelta | None = None
    body: list[Op] | None = None
    commit: bool = True

    def __repr__(self) -> str:
        if self.move is not None:
            return f"clock+{self.move}"
        if self.body is not None:
            return f"transaction({self.body!r}, commit={self.commit})"
        parts = [_short(_compact(a)) for a in self.args]
        parts += [f"{k}={_short(_compact(v))}" for k, v in self.kwargs.items()]
        return f"{self.name}({', '.join(parts)})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


@dataclass
class LogRef:
    """The k-th log entry written in this run (each backend knows its own id for it)."""

    k: int


# ------------------------------------------------------------------------- generation


def _path(rng: random.Random) -> str:
    root = rng.choice(ROOTS)
    if rng.random() < 0.3:
        return root
    name = rng.choice(NAMES[:-2] if rng.random() < 0.9 else NAMES)
    return f"{root.rstrip('/')}/{name}"


def _names(rng: random.Random) -> list[str]:
    return rng.sample(NAMES, rng.randint(0, 5))


def _record(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {
        "path": _path(rng),
        "current_hash": rng.choice(HASHES),
        "dirs": _names(rng),
        "files": _names(rng),
        "links": _names(rng) if rng.random() < 0.3 else [],
    }
    if rng.random() < 0.3:
        record["target_hash"] = rng.choice(HASHES)
    if rng.random() < 0.3:
        record["session_id"] = rng.choice([s for s in SESSIONS if s])
    if rng.random() < 0.05:
        record["current_hash"] = ""  # invalid: refused alike
    return record


def _log(rng: random.Random) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "summary_message": rng.choice(["m", "M", "é", "😀", "x" * 300]),
        "log_level": rng.choice(LEVELS),
    }
    if rng.random() < 0.5:
        entry["site_id"] = rng.choice(SITES)
    if rng.random() < 0.5:
        entry["session_id"] = rng.choice([s for s in SESSIONS if s])
    if rng.random() < 0.3:
        base = datetime(2024, 1, 8, 10, 30, tzinfo=UTC)
        entry["timestamp"] = base - rng.choice(MOVES) + rng.choice(MOVES)
    elif rng.random() < 0.1:
        entry["timestamp"] = rng.choice(EXTREME_TIMES)
    return entry


def _remote_op(rng: random.Random, logs_written: int) -> Op:
    kind = rng.choices(
        [
            "put", "bulk", "get", "field", "target", "priority", "log", "logs", "delete",
            "orphans", "untracked", "iter_records", "iter_logs", "restore",
        ],
        weights=[20, 6, 8, 4, 4, 2, 8, 5, 3, 3, 3, 1, 1, 1],
    )[0]  # fmt: skip
    if kind == "put":
        return Op("insert_or_update_hash", (_record(rng),))
    if kind == "bulk":
        records = [_record(rng) for _ in range(rng.randint(0, 6))]
        if records and rng.random() < 0.5:
            records.append(dict(records[0], current_hash=rng.choice(HASHES)))  # a path twice
        return Op("insert_or_update_hashes", (records,))
    if kind == "get":
        return Op("get_hash_record", (_path(rng),))
    if kind == "field":
        fields = ["current_hash", "prev_hash", "current_dtg_first", "current_dtg_latest",
                  "prev_dtg_latest", "target_hash", "session_id", "path"]  # fmt: skip
        return Op("get_single_field", (_path(rng), rng.choice(fields)))
    if kind == "target":
        return Op("set_target_hash", (_path(rng), rng.choice([*HASHES, None])))
    if kind == "priority":
        return Op("get_priority_updates")
    if kind == "log":
        return Op("put_log", (_log(rng),))
    if kind == "logs":
        return Op(
            "get_logs",
            kwargs={
                "limit": rng.choice([None, 0, 1, 3, *BIG_INTS]),
                "offset": rng.choice([0, 0, 1, 2, INT64_MAX, INT64_MAX + 1]),
                "order_by": rng.choice(["timestamp", "log_id", "site_id", "log_level",
                                        "session_id"]),
                "order_direction": rng.choice(["ASC", "desc"]),
                "session_id_filter": rng.choice(SESSIONS),
                "older_than_days": rng.choice([None, 0, 1, 30, 31]),
            },
        )  # fmt: skip
    if kind == "delete":
        refs: list[Any] = [LogRef(rng.randrange(logs_written)) for _ in range(2) if logs_written]
        # Ids no backend has (small ones would name different entries in each): refused
        # alike beyond 64 bits, not found alike below.
        refs += rng.sample([-1, 2**53, INT64_MAX, INT64_MAX + 1, 2**64, -(2**63) - 1], 2)
        return Op("delete_log_entries", (refs,))
    if kind == "orphans":
        return Op("find_orphaned_entries")
    if kind == "untracked":
        return Op("find_untracked_children")
    if kind == "iter_records":
        return Op("iter_hash_records", kwargs={"batch_size": rng.choice([1, 2, 1000])})
    if kind == "iter_logs":
        return Op("iter_logs", kwargs={"batch_size": rng.choice([1, 3, 1000])})
    stamp = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    record = dict(_record(rng), current_dtg_first=stamp, current_dtg_latest=stamp + 5)
    return Op("restore_hash_records", ([record],))


def _core_op(rng: random.Random) -> Op:
    kind = rng.choice(
        ["heartbeat", "root", "baseline", "dashboard", "recent", "count", "levels", "sites",
         "log"]
    )  # fmt: skip
    now = datetime(2024, 1, 8, 10, 30, tzinfo=UTC)
    if kind == "heartbeat":
        count = rng.choice([None, 0, 5, 2**40, INT64_MAX, INT64_MAX + 1, -1])
        return Op("put_site_heartbeat", (rng.choice(SITES),), {"hash_record_count": count})
    if kind == "root":
        when = rng.choice([None, now - rng.choice(MOVES) + rng.choice(MOVES), *EXTREME_TIMES])
        return Op("put_site_root_hash", (rng.choice(SITES), rng.choice(HASHES)),
                  {"computed_at": when})  # fmt: skip
    if kind == "baseline":
        when = rng.choice([None, now - rng.choice(MOVES)])
        return Op("put_baseline", (rng.choice(HASHES),), {"created_at": when})
    if kind == "dashboard":
        return Op("get_dashboard_content")
    if kind == "recent":
        return Op("get_recent_logs")
    if kind == "count":
        return Op("get_hash_record_count")
    if kind == "levels":
        return Op("get_log_count_last_24h", (rng.choice(LEVELS),))
    if kind == "sites":
        return Op("get_sites")
    return Op("put_core_log", (_log(rng),))


def _pipeline_op(rng: random.Random) -> Op:
    kind = rng.choice(["enqueue", "updates", "answer", "register", "official", "complete",
                       "completions"])  # fmt: skip
    if kind == "enqueue":
        return Op("enqueue_pipeline_update", (_path(rng),), {"site_id": rng.choice([None, *SITES])})
    if kind == "updates":
        return Op("get_pipeline_updates")
    if kind == "answer":
        return Op("put_pipeline_hash", (_path(rng), rng.choice(HASHES)))
    if kind == "register":
        return Op("register_official_site", (rng.choice(SITES),))
    if kind == "official":
        return Op("get_official_sites")
    if kind == "complete":
        return Op("put_pipeline_site_completion", (rng.choice(SITES),))
    return Op("get_pipeline_site_completions", (rng.choice([None, *SITES]),))


GENERATORS: dict[str, Callable[[random.Random, int], Op]] = {
    "remote": _remote_op,
    "core": lambda rng, _: _core_op(rng),
    "pipeline": lambda rng, _: _pipeline_op(rng),
}


def operations(tier: str, seed: int, steps: int) -> list[Op]:
    """``steps`` operations of ``tier``, the same for the same seed."""
    rng = random.Random(f"{tier}:{seed}")
    ops: list[Op] = []
    logs = 0
    while len(ops) < steps:
        roll = rng.random()
        if roll < 0.08:
            ops.append(Op("clock", move=rng.choice(MOVES)))
        elif roll < 0.13:
            body = [GENERATORS[tier](rng, logs) for _ in range(rng.randint(1, 4))]
            ops.append(Op("transaction", body=body, commit=rng.random() < 0.6))
        else:
            ops.append(GENERATORS[tier](rng, logs))
        logs += sum(1 for op in _flat(ops[-1:]) if op.name in ("put_log", "put_core_log"))
    return ops


def _flat(ops: list[Op]) -> list[Op]:
    return [inner for op in ops for inner in (op.body if op.body is not None else [op])]


# ---------------------------------------------------------------------------- running


#: Operations that return a new id, and the field that id appears in later.
NEW_IDS = {
    "put_log": "log_id",
    "put_core_log": "log_id",
    "enqueue_pipeline_update": "update_id",
    "put_baseline": "baseline_id",
}


class _Side:
    """One repository under test, with its own clock and its own ids (each engine numbers
    rows its own way: an AUTO_INCREMENT survives a rollback and a DELETE)."""

    def __init__(self, repo: Repository[Any], clock: FakeClock) -> None:
        self.repo = repo
        self.clock = clock
        self.ids: dict[str, list[int | None]] = {field: [] for field in NEW_IDS.values()}

    @property
    def log_ids(self) -> list[int | None]:
        return self.ids["log_id"]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, LogRef):
            return self.log_ids[value.k] if value.k < len(self.log_ids) else None
        if isinstance(value, list):
            return [v for v in (self.resolve(item) for item in value) if v is not None]
        return value

    def normalise(self, value: Any) -> Any:
        """The answer with ids shown as the order they were made in."""
        orders = {
            field: {row_id: k for k, row_id in enumerate(ids) if row_id is not None}
            for field, ids in self.ids.items()
        }
        return _normalise(value, orders)

    async def apply(self, repo: Repository[Any], op: Op) -> Any:
        args = [self.resolve(a) for a in op.args]
        kwargs = {k: self.resolve(v) for k, v in op.kwargs.items()}
        try:
            result = getattr(repo, op.name)(*args, **kwargs)
            if op.name.startswith("iter_"):
                return ("ok", [self.normalise(item) async for item in result])
            answer = await result
        except InvalidInputError as exc:
            return ("refused", exc.field)
        if op.name in NEW_IDS:
            self.ids[NEW_IDS[op.name]].append(answer)
            return ("ok", "id" if answer is not None else None)
        if op.name == "delete_log_entries":  # (deleted, ids not found): ids as written
            deleted, missing = answer
            return ("ok", (deleted, self.normalise([{"log_id": i} for i in missing])))
        return ("ok", self.normalise(answer))


def _normalise(value: Any, orders: dict[str, dict[int, int]]) -> Any:
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, dict):
        out = {k: _normalise(v, orders) for k, v in value.items()}
        for field, order in orders.items():
            if out.get(field) is not None:
                out[field] = f"{field}#{order.get(out[field], '?')}"
        return out
    if isinstance(value, list | tuple):
        return [_normalise(v, orders) for v in value]
    return value


async def run(
    tier: str,
    seed: int,
    steps: int,
    reference: contextlib.AbstractAsyncContextManager[Any],
    candidate: contextlib.AbstractAsyncContextManager[Any],
    ref_clock: FakeClock,
    clock: FakeClock,
    backend: str,
) -> int:
    """Apply :func:`operations` to both; the number of answers compared."""
    ops = operations(tier, seed, steps)
    compared = 0
    async with reference as ref_repo, candidate as repo:
        sides = (_Side(ref_repo, ref_clock), _Side(repo, clock))
        for step, op in enumerate(ops):
            if op.move is not None:
                for side in sides:
                    side.clock.advance(op.move.total_seconds())
                continue
            if op.body is not None:
                answers = [await _transaction(side, op) for side in sides]
            else:
                answers = [await side.apply(side.repo, op) for side in sides]
            compared += 1
            if answers[0] != answers[1]:
                raise Divergence(
                    f"{backend} differs from memory ({tier}, seed {seed}, step {step}): {op!r}\n"
                    f"  memory:   {_short_answer(answers[0])}\n"
                    f"  {backend}: {_short_answer(answers[1])}\n"
                    f"  ops so far: {ops[: step + 1]!r}"
                )
    return compared


class _Rollback(Exception):
    pass


async def _transaction(side: _Side, op: Op) -> Any:
    assert op.body is not None
    answers: list[Any] = []
    before = {field: len(ids) for field, ids in side.ids.items()}
    with contextlib.suppress(_Rollback):
        async with _open(side) as tx:
            for inner in op.body:
                answers.append(await side.apply(tx, inner))
            if not op.commit:
                raise _Rollback
    if not op.commit:
        # Ids made in a rolled-back transaction name nothing, and may be handed out again
        # (SQLite rolls its sequence back; MySQL's AUTO_INCREMENT and the fakes do not).
        for field, ids in side.ids.items():
            ids[before[field] :] = [None] * (len(ids) - before[field])
    return answers


@contextlib.asynccontextmanager
async def _open(side: _Side) -> AsyncIterator[Any]:
    async with side.repo.transaction() as tx:
        yield tx


def _short_answer(answer: Any) -> str:
    text = repr(_compact(answer))
    return text if len(text) < 2000 else text[:1997] + "..."


def _compact(value: Any) -> Any:
    """``value`` with long strings shortened (``'xxx…(5000)'``), for messages."""
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:12]}…({len(value)})"
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_compact(v) for v in value)
    return value
