"""The pytest plugin (``async_db_client.pytest_plugin``) from a user's point of view:
test files of their own, run by pytester in a subprocess under pytest-asyncio's strict
mode, under anyio's plugin, and under xdist. The plugin loads through its ``pytest11``
entry point, as for users; only where the running install predates that entry point (a
worktree on an older venv) is it named with ``-p`` (naming it both ways registers it twice,
which pytest refuses).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.support.live import MYSQL, require_mysql

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
_INSTALLED = any(ep.name == "async_db_client" for ep in metadata.entry_points(group="pytest11"))
NAMED = () if _INSTALLED else ("-p", "async_db_client.pytest_plugin")
PLUGIN = (*NAMED, "-p", "no:cacheprovider")

USER_TESTS = """
import pytest

from async_db_client import DBInstance
from async_db_client.sync import DBInstance as SyncDBInstance

RECORD = {"path": "/data", "current_hash": "ab" * 32, "dirs": ["a"], "files": ["f"]}


def test_the_sync_client_and_the_clock(adb_sync_client, adb_clock):
    assert isinstance(adb_sync_client, SyncDBInstance)
    assert adb_sync_client.insert_or_update_hash(RECORD)
    first = adb_sync_client.get_hash_record("/data")
    adb_clock.advance(hours=1)
    adb_sync_client.insert_or_update_hash({**RECORD, "current_hash": "cd" * 32})
    record = adb_sync_client.get_hash_record("/data")
    assert record.prev_hash == "ab" * 32
    assert record.current_dtg_latest - first.current_dtg_latest == 3600
    assert adb_sync_client.enqueue_pipeline_update("/data") >= 1


def test_each_test_gets_a_fresh_client(adb_sync_client):
    assert adb_sync_client.get_hash_record("/data") is None


MARK
async def test_the_async_client_over_all_three_tiers(adb_client, adb_clock):
    assert isinstance(adb_client, DBInstance)
    assert await adb_client.insert_or_update_hash(RECORD)
    record = await adb_client.get_hash_record("/data")
    assert record.current_dtg_first == int(adb_clock.now().timestamp())
    await adb_client.put_site_heartbeat("site-1")
    assert [site.site_id for site in await adb_client.get_sites()] == ["site-1"]
    assert await adb_client.register_official_site("site-1")


MARK
async def test_the_sqlite_client(adb_sqlite_client, tmp_path):
    assert await adb_sqlite_client.insert_or_update_hash(RECORD)
    assert (await adb_sqlite_client.get_hash_record("/data")).current_hash == "ab" * 32
    assert (tmp_path / "adb.sqlite3").exists()
    assert await adb_sqlite_client.health_check() == {
        "local_db": True, "core_db": True, "pipeline_db": True
    }


MARK
async def test_the_mysql_client_is_skipped_without_a_server(adb_mysql_client):
    raise AssertionError("not reached without --adb-mysql-url")


MARK
async def test_the_postgresql_client_is_skipped_without_a_server(adb_postgresql_client):
    raise AssertionError("not reached without --adb-postgresql-url")
"""


def user_tests(mark: str) -> str:
    return USER_TESTS.replace("MARK", mark)


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    return result.parseoutcomes()


def test_the_plugin_is_declared_as_a_pytest11_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entry_points = project["project"]["entry-points"]["pytest11"]
    assert entry_points == {"async_db_client": "async_db_client.pytest_plugin"}
    # The opt-out the docstring and the README give names that entry point.
    import async_db_client.pytest_plugin as plugin

    assert "-p no:async_db_client" in (plugin.__doc__ or "")


def test_under_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=user_tests("@pytest.mark.asyncio"))
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:anyio", "-rs")
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(["*no MySQL/MariaDB server given*", "*no PostgreSQL server given*"])


def test_under_anyio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=user_tests("@pytest.mark.anyio"))
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:asyncio")
    result.assert_outcomes(passed=4, skipped=2)


def test_a_sql_client_in_a_sync_test_is_refused_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="def test_sync(adb_sqlite_client):\n    pass\n",
    )
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:asyncio", "-p", "no:anyio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*use it from an async test*"])


def test_inert_until_a_fixture_is_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_user="""
import sys

def test_plain():
    # The plugin made nothing: no client, no pool, no telemetry turned on.
    from async_db_client.telemetry import hooks
    assert hooks.observe_call is None and hooks.run_statement is None
    assert len(hooks.POOLS) == 0
