"""Least privilege: once an admin has migrated, a user with only SELECT, INSERT, UPDATE and
DELETE on the library's tables runs everything (the contract suites run as such a user:
backend ``mysql-least-privilege`` in tests/support/backends.py). These tests prove the grant is
really that narrow and that the library never asks for more."""

from __future__ import annotations

import contextlib
import re

import pymysql
import pytest

from async_db_client import DBClientFactory, FakeClock
from async_db_client.backends.sql import SQLRemoteStore
from tests.support.backends import MySQLLeastPrivilegeBackend
from tests.support.live import (
    LIBRARY_TABLES,
    LeastPrivilegeDatabase,
    connect,
    empty_tables,
    mysql_config,
)

pytestmark = pytest.mark.live


def runtime_connection(grant: LeastPrivilegeDatabase) -> pymysql.connections.Connection:
    return connect(grant.database, user=grant.user, password=grant.password)


def test_runtime_user_holds_only_dml_on_the_library_tables(
    mysql_least_privilege: LeastPrivilegeDatabase,
) -> None:
    grant = mysql_least_privilege
    with connect() as conn, conn.cursor() as cursor:
        cursor.execute("SHOW GRANTS FOR %s@'%%'", (grant.user,))
        lines = [row[0] for row in cursor.fetchall()]
    granted: dict[str, set[str]] = {}
    for line in lines:
        match = re.match(r"GRANT (.+) ON (\S+) TO ", line)
        assert match, line
        granted[match.group(2)] = {p.strip() for p in match.group(1).split(",")}
    expected = {f"`{grant.database}`.`{table}`" for table in LIBRARY_TABLES}
    assert granted.pop("*.*") == {"USAGE"}  # no global privilege at all
    assert set(granted) == expected
    assert all(p == {"SELECT", "INSERT", "UPDATE", "DELETE"} for p in granted.values())


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (x INT)",
        "DROP TABLE hash_records",
        "TRUNCATE TABLE remote_logs",
        "ALTER TABLE hash_records ADD COLUMN x INT",
        "CREATE INDEX idx_x ON hash_records (current_hash)",
        "LOCK TABLES hash_records WRITE",
        "CREATE TEMPORARY TABLE scratch (x INT)",
        "SELECT * FROM mysql.user",
    ],
)
def test_runtime_user_cannot_change_the_schema(
    mysql_least_privilege: LeastPrivilegeDatabase, statement: str
) -> None:
    with (
        contextlib.closing(runtime_connection(mysql_least_privilege)) as conn,
        conn.cursor() as cursor,
        pytest.raises(pymysql.err.OperationalError) as info,
    ):
        cursor.execute(statement)
    assert info.value.args[0] in (1142, 1044, 1227), info.value  # ... command denied


@pytest.mark.asyncio
async def test_contract_backend_runs_as_the_runtime_user(
    mysql_least_privilege: LeastPrivilegeDatabase,
) -> None:
    backend = MySQLLeastPrivilegeBackend()
    backend.grant = mysql_least_privilege
    backend.database = mysql_least_privilege.database
    async with backend.remote(FakeClock()) as repo:
        assert isinstance(repo.store, SQLRemoteStore)
        row = await repo.store.executor.fetchone("SELECT CURRENT_USER()")
        assert row is not None and row[0] == f"{mysql_least_privilege.user}@%"
        assert await repo.insert_or_update_hash({"path": "/lp", "current_hash": "h"})


@pytest.mark.asyncio
async def test_auto_migrate_on_a_current_schema_needs_no_ddl_rights(
    mysql_least_privilege: LeastPrivilegeDatabase,
) -> None:
    """The default ``auto_migrate: true`` only reads the schema version when it is current,
    so a runtime user may keep it (it used to issue CREATE TABLE IF NOT EXISTS)."""
    grant = mysql_least_privilege
    empty_tables(grant.database, "remote")
    empty_tables(grant.database, "core")
    tier = {**mysql_config(grant.database), "user": grant.user, "password": grant.password}
    for name in ("remote", "core"):
        config = {"database": {f"{name}_type": "mysql", f"{name}_config": tier}}
        async with DBClientFactory(config).create_client() as db:
            versions = await db.migrate()
            assert versions == {name: 1}
            if name == "remote":
                assert await db.insert_or_update_hash({"path": "/auto", "current_hash": "h"})
                record = await db.get_hash_record("/auto")
                assert record is not None and record.current_hash == "h"
            else:
                await db.put_site_heartbeat("site-lp")
                assert [s.site_id for s in await db.get_sites()] == ["site-lp"]
