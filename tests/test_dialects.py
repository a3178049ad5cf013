"""The dialects' SQL on its own: golden files pin it, real parsers check the T-SQL
(sqlglot, strict) and the PostgreSQL (pglast: PostgreSQL's own parser, libpg_query)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from async_db_client.dialects.base import Dialect
from async_db_client.dialects.mysql import MySQLDialect
from async_db_client.dialects.postgresql import PostgreSQLDialect
from async_db_client.dialects.tsql import TSQLDialect
from async_db_client.validation import LOG_ORDER_COLUMNS, SINGLE_FIELDS
from tests.support.tsql_check import NotTSQL, check_tsql

GOLDEN = Path(__file__).resolve().parent / "golden"
DIALECTS: dict[str, Dialect] = {
    "mysql": MySQLDialect(),
    "postgresql": PostgreSQLDialect(),
    "tsql": TSQLDialect(),
}
TSQL = TSQLDialect().all_statements()
POSTGRESQL = PostgreSQLDialect().all_statements()


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_statements_match_the_golden_file(name: str) -> None:
    """Any change to emitted SQL shows up here; regenerate with UPDATE_GOLDEN=1."""
    path = GOLDEN / f"{name}_statements.json"
    statements = DIALECTS[name].all_statements()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(statements, indent=1, ensure_ascii=False) + "\n")
    assert statements == json.loads(path.read_text())


@pytest.mark.parametrize("name", sorted(TSQL))
def test_every_tsql_statement_is_strict_tsql(name: str) -> None:
    check_tsql(TSQL[name])


def _parse_postgresql(sql: str) -> Any:
    """PostgreSQL's own parse tree of ``sql`` as the asyncpg driver sends it ($n)."""
    pglast = pytest.importorskip("pglast")
    from async_db_client.drivers.asyncpg import to_dollar_style

    return pglast.parse_sql(to_dollar_style(sql))


@pytest.mark.parametrize("name", sorted(POSTGRESQL))
def test_every_postgresql_statement_parses(name: str) -> None:
    sql = POSTGRESQL[name]
    tree = _parse_postgresql(sql)
    assert len(tree) == 1, "one statement per call"
    from async_db_client.drivers.asyncpg import to_dollar_style

    assert to_dollar_style(sql).count("$") == sql.count("?"), "every placeholder numbered"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT `a` FROM t",
        "INSERT INTO t (a) VALUES (?) ON DUPLICATE KEY UPDATE a = VALUES(a)",
        "SELECT a FROM t WITH (NOLOCK)",
        "SELEC a FROM t",
        MySQLDialect().upsert_hashes(1),
        MySQLDialect().untracked(),
    ],
)
def test_the_postgresql_parser_refuses_other_dialects(sql: str) -> None:
    pglast = pytest.importorskip("pglast")
    with pytest.raises(pglast.parser.ParseError):
        _parse_postgresql(sql)


def test_postgresql_rotation_and_byte_wise_names() -> None:
    dialect = PostgreSQLDialect()
    for sql in (dialect.upsert_hashes(2), dialect.merge_staged()):
        assert "ON CONFLICT (path_key) DO UPDATE SET" in sql
        # every SET expression reads the old row: the rotation is one statement
        assert "prev_hash = CASE WHEN hash_records.current_hash = EXCLUDED.current_hash" in sql
    assert 'COLLATE "C"' in dialect.orphans() and 'COLLATE "C"' in dialect.untracked()
    assert "ON COMMIT DROP" in dialect.create_staging()
    assert "pg_advisory_xact_lock" in dialect.lock_migrations()
    assert "current_database()" in dialect.lock_migrations()
    ddl = " ".join(s for m in dialect.migration_steps for s in m.statements)
    times = re.findall(r"\b(\w+_at|last_heartbeat) (\w+)", ddl)
    assert times and {kind for _, kind in times} == {"timestamptz"}


@pytest.mark.parametrize("rows", [1, 2, 166])
def test_bulk_statements_stay_under_the_parameter_limit(rows: int) -> None:
    dialect = TSQLDialect()
    sql = dialect.upsert_hashes(rows)
    check_tsql(sql)
    assert sql.count("?") == rows * dialect.upsert_params_per_row
    largest = dialect.max_params // dialect.upsert_params_per_row
    assert largest * dialect.upsert_params_per_row <= 2100
    assert dialect.upsert_hashes(largest).count("?") <= 2100


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT a FROM t LIMIT 5",
        "INSERT INTO t (a) VALUES (?) RETURNING id",
        "SELECT a FROM t WHERE a ILIKE 'x%'",
        "SELECT a::int FROM t",
        "SELECT NOW()",
        "SELECT IFNULL(a, b) FROM t",
        "SELECT frobnicate(a) FROM t",
        "INSERT INTO t (a) VALUES (?) ON CONFLICT DO NOTHING",
        "SELECT `a` FROM t",
        "SELECT a FROM t WHERE b = %s",
        "SELEC a FROM t",
        "SELECT TOP (1) a FROM t ORDER BY a OFFSET 1 ROWS",
        "SELECT a FROM (SELECT 1 AS a",
        MySQLDialect().upsert_hashes(1),
        MySQLDialect().untracked(),
        MySQLDialect().orphans(),
        MySQLDialect().lock_migrations(),
        MySQLDialect().select_logs("remote", by_session=False, older=False, limit=True),
    ],
)
def test_the_checker_refuses_what_sql_server_would(sql: str) -> None:
    with pytest.raises(NotTSQL):
        check_tsql(sql)


def test_identifiers_only_come_from_whitelists() -> None:
    dialect = TSQLDialect()
    for field in SINGLE_FIELDS:
        assert field in dialect.select_field(field)
    with pytest.raises(ValueError):
        dialect.select_field("path; DROP TABLE hash_records")
    for column in LOG_ORDER_COLUMNS:
        dialect.select_logs("remote", by_session=False, older=False, order_by=column)
    with pytest.raises(KeyError):
        dialect.select_logs("remote", by_session=False, older=False, order_by="1; --")


def test_paging_parameters_follow_each_dialects_order() -> None:
    assert MySQLDialect().paging_params(10, 20) == [10, 20]
    assert TSQLDialect().paging_params(10, 20) == [20, 10]
    assert TSQLDialect().paging_params(10, 0) == [0, 10]
    assert TSQLDialect().paging_params(None, 5) == [5]
    assert TSQLDialect().paging_params(None, 0) == []
