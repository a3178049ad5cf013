"""The executor's query-timeout watchdog (one timer for all of a loop's statements) and the
read path's trusted models. The live suites cover timeouts against real servers; these
pin the mechanism itself, with a driver that answers when the test says so."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from async_db_client import QueryTimeoutError
from async_db_client import executor as executor_module
from async_db_client.config import PoolSettings
from async_db_client.drivers.base import ExecResult
from async_db_client.executor import Executor
from async_db_client.models import HashRecord, LogEntry
from async_db_client.pool import ConnectionPool


class HeldDriver:
    """Answers each statement once the test releases it (never, if it does not)."""

    description = "held://"
    transactions_lock_database = False

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def connect(self, timeout: float) -> object:
        return object()

    async def ping(self, conn: object) -> None: ...
    def needs_reset(self, conn: object) -> bool:
        return False

    async def reset(self, conn: object) -> None: ...
    async def close(self, conn: object) -> None: ...
    def abort(self, conn: object) -> None: ...
    def is_retryable_connect_error(self, exc: BaseException) -> bool:
        return False

    async def dispose(self) -> None: ...
    async def execute(self, conn: object, sql: str, params: Any) -> ExecResult:
        return ExecResult(1)

    async def fetchall(self, conn: object, sql: str, params: Any) -> list[tuple[Any, ...]]:
        self.started.set()
        await self.release.wait()
        return [(sql,)]

    async def begin(self, conn: object) -> None: ...
    async def commit(self, conn: object) -> None: ...
    async def rollback(self, conn: object) -> None: ...
    def translate(self, exc: Exception) -> Exception:
        return exc


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor_module, "CLIENT_TIMEOUT_GRACE", 0.0)


async def executor(driver: HeldDriver, query_timeout: float) -> Executor:
    settings = PoolSettings(query_timeout=query_timeout, retry_attempts=0)
    pool: ConnectionPool[Any] = ConnectionPool(driver, settings, name="held")  # type: ignore[arg-type]
    return Executor(lambda: pool, driver, settings)  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_statement_past_the_timeout_raises_and_its_connection_is_dropped(
    no_grace: None,
) -> None:
    driver = HeldDriver()
    ex = await executor(driver, 0.05)
    with pytest.raises(QueryTimeoutError, match=r"query timeout of 0\.05s"):
        await ex.fetchone("SELECT 1")
    assert ex.pool.get_stats().connections_discarded == 1  # its state is unknown
    driver.release.set()
    assert await ex.fetchone("SELECT 2") == ("SELECT 2",)  # a fresh one works
    await ex.pool.aclose()


@pytest.mark.asyncio
async def test_a_callers_cancellation_stays_a_cancellation(no_grace: None) -> None:
    driver = HeldDriver()
    ex = await executor(driver, 60)
    task = asyncio.create_task(ex.fetchone("SELECT 1"))
    await driver.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ex.pool.aclose()


@pytest.mark.asyncio
async def test_finished_statements_are_never_cancelled_later(no_grace: None) -> None:
    driver = HeldDriver()
    driver.release.set()
    ex = await executor(driver, 0.05)
    for n in range(100):  # all finished long before their deadlines
        assert await ex.fetchone(f"SELECT {n}") == (f"SELECT {n}",)
    # Past every one of those deadlines, this task idles, then runs on: not cancelled.
    await asyncio.sleep(0.2)
    assert await ex.fetchone("SELECT last") == ("SELECT last",)
    await ex.pool.aclose()


def test_trusted_models_are_what_model_construct_makes() -> None:
    values: dict[str, Any] = dict(
        path="/a", current_hash="h", prev_hash=None, current_dtg_first=1,
        current_dtg_latest=2, prev_dtg_latest=None, dirs=["d"], files=[], links=[],
        target_hash=None, session_id=None,
    )  # fmt: skip
    fast, slow = HashRecord.trusted(**values), HashRecord.model_construct(**values)
    assert fast == slow and repr(fast) == repr(slow) and fast.model_dump() == slow.model_dump()
    assert fast.__pydantic_fields_set__ == slow.__pydantic_fields_set__
    assert fast.model_copy(update={"current_hash": "x"}).current_hash == "x"
    assert fast["dirs"] == ["d"] and dict(fast) == dict(slow)
    entry = LogEntry.trusted(
        log_id=1, site_id=None, log_level="INFO", timestamp=None, session_id=None,
        summary_message="m", detailed_message=None,
    )  # fmt: skip
    assert entry == LogEntry.model_construct(**entry.__dict__)
