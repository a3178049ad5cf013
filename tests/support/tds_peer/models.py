"""Public data model of the TDS peer: what was recorded, and what to reply."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .protocol import SqlType


@dataclass(frozen=True)
class Param:
    """One RPC parameter as the driver sent it.

    ``type_decl`` is the declared SQL type from the ``@params`` declaration string
    (e.g. ``"nvarchar(4000)"``) or None when there is none (e.g. plain procedure
    calls); ``wire_type`` is the TYPE_INFO type of the value on the wire (e.g.
    ``"INTN"``, ``"NVARCHAR"``, ``"DATETIME2N"``); ``value`` is decoded to Python.
    ``wire_size``/``wire_scale`` are the TYPE_INFO max length (0xFFFF = max) / scale.
    """

    name: str
    type_decl: str | None
    value: Any
    wire_type: str = ""
    wire_size: int = 0
    wire_scale: int = 0
    output: bool = False


@dataclass
class Request:
    """One thing the driver sent: a login, a SQL batch, one RPC call, a TM request or an
    attention. ``kind`` is one of "login", "batch", "rpc", "tm", "attention"."""

    kind: str
    connection_id: int
    sql: str | None = None
    proc: str | int | None = None
    params: list[Param] = field(default_factory=list)
    raw_params: list[Param] = field(default_factory=list)
    handle: int | None = None  # prepared-statement handle (sp_prepexec/sp_prepare/sp_execute)
    transaction_descriptor: int = 0  # from ALL_HEADERS; 0 = no transaction
    tm: str | None = None  # "begin" / "commit" / "rollback" / "save" ...
    isolation: str | None = None  # TM begin isolation level, if one was sent
    tm_name: str | None = None
    tm_begin_new: bool = False  # TM commit/rollback with fBeginXact (start a new one)
    reset_connection: bool = False
    housekeeping: bool = False  # the driver's own probe (not an application statement)
    # login only
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    app_name: str | None = None
    hostname: str | None = None
    server_name: str | None = None
    library: str | None = None
    language: str | None = None
    packet_size: int | None = None
    tds_version: int | None = None
    features: dict[int, bytes] = field(default_factory=dict, repr=False)

    @property
    def executes(self) -> bool:
        """True if this request runs its statement (a batch, sp_executesql, sp_prepexec,
        sp_execute or a procedure call), False for sp_prepare / sp_unprepare / TM / login."""
        if self.kind == "batch":
            return True
        if self.kind != "rpc":
            return False
        proc = self.proc if isinstance(self.proc, str) else ""
        name = proc.rsplit(".", 1)[-1].strip("[]").lower()
        return name not in ("sp_prepare", "sp_unprepare")

    @property
    def qmark_sql(self) -> str | None:
        """``sql`` with the driver's ``@P1..@Pn`` markers turned back into ``?``."""
        if self.sql is None:
            return None
        return re.sub(r"@P\d+\b", "?", self.sql)

    @property
    def values(self) -> list[Any]:
        """The decoded parameter values, in order."""
        return [p.value for p in self.params]

    @property
    def type_decls(self) -> list[str | None]:
        return [p.type_decl for p in self.params]


@dataclass(frozen=True)
class Column:
    """A result-set column; ``sql_type`` is T-SQL type text: "int", "bigint", "bit",
    "nvarchar(50)", "nvarchar(max)", "varchar(20)", "datetime2", "datetime2(3)",
    "float", "real", "varbinary(max)", "decimal(18,2)", "date", "uniqueidentifier", ..."""

    name: str
    sql_type: str

    def parsed(self) -> SqlType:
        return SqlType.parse(self.sql_type)


@dataclass
class ResultSet:
    columns: list[Column]
    rows: Sequence[Sequence[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class ServerError:
    """An ERROR token (followed by a DONE with the error flag)."""

    number: int
    message: str
    state: int = 1
    severity: int = 16
    line: int = 1
    procedure: str = ""


@dataclass(frozen=True)
class Info:
    """An INFO token (e.g. PRINT output); no DONE of its own."""

    number: int
    message: str
    state: int = 1
    severity: int = 0


ResultItem = ResultSet | int | ServerError | Info


class Reply:
    """A sequence of results: ``ResultSet`` (rows, DONE count = number of rows), ``int``
    (DONE with DONE_COUNT), ``ServerError`` or ``Info``. ``Reply()`` is a bare DONE."""

    def __init__(self, *results: ResultItem, return_status: int = 0) -> None:
        for r in results:
            if not isinstance(r, ResultSet | int | ServerError | Info) or isinstance(r, bool):
                raise TypeError(f"unsupported reply item {r!r}")
        self.results: list[ResultItem] = list(results)
        self.return_status = return_status
        #: Seconds to hold this reply for an ATTENTION on its connection (see
        #: :meth:`until_attention`); None: sent at once.
        self.attention_within: float | None = None

    def until_attention(self, within: float) -> Reply:
        """Send this reply only once the client has sent an ATTENTION (a cancel, or the
        driver's query timeout) on the connection, waiting ``within`` seconds at most (a
        recorded error after that). So a test cancels a statement that is surely still
        running, without a responder that sleeps and hopes the cancel comes first."""
        self.attention_within = within
        return self

    @classmethod
    def rows(
        cls, columns: Iterable[tuple[str, str] | Column], rows: Iterable[Sequence[Any]]
    ) -> Reply:
        cols = [c if isinstance(c, Column) else Column(*c) for c in columns]
        return cls(ResultSet(cols, [tuple(r) for r in rows]))

    def __repr__(self) -> str:
        return f"Reply({', '.join(map(repr, self.results))})"


def as_reply(value: Reply | ResultItem | None) -> Reply | None:
    """Accept a bare ResultSet / int / ServerError from a responder as a one-item Reply."""
    if value is None or isinstance(value, Reply):
        return value
    return Reply(value)