"""
    )
    result = pytester.runpytest_subprocess(*PLUGIN)
    result.assert_outcomes(passed=1)
    help_text = pytester.runpytest_subprocess(*PLUGIN, "--help")
    help_text.stdout.fnmatch_lines(["*--adb-mysql-url=URL*", "*--adb-postgresql-url=URL*"])


MYSQL_TESTS = """
import pytest

RECORD = {"path": "/data", "current_hash": "ab" * 32}


@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(4))
async def test_mysql(adb_mysql_client, adb_mysql_database, n):
    # Every test starts from empty tables, whatever ran before in this worker.
    assert await adb_mysql_client.get_hash_record("/data") is None
    assert await adb_mysql_client.insert_or_update_hash(RECORD)
    assert await adb_mysql_client.get_hash_record_count() == 0
    assert await adb_mysql_client.enqueue_pipeline_update("/data") >= 1
    with open("databases.txt", "a") as out:
        out.write(adb_mysql_database[1] + "\\n")
"""


def mysql_url() -> str:
    user = MYSQL["user"]
    password = f":{MYSQL['password']}" if MYSQL["password"] else ""
    return f"mysql://{user}{password}@{MYSQL['host']}:{MYSQL['port']}/adb_plugin"


@pytest.mark.live
def test_mysql_client_one_database_per_xdist_worker(pytester: pytest.Pytester) -> None:
    require_mysql()
    pytest.importorskip("xdist")
    pytester.makepyfile(test_user=MYSQL_TESTS)
    result = pytester.runpytest_subprocess(
        *PLUGIN, "-p", "no:anyio", "-n", "2", f"--adb-mysql-url={mysql_url()}"
    )
    result.assert_outcomes(passed=4)
    names = set((pytester.path / "databases.txt").read_text().split())
    assert len(names) == 2
    assert all(re.fullmatch(r"adb_plugin_gw[01]_[0-9a-f]{6}", name) for name in names)


@pytest.mark.live
def test_mysql_client_from_the_environment_without_xdist(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_mysql()
    monkeypatch.setenv("ADB_MYSQL_URL", mysql_url())
    pytester.makepyfile(test_user=MYSQL_TESTS)
    result = pytester.runpytest_subprocess(*PLUGIN, "-p", "no:anyio", "-p", "no:xdist")
    result.assert_outcomes(passed=4)
    names = set((pytester.path / "databases.txt").read_text().split())
    assert len(names) == 1 and next(iter(names)).startswith("adb_plugin_main_")
    assert sys.executable  # the subprocess ran with this interpreter


POSTGRESQL_TESTS = """
import pytest

RECORD = {"path": "/data", "current_hash": "ab" * 32}


@pytest.mark.asyncio
@pytest.mark.parametrize("n", range(4))
async def test_postgresql(adb_postgresql_client, adb_postgresql_database, n):
    # Every test starts from empty tables; all three tiers are PostgreSQL's.
    assert await adb_postgresql_client.get_hash_record("/data") is None
    assert await adb_postgresql_client.insert_or_update_hash(RECORD)
    assert await adb_postgresql_client.get_hash_record_count() == 0
    assert await adb_postgresql_client.enqueue_pipeline_update("/data") >= 1
    with open("databases.txt", "a") as out:
        out.write(adb_postgresql_database[1] + "\\n")
"""


def postgresql_url() -> str:
    from tests.support.postgres import PG

    password = f":{PG['password']}" if PG["password"] else ""
    return f"postgresql://{PG['user']}{password}@{PG['host']}:{PG['port']}/adb_plugin?sslmode=disable"


@pytest.mark.live
def test_postgresql_client_one_database_per_xdist_worker(pytester: pytest.Pytester) -> None:
    from tests.support.postgres import require_postgres

    require_postgres()
    pytest.importorskip("xdist")
    pytester.makepyfile(test_user=POSTGRESQL_TESTS)
    result = pytester.runpytest_subprocess(
        *PLUGIN, "-p", "no:anyio", "-n", "2", f"--adb-postgresql-url={postgresql_url()}"
    )
    result.assert_outcomes(passed=4)
    names = set((pytester.path / "databases.txt").read_text().split())
    assert len(names) == 2
    assert all(re.fullmatch(r"adb_plugin_gw[01]_[0-9a-f]{6}", name) for name in names)
