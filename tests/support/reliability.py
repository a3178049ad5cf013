"""Shared machinery of the fault tests: a bulk write under fire, its audit, the report.

Each fault test writes N records from several tasks through the bulk call while a fault
is injected, then audits the database directly: every record a call reported as stored
must be there exactly once with the right rotation; the others may or may not have been
applied (a lost reply), but never half or twice. The numbers go to
``benchmarks/results/reliability.json``, from which RELIABILITY.md quotes.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from async_db_client import (
    DBConnectionError,
    DBInstance,
    QueryTimeoutError,
    TransientQueryError,
)
from async_db_client.executor import CLIENT_TIMEOUT_GRACE

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "reliability.json"
#: What a call may raise under a fault; anything else fails the test.
DOCUMENTED = (DBConnectionError, QueryTimeoutError, TransientQueryError)


def fault_pool(**overrides: Any) -> dict[str, Any]:
    """Timeouts short enough that a fault shows within seconds, long enough that the
    ordinary work around it never meets them on a loaded machine (with both cores busy
    elsewhere, one 250-record upsert of eight at once took over the 1 s that was here)."""
    return {
        "min_size": 2,
        "max_size": 8,
        "acquire_timeout": 5.0,
        "connect_timeout": 2.0,
        "query_timeout": 5.0,
        "retry_attempts": 2,
        "reconnect_backoff_initial": 0.02,
        "reconnect_backoff_max": 0.2,
        "check_after_idle": 0.5,
        **overrides,
    }


def call_bound(pool: dict[str, Any]) -> float:
    """The longest one bulk call of one batch may take under these settings: every
    attempt may wait the acquire timeout, the query timeout (+ the client's grace) and a
    backoff. (Tests allow a loaded machine ``SLACK`` more.)"""
    per_attempt = (
        pool["acquire_timeout"]
        + pool["query_timeout"]
        + CLIENT_TIMEOUT_GRACE
        + pool["reconnect_backoff_max"]
    )
    return (pool["retry_attempts"] + 1) * per_attempt + 1.0


@dataclass
class Call:
    paths: list[str]
    stored: bool
    error: str | None
    seconds: float
    finished_at: float


@dataclass
class Outcome:
    calls: list[Call] = field(default_factory=list)
    _finished: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, call: Call) -> None:
        self.calls.append(call)
        self._finished.set()

    async def progress(self, calls: int) -> None:
        """Wait until ``calls`` calls have finished (so a fault lands mid-write)."""
        while len(self.calls) < calls:
            self._finished.clear()
            await self._finished.wait()

    @property
    def stored_paths(self) -> set[str]:
        return {p for c in self.calls if c.stored for p in c.paths}

    @property
    def failed_calls(self) -> list[Call]:
        return [c for c in self.calls if not c.stored]

    def first_success_after(self, moment: float) -> float | None:
        done = [c.finished_at for c in self.calls if c.stored and c.finished_at >= moment]
        return min(done) - moment if done else None


def records(paths: Iterable[str], version: str) -> list[dict[str, Any]]:
    return [{"path": p, "current_hash": version, "files": ["f"]} for p in paths]


async def bulk_under_fault(
    db: DBInstance,
    paths: list[str],
    version: str,
    inject: Callable[[Outcome], Awaitable[None]] | None = None,
    *,
    tasks: int = 8,
    per_call: int = 250,
) -> Outcome:
    """Write ``version`` of every path from ``tasks`` tasks in calls of ``per_call``,
    running ``inject`` beside them. Errors outside :data:`DOCUMENTED` propagate."""
    outcome = Outcome()
    groups = [paths[i::tasks] for i in range(tasks)]

    async def worker(group: list[str]) -> None:
        for start in range(0, len(group), per_call):
            chunk = group[start : start + per_call]
            began = time.monotonic()
            try:
                result = await db.insert_or_update_hashes(records(chunk, version))
                stored, error = result.stored == len(chunk), None
            except DOCUMENTED as exc:
                stored, error = False, type(exc).__name__
            now = time.monotonic()
            outcome.add(Call(chunk, stored, error, now - began, now))

    jobs = [worker(group) for group in groups]
    if inject is not None:
        jobs.append(inject(outcome))
    await asyncio.gather(*jobs)
    return outcome


def audit(
    rows: dict[str, tuple[str, str | None]], paths: list[str], outcome: Outcome
) -> dict[str, int]:
    """Check the table against what the calls reported; return the counts."""
    missing = [p for p in paths if p not in rows]
    stored = outcome.stored_paths
    wrong = [p for p in stored if rows.get(p) != ("v2", "v1")]
    odd = [p for p in paths if p in rows and rows[p] not in {("v1", None), ("v2", "v1")}]
    assert not missing, f"{len(missing)} records lost, e.g. {missing[:3]}"
    assert not wrong, f"{len(wrong)} records reported stored but not rotated, e.g. {wrong[:3]}"
    assert not odd, f"{len(odd)} records in an impossible state, e.g. {odd[:3]}"
    return {
        "records": len(paths),
        "reported_stored": len(stored),
        "applied_without_report": sum(1 for p in paths if p not in stored and rows[p][0] == "v2"),
        "lost": len(missing),
        "duplicated": 0,  # the path is the primary key; the audit counted distinct rows
        "failed_calls": len(outcome.failed_calls),
    }


def report(name: str, **numbers: Any) -> None:
    """Record this run's numbers for RELIABILITY.md (``make reliability`` sets
    ``ADC_RELIABILITY_REPORT=1``; ordinary test runs leave the file alone)."""
    if os.environ.get("ADC_RELIABILITY_REPORT") != "1":
        return
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    data[name] = {**numbers, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    REPORT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
