"""A strict T-SQL check: sqlglot's T-SQL parser plus what it is too lenient about.

sqlglot (``read='tsql'``) parses real T-SQL but also accepts some that SQL Server would
refuse: ``LIMIT`` (silently rewritten to TOP), ``RETURNING``, ``ON CONFLICT``,
``ILIKE``, ``::`` casts, MySQL/PostgreSQL functions it maps onto T-SQL ones (``NOW``,
``IFNULL``), unknown functions (parsed as anonymous calls). So on top of a clean parse:

* no token from :data:`DENIED_WORDS`, no ``::``, no backtick, no ``%s`` placeholder;
* no ``ON CONFLICT`` node, no TOP together with OFFSET;
* every function is one of :data:`ALLOWED_FUNCTIONS` (sqlglot's classes for the T-SQL
  functions the library uses) or, for calls sqlglot does not know, a name in
  :data:`ALLOWED_ANONYMOUS`.
"""

from __future__ import annotations

import sqlglot
from sqlglot import ErrorLevel, exp
from sqlglot.tokens import TokenType

DENIED_WORDS = frozenset(
    {
        "LIMIT",
        "RETURNING",
        "ILIKE",
        "NOW",
        "IFNULL",
        "GROUP_CONCAT",
        "AUTO_INCREMENT",
        "DUPLICATE",
        "JSON_TABLE",
        "JSON_CONTAINS",
        "JSON_QUOTE",
        "GET_LOCK",
        "RELEASE_LOCK",
        "LAST_INSERT_ID",
        "UNHEX",
        "CONCAT_WS",
        "SERIAL",
        "ENGINE",
    }
)
ALLOWED_FUNCTIONS = frozenset(
    {
        exp.And,
        exp.Or,
        exp.Case,
        exp.If,  # CASE WHEN branches and IF ... statements
        exp.Coalesce,
        exp.Collate,
        exp.Count,
        exp.Sum,
        exp.Max,
        exp.Min,
        exp.Exists,
        exp.ObjectId,
        exp.OpenJSON,
        exp.Cast,
    }
)
ALLOWED_ANONYMOUS = frozenset({"SYSUTCDATETIME", "SCOPE_IDENTITY", "DATALENGTH"})


class NotTSQL(AssertionError):
    """The statement is not valid (or not strictly) T-SQL."""


def check_tsql(sql: str) -> None:
    """Raise :class:`NotTSQL` naming the first problem found in ``sql``."""
    if "`" in sql:
        raise NotTSQL("backtick-quoted identifier (MySQL)")
    if "%s" in sql:
        raise NotTSQL("%s placeholder (T-SQL through ODBC uses ?)")
    for token in sqlglot.tokenize(sql, read="tsql"):
        if token.token_type in (TokenType.STRING, TokenType.NATIONAL_STRING):
            continue
        if token.token_type == TokenType.DCOLON:
            raise NotTSQL(":: cast (PostgreSQL)")
        if token.text.upper() in DENIED_WORDS:
            raise NotTSQL(f"{token.text.upper()} is not T-SQL")
    try:
        statements = sqlglot.parse(sql, read="tsql", error_level=ErrorLevel.RAISE)
    except sqlglot.errors.SqlglotError as exc:
        raise NotTSQL(f"does not parse as T-SQL: {exc}") from None
    for statement in statements:
        if statement is None:
            raise NotTSQL("empty statement")
        for node in statement.walk():
            if isinstance(node, exp.OnConflict):
                raise NotTSQL("ON CONFLICT (PostgreSQL/SQLite)")
            if (
                isinstance(node, exp.Select)
                and isinstance(node.args.get("limit"), exp.Limit)
                and node.args.get("offset") is not None
            ):
                raise NotTSQL("TOP cannot be combined with OFFSET")
            if isinstance(node, exp.Anonymous):
                if node.name.upper() not in ALLOWED_ANONYMOUS:
                    raise NotTSQL(f"unknown function {node.name}()")
            elif isinstance(node, exp.Func) and type(node) not in ALLOWED_FUNCTIONS:
                raise NotTSQL(f"function {type(node).__name__} is not one this library uses")
