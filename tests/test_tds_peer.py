"""Self-tests of the recording TDS peer through Microsoft's real ODBC Driver 18 (pyodbc and
aioodbc), plus driver-free tests of the codec and of the raw protocol handling.

The driver comes from ``tools/install_msodbc.sh``. Without it the driver tests are skipped,
except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import pytest

from tests.support.tds_peer import (
    DRIVER_NAME,
    Column,
    Info,
    PeerError,
    Reply,
    Request,
    ResultSet,
    ServerError,
    TDSPeer,
)
from tests.support.tds_peer import protocol as p
from tests.support.waiting import PATIENCE

try:
    import pyodbc
except ImportError:  # pragma: no cover - pyodbc is a test dependency of the mssql extra
    pyodbc = None

if pyodbc is not None:
    pyodbc.pooling = False  # must happen before the first connect in this process

USER = "app_user"
PASSWORD = "S3cret;pw}"  # a ';' and a '}' exercise the connection-string quoting
DATABASE = "monitoring"


def _driver_problem() -> str | None:
    if pyodbc is None:
        return "pyodbc is not installed"
    if DRIVER_NAME not in pyodbc.drivers():
        return f"'{DRIVER_NAME}' is not registered with unixODBC (run tools/install_msodbc.sh)"
    return None


@pytest.fixture(scope="session")
def msodbc() -> None:
    problem = _driver_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Microsoft ODBC driver unavailable under CI: {problem}")
        pytest.skip(f"Microsoft ODBC driver unavailable: {problem}")


@pytest.fixture
def peer(msodbc: None) -> Iterator[TDSPeer]:
    with TDSPeer() as running:
        yield running


@pytest.fixture
def conn(peer: TDSPeer) -> Iterator[Any]:
    cnxn = pyodbc.connect(
        peer.connection_string(database=DATABASE, user=USER, password=PASSWORD),
        autocommit=True,
        timeout=10,
    )
    try:
        yield cnxn
    finally:
        cnxn.close()
    peer.check()


def _app(peer: TDSPeer) -> list[Request]:
    return peer.app_requests()


# ---------------------------------------------------------------------------------------
# connect / login
# ---------------------------------------------------------------------------------------
def test_login_is_recorded(peer: TDSPeer) -> None:
    cnxn = pyodbc.connect(
        peer.connection_string(database=DATABASE, user=USER, password=PASSWORD),
        autocommit=True,
        timeout=10,
    )
    cnxn.close()
    logins = peer.logins()
    assert len(logins) == 1
    login = logins[0]
    assert login.user == USER
    assert login.database == DATABASE
    assert login.library == "ODBC"
    assert login.app_name
    assert login.tds_version == 0x74000004
    same = login.password == PASSWORD  # compared without showing the secret on failure
    assert same, "LOGIN7 password did not decode to the one in the connection string"
    assert "S3cret" not in repr(login)
    # connect-time housekeeping: four type-info probes, nothing the application sent
    probes = [r for r in peer.requests if r.kind == "rpc"]
    assert probes and all(r.housekeeping for r in probes)
    assert {r.proc for r in probes} == {"[sys].sp_datatype_info_100"}
    assert sorted(r.params[0].value for r in probes) == [-9, -3, 12, 93]
    assert peer.statements() == []


def test_autocommit_off_connect_begins_transaction(peer: TDSPeer) -> None:
    cnxn = pyodbc.connect(peer.connection_string(), timeout=10)  # autocommit off
    try:
        assert peer.tm_ops() == ["begin"]
    finally:
        cnxn.close()


def test_login_error_surfaces(msodbc: None) -> None:
    error = ServerError(18456, "Login failed for user 'nobody'.", state=1, severity=14)
    with TDSPeer(login_error=error) as peer:
        with pytest.raises(pyodbc.Error) as info:
            pyodbc.connect(peer.connection_string(user="nobody"), timeout=10)
        assert "18456" in str(info.value)
        assert "Login failed" in str(info.value)
        assert peer.logins()[0].user == "nobody"


# ---------------------------------------------------------------------------------------
# statements, parameters, result sets
# ---------------------------------------------------------------------------------------
def test_select_with_parameters(peer: TDSPeer, conn: Any) -> None:
    peer.on(
        r"^SELECT \? AS a, \? AS b$",
        ResultSet([Column("a", "int"), Column("b", "nvarchar(10)")], [(5, "héllo")]),
    )
    cur = conn.cursor()
    cur.execute("SELECT ? AS a, ? AS b", 5, "héllo")
    assert [tuple(r) for r in cur.fetchall()] == [(5, "héllo")]
    assert [d[0] for d in cur.description] == ["a", "b"]

    (req,) = _app(peer)
    assert req.kind == "rpc"
    assert req.proc == "sp_prepexec"
    assert req.sql == "SELECT @P1 AS a, @P2 AS b"
    assert req.qmark_sql == "SELECT ? AS a, ? AS b"
    assert req.values == [5, "héllo"]
    assert [p.name for p in req.params] == ["@P1", "@P2"]
    assert req.params[0].type_decl == "int"
    assert req.params[0].wire_type == "INTN"
    assert req.params[1].type_decl is not None
    assert req.params[1].type_decl.startswith("nvarchar(")
    assert req.params[1].wire_type == "NVARCHAR"
    assert peer.statements() == ["SELECT @P1 AS a, @P2 AS b"]


def test_parameter_types_are_decoded(peer: TDSPeer, conn: Any) -> None:
    values = [
        datetime(2024, 1, 8, 10, 30, 15, 123456),
        None,
        True,
        1.5,
        2**40,
        "x" * 5000,
        b"\x00\x01\xfe\xff",
        Decimal("12.34"),
        date(2024, 2, 29),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        -7,
        "",
    ]
    cur = conn.cursor()
    sql = "INSERT INTO t VALUES (" + ", ".join("?" * len(values)) + ")"
    cur.execute(sql, *values)
    reqs = _app(peer)
    # A None parameter makes pyodbc call SQLDescribeParam: sp_describe_undeclared_parameters
    # (housekeeping), then the driver prepares and executes separately.
    assert [r.proc for r in peer.requests if r.kind == "rpc" and not r.housekeeping] == [
        "sp_prepare",
        "sp_execute",
    ]
    (execute,) = reqs
    prepare = peer.of_kind("rpc")[-2]
    assert prepare.proc == "sp_prepare"
    assert execute.handle == prepare.handle
    assert prepare.qmark_sql == sql
    assert execute.qmark_sql == sql
    assert execute.values == values
    got = [(p.type_decl, p.wire_type) for p in execute.params]
    assert got[0] == ("datetime2", "DATETIME2N")
    assert execute.params[0].wire_scale == 7
    assert got[1][1] == "NVARCHAR"  # None, typed as described (nvarchar by default)
    assert got[2] == ("bit", "BITN")
    assert got[3] == ("float", "FLTN")
    assert got[4] == ("bigint", "INTN")
    # strings over 4000 bytes are bound as SQL_WLONGVARCHAR: declared ntext, sent as
    # nvarchar(max) (PLP) on the wire
    assert got[5] == ("ntext", "NVARCHAR")
    assert execute.params[5].wire_size == 0xFFFF
    assert got[6] == ("varbinary(4)", "BIGVARBIN")
    assert got[7][1] in ("NUMERICN", "DECIMALN")
    assert got[8] == ("date", "DATEN")
    assert got[9] == ("uniqueidentifier", "GUID")
    assert got[10] == ("int", "INTN")
    assert got[11][1] == "NVARCHAR"
    describe = [r for r in peer.requests if r.proc == "sp_describe_undeclared_parameters"]
    assert len(describe) == 1
    assert describe[0].housekeeping


def test_long_binary_parameter(peer: TDSPeer, conn: Any) -> None:
    blob = bytes(range(256)) * 40  # 10240 bytes > 8000: bound as long binary (image)
    conn.cursor().execute("INSERT INTO blobs VALUES (?)", blob)
    (req,) = _app(peer)
    assert req.proc == "sp_execute"  # long data goes as sp_prepare + sp_execute
    assert req.values == [blob]
    assert req.params[0].wire_type == "BIGVARBIN"
    assert req.params[0].wire_size == 0xFFFF


def test_reexecution_records_each_call(peer: TDSPeer, conn: Any) -> None:
    peer.on("^SELECT", ResultSet([Column("n", "int")], [(1,)]))
    cur = conn.cursor()
    for i in range(3):
        cur.execute("SELECT ? + 0", i)
        assert cur.fetchone()[0] == 1
    reqs = _app(peer)
    assert [r.values for r in reqs] == [[0], [1], [2]]
    assert all(r.qmark_sql == "SELECT ? + 0" for r in reqs)


def test_result_set_types_and_nulls(peer: TDSPeer, conn: Any) -> None:
    columns = [
        Column("i", "int"),
        Column("bi", "bigint"),
        Column("b", "bit"),
        Column("nv", "nvarchar(50)"),
        Column("v", "varchar(20)"),
        Column("dt", "datetime2"),
        Column("f", "float"),
        Column("vb", "varbinary(16)"),
        Column("nmax", "nvarchar(max)"),
        Column("bmax", "varbinary(max)"),
        Column("d", "date"),
        Column("dec", "decimal(18,4)"),
        Column("g", "uniqueidentifier"),
        Column("dt3", "datetime2(3)"),
        Column("si", "smallint"),
        Column("ti", "tinyint"),
        Column("r", "real"),
        Column("legacy", "datetime"),
    ]
    row = (
        -5,
        2**40 + 5,
        True,
        "grüße ✓",
        "plain",
        datetime(2024, 1, 8, 10, 30, 15, 123456),
        2.25,
        b"\x00\xff",
        "m" * 10000,
        b"\x01" * 20000,
        date(1999, 12, 31),
        Decimal("-1234.5678"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        datetime(2024, 1, 8, 10, 30, 15, 123000),
        -300,
        200,
        0.5,
        datetime(2024, 1, 8, 10, 30, 15, 120000),
    )
    nulls = (None,) * len(columns)
    peer.on("^SELECT", ResultSet(columns, [row, nulls]))
    cur = conn.cursor()
    cur.execute("SELECT everything")
    got = [tuple(r) for r in cur.fetchall()]
    assert got[1] == nulls
    assert got[0][:8] == row[:8]
    assert got[0][8] == row[8]
    assert got[0][9] == row[9]
    assert got[0][10:12] == row[10:12]
    assert got[0][12] == str(row[12])  # pyodbc returns GUIDs as str unless native_uuid
    assert got[0][13:17] == row[13:17]
    assert abs(got[0][17] - row[17]).total_seconds() < 0.004
    assert [d[0] for d in cur.description] == [c.name for c in columns]
    (req,) = _app(peer)
    assert req.kind == "batch"  # no parameters: a plain SQL batch


def test_rowcount_from_done(peer: TDSPeer, conn: Any) -> None:
    peer.on("^UPDATE", 3)
    peer.on("^DELETE", Reply(7))
    cur = conn.cursor()
    cur.execute("UPDATE t SET a = 1")
    assert cur.rowcount == 3
    cur.execute("DELETE FROM t WHERE a = ?", 1)
    assert cur.rowcount == 7
    assert peer.statements() == ["UPDATE t SET a = 1", "DELETE FROM t WHERE a = @P1"]


def test_merge_reply_rowcount(peer: TDSPeer, conn: Any) -> None:
    peer.on(r"^MERGE", 1)
    cur = conn.cursor()
    cur.execute(
        "MERGE dirs AS t USING (SELECT ? AS path) AS s ON t.path = s.path "
        "WHEN MATCHED THEN UPDATE SET hash = ? "
        "WHEN NOT MATCHED THEN INSERT (path, hash) VALUES (s.path, ?);",
        "/a",
        "h1",
        "h1",
    )
    assert cur.rowcount == 1
    assert _app(peer)[0].values == ["/a", "h1", "h1"]


def test_insert_output_returns_canned_id(peer: TDSPeer, conn: Any) -> None:
    peer.on(r"OUTPUT INSERTED\.log_id", ResultSet([Column("log_id", "bigint")], [(2**40 + 1,)]))
    cur = conn.cursor()
    cur.execute("INSERT INTO sync_log (path) OUTPUT INSERTED.log_id VALUES (?)", "/data/x")
    assert cur.fetchone()[0] == 2**40 + 1
    (req,) = _app(peer)
    assert req.values == ["/data/x"]


def test_multiple_statements_in_one_batch(peer: TDSPeer, conn: Any) -> None:
    peer.on("SET NOCOUNT ON", ResultSet([Column("id", "bigint")], [(99,)]))
    cur = conn.cursor()
    cur.execute("SET NOCOUNT ON; INSERT INTO t (a) VALUES (?); SELECT SCOPE_IDENTITY() AS id", 5)
    assert cur.fetchone()[0] == 99
    cur.execute("SET NOCOUNT ON; UPDATE t SET a = 2; SELECT 1 AS id")
    assert cur.fetchone()[0] == 99
    first, second = _app(peer)
    assert first.kind == "rpc"
    assert first.values == [5]
    assert second.kind == "batch"
    assert second.sql == "SET NOCOUNT ON; UPDATE t SET a = 2; SELECT 1 AS id"


def test_multiple_results_and_nextset(peer: TDSPeer, conn: Any) -> None:
    peer.on(
        "^EXEC report",
        Reply(
            2,
            ResultSet([Column("a", "int")], [(1,), (2,)]),
            ResultSet([Column("b", "nvarchar(5)")], [("x",)]),
        ),
    )
    cur = conn.cursor()
    cur.execute("EXEC report ?", 1)
    assert cur.rowcount == 2
    assert cur.nextset()
    assert [r[0] for r in cur.fetchall()] == [1, 2]
    assert cur.nextset()
    assert [r[0] for r in cur.fetchall()] == ["x"]
    assert not cur.nextset()


def test_default_reply_is_empty_done(peer: TDSPeer, conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("SET XACT_ABORT ON")
    cur.execute("UPDATE t SET a = ?", 1)
    assert cur.rowcount in (0, -1)
    with pytest.raises(pyodbc.ProgrammingError):
        cur.fetchone()  # no result set
    assert peer.statements() == ["SET XACT_ABORT ON", "UPDATE t SET a = @P1"]


def test_info_messages_reach_cursor_messages(peer: TDSPeer, conn: Any) -> None:
    peer.on("^PRINT", Reply(Info(0, "hello from the server"), 2))
    cur = conn.cursor()
    cur.execute("PRINT 'hello'; UPDATE t SET a = 1")
    assert cur.rowcount == 2
    assert any("hello from the server" in m[1] for m in cur.messages)


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------
def test_unique_violation_is_integrity_error(peer: TDSPeer, conn: Any) -> None:
    peer.on(
        "^INSERT",
        ServerError(
            2627,
            "Violation of PRIMARY KEY constraint 'PK_dirs'. Cannot insert duplicate key in "
            "object 'dbo.dirs'. The duplicate key value is (/a).",
            state=1,
            severity=14,
        ),
    )
    cur = conn.cursor()
    with pytest.raises(pyodbc.IntegrityError) as info:
        cur.execute("INSERT INTO dirs (path) VALUES (?)", "/a")
    assert info.value.args[0] == "23000"
    assert "(2627)" in str(info.value)
    # the connection stays usable
    peer.on("^SELECT", ResultSet([Column("one", "int")], [(1,)]))
    cur.execute("SELECT 1")
    assert cur.fetchone()[0] == 1


def test_deadlock_is_error_with_number(peer: TDSPeer, conn: Any) -> None:
    peer.on(
        "^UPDATE",
        ServerError(
            1205,
            "Transaction (Process ID 51) was deadlocked on lock resources with another "
            "process and has been chosen as the deadlock victim. Rerun the transaction.",
            state=51,
            severity=13,
        ),
    )
    cur = conn.cursor()
    with pytest.raises(pyodbc.Error) as info:
        cur.execute("UPDATE dirs SET hash = ? WHERE path = ?", "h", "/a")
    assert "1205" in str(info.value)
    assert info.value.args[0] == "40001"


def test_error_in_plain_batch(peer: TDSPeer, conn: Any) -> None:
    peer.on("^DROP", ServerError(3701, "Cannot drop the table 'x', because it does not exist."))
    with pytest.raises(pyodbc.Error) as info:
        conn.cursor().execute("DROP TABLE x")
    assert "3701" in str(info.value)


def test_responder_exception_becomes_server_error(msodbc: None) -> None:
    def boom(req: Request) -> Reply:
        raise RuntimeError("responder bug")

    with pytest.raises(PeerError, match="responder bug"), TDSPeer(responder=boom) as peer:
        cnxn = pyodbc.connect(peer.connection_string(), autocommit=True, timeout=10)
        try:
            with pytest.raises(pyodbc.Error, match="50000"):
                cnxn.cursor().execute("SELECT 1")
        finally:
            cnxn.close()


def test_unencodable_reply_is_reported(msodbc: None) -> None:
    with pytest.raises(PeerError, match="row has 1 values"), TDSPeer() as peer:
        peer.on("^SELECT", ResultSet([Column("a", "int"), Column("b", "int")], [(1,)]))
        cnxn = pyodbc.connect(peer.connection_string(), autocommit=True, timeout=10)
        try:
            with pytest.raises(pyodbc.Error, match="50000"):
                cnxn.cursor().execute("SELECT 1")
            cnxn.cursor().execute("UPDATE still_serving SET a = 1")  # connection survives
        finally:
            cnxn.close()


# ---------------------------------------------------------------------------------------
# transactions
# ---------------------------------------------------------------------------------------
def test_manual_commit_and_rollback(peer: TDSPeer) -> None:
    peer.on("^INSERT", 1)
    cnxn = pyodbc.connect(peer.connection_string(), autocommit=False, timeout=10)
    try:
        cur = cnxn.cursor()
        cur.execute("INSERT INTO t (a) VALUES (?)", 1)
        assert cur.rowcount == 1
        cnxn.commit()
        cur.execute("INSERT INTO t (a) VALUES (?)", 2)
        cnxn.rollback()
    finally:
        cnxn.close()
    assert peer.tm_ops() == ["begin", "commit", "rollback"]
    tms = peer.of_kind("tm")
    begin, commit, rollback = tms
    first, second = _app(peer)
    assert begin.transaction_descriptor == 0
    assert first.transaction_descriptor != 0
    assert commit.transaction_descriptor == first.transaction_descriptor
    # the driver commits with "begin a new transaction" (implicit transactions)
    assert commit.tm_begin_new
    assert second.transaction_descriptor not in (0, first.transaction_descriptor)
    assert rollback.transaction_descriptor == second.transaction_descriptor
    assert [r.values for r in (first, second)] == [[1], [2]]


def test_switching_autocommit_on_ends_transaction(peer: TDSPeer) -> None:
    cnxn = pyodbc.connect(peer.connection_string(), autocommit=False, timeout=10)
    try:
        cnxn.autocommit = True
        cnxn.cursor().execute("SELECT ?", 1)
    finally:
        cnxn.close()
    assert peer.tm_ops()[:1] == ["begin"]
    assert peer.tm_ops()[-1] in ("commit", "rollback")
    assert _app(peer)[-1].transaction_descriptor == 0


def test_sql_level_transaction_statements(peer: TDSPeer, conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("BEGIN TRANSACTION")
    cur.execute("UPDATE t SET a = ?", 1)
    cur.execute("COMMIT")
    _begin, update, commit = _app(peer)
    assert update.transaction_descriptor != 0
    assert commit.transaction_descriptor == update.transaction_descriptor


# ---------------------------------------------------------------------------------------
# executemany
# ---------------------------------------------------------------------------------------
ROWS = [(1, "a"), (2, "bb"), (3, None)]


def test_executemany_records_every_row(peer: TDSPeer, conn: Any) -> None:
    peer.on("^INSERT", 1)
    cur = conn.cursor()
    cur.executemany("INSERT INTO t (a, b) VALUES (?, ?)", ROWS)
    reqs = _app(peer)
    assert [tuple(r.values) for r in reqs] == ROWS
    assert {r.qmark_sql for r in reqs} == {"INSERT INTO t (a, b) VALUES (?, ?)"}


def test_fast_executemany_with_described_types(peer: TDSPeer, conn: Any) -> None:
    peer.on("^INSERT", 1)
    peer.set_param_types("INSERT INTO t (a, b) VALUES (?, ?)", ["bigint", "nvarchar(50)"])
    cur = conn.cursor()
    cur.fast_executemany = True
    cur.executemany("INSERT INTO t (a, b) VALUES (?, ?)", ROWS)
    executes = _app(peer)
    assert {r.proc for r in executes} == {"sp_execute"}
    assert [tuple(r.values) for r in executes] == ROWS
    (prepare,) = [r for r in peer.requests if r.proc == "sp_prepare"]
    assert {r.handle for r in executes} == {prepare.handle}
    assert executes[0].type_decls == ["bigint", "nvarchar(50)"]
    describe = [r for r in peer.requests if r.proc == "sp_describe_undeclared_parameters"]
    assert describe and describe[0].sql == "INSERT INTO t (a, b) VALUES (@P1, @P2)"


def test_fast_executemany_default_description(peer: TDSPeer, conn: Any) -> None:
    cur = conn.cursor()
    cur.fast_executemany = True
    cur.executemany("INSERT INTO u (a, b) VALUES (?, ?)", [(1, "x"), (2, "y")])
    executes = [r for r in _app(peer) if r.proc == "sp_execute"]
    # undeclared parameters are described as nvarchar(4000): the driver converts the ints
    assert [r.values for r in executes] == [["1", "x"], ["2", "y"]]
    assert executes[0].type_decls == ["nvarchar(4000)", "nvarchar(4000)"]


# ---------------------------------------------------------------------------------------
# cancel / attention
# ---------------------------------------------------------------------------------------
def test_cancel_sends_attention(peer: TDSPeer, conn: Any) -> None:
    running = threading.Event()

    def held(req: Request) -> Reply:
        running.set()
        return Reply(1).until_attention(PATIENCE)  # still running when the cancel comes

    peer.on("WAITFOR", held)
    cur = conn.cursor()

    def cancel_once_running() -> None:
        running.wait(PATIENCE)
        cur.cancel()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    try:
        with pytest.raises(pyodbc.Error) as info:
            cur.execute("WAITFOR DELAY '00:00:05'")
    finally:
        canceller.join()
    assert info.value.args[0] == "HY008"
    peer.wait_for(lambda r: r.kind == "attention")
    peer.on("^SELECT", ResultSet([Column("x", "int")], [(4,)]))
    cur.execute("SELECT 4")
    assert cur.fetchone()[0] == 4


# ---------------------------------------------------------------------------------------
# aioodbc
# ---------------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_aioodbc_roundtrip(peer: TDSPeer) -> None:
    aioodbc = pytest.importorskip("aioodbc")
    peer.on(r"^SELECT \?", ResultSet([Column("v", "nvarchar(20)")], [("async ✓",)]))
    peer.on("^INSERT", 1)
    async with aioodbc.connect(dsn=peer.connection_string(user=USER), autocommit=False) as cnxn:
        async with cnxn.cursor() as cur:
            await cur.execute("SELECT ?", "q")
            assert (await cur.fetchone())[0] == "async ✓"
            await cur.execute("INSERT INTO t (a) VALUES (?)", 10)
            assert cur.rowcount == 1
        await cnxn.commit()
    assert peer.logins()[0].user == USER
    assert peer.tm_ops() == ["begin", "commit"]
    assert [r.values for r in _app(peer)] == [["q"], [10]]


@pytest.mark.asyncio
async def test_aioodbc_concurrent_connections(peer: TDSPeer) -> None:
    aioodbc = pytest.importorskip("aioodbc")
    peer.on("^SELECT", lambda req: ResultSet([Column("n", "int")], [(req.values[0] * 2,)]))

    async def one(n: int) -> int:
        dsn = peer.connection_string()
        async with aioodbc.connect(dsn=dsn, autocommit=True) as cnxn, cnxn.cursor() as cur:
            await cur.execute("SELECT ?", n)
            return int((await cur.fetchone())[0])

    assert await asyncio.gather(*(one(n) for n in range(4))) == [0, 2, 4, 6]
    assert len({r.connection_id for r in peer.logins()}) == 4


# ---------------------------------------------------------------------------------------
# lifecycle and raw protocol (no driver needed)
# ---------------------------------------------------------------------------------------
def _raw_connect(peer: TDSPeer) -> socket.socket:
    sock = socket.create_connection((peer.host, peer.port), timeout=10)
    prelogin = p.build_prelogin(
        [(p.PL_VERSION, b"\x00" * 6), (p.PL_ENCRYPTION, bytes([p.ENCRYPT_NOT_SUP]))]
    )
    sock.sendall(p.frame(p.PKT_PRELOGIN, prelogin, 4096))
    reply = p.read_message(sock)
    assert p.parse_prelogin(reply.payload)[p.PL_ENCRYPTION] == bytes([p.ENCRYPT_NOT_SUP])
    sock.sendall(p.frame(p.PKT_LOGIN7, p.build_login7("raw", "pw", "db"), 4096))
    tokens = p.parse_tokens(p.read_message(sock).payload)
    assert p.TOK_LOGINACK in [t for t, _ in tokens]
    return sock


def test_unknown_packet_type_gets_error_reply() -> None:
    with TDSPeer() as peer:
        sock = _raw_connect(peer)
        with sock:
            sock.sendall(p.frame(p.PKT_BULK, b"\x00" * 8, 4096))
            tokens = p.parse_tokens(p.read_message(sock).payload)
            assert [t for t, _ in tokens] == [p.TOK_ERROR, p.TOK_DONE]
            (status,) = struct.unpack_from("<H", tokens[1][1])
            assert status & p.DONE_ERROR
            # still serving: an attention gets its acknowledgement
            sock.sendall(p.frame(p.PKT_ATTENTION, b"", 4096))
            tokens = p.parse_tokens(p.read_message(sock).payload)
            assert tokens[0][0] == p.TOK_DONE
            assert struct.unpack_from("<H", tokens[0][1])[0] & p.DONE_ATTN
        login = peer.logins()[0]
        assert (login.user, login.database) == ("raw", "db")
        assert login.password == "pw"
        assert peer.of_kind("attention")


def test_raw_rpc_batch_with_executesql() -> None:
    with TDSPeer() as peer:
        peer.on("^UPDATE", 4)
        sock = _raw_connect(peer)
        with sock:
            payload = p.build_rpc(
                [
                    (
                        10,  # sp_executesql by ProcID
                        [
                            ("@stmt", "nvarchar(max)", "UPDATE t SET a = @a WHERE b = @b"),
                            ("@params", "nvarchar(max)", "@a int,@b decimal(10,2)"),
                            ("@a", "int", 7),
                            ("@b", "decimal(10,2)", Decimal("1.50")),
                        ],
                    ),
                    ("dbo.my_proc", [("@x", "nvarchar(10)", "héllo"), ("@y", "bigint", None)]),
                ],
                transaction_descriptor=0x1234,
            )
            sock.sendall(p.frame(p.PKT_RPC, payload, 512))  # several packets
            tokens = p.parse_tokens(p.read_message(sock).payload)
        kinds = [t for t, _ in tokens]
        assert kinds == [
            p.TOK_DONEINPROC,
            p.TOK_RETURNSTATUS,
            p.TOK_DONEPROC,
            p.TOK_RETURNSTATUS,
            p.TOK_DONEPROC,
        ]
        status, _cmd, count = struct.unpack("<HHQ", tokens[0][1])
        assert (status & p.DONE_COUNT, count) == (p.DONE_COUNT, 4)
        assert struct.unpack_from("<H", tokens[2][1])[0] & p.DONE_MORE
        executesql, proc = peer.of_kind("rpc")
        assert executesql.proc == "sp_executesql"
        assert executesql.sql == "UPDATE t SET a = @a WHERE b = @b"
        assert [(x.name, x.type_decl, x.value) for x in executesql.params] == [
            ("@a", "int", 7),
            ("@b", "decimal(10,2)", Decimal("1.50")),
        ]
        assert executesql.transaction_descriptor == 0x1234
        assert proc.proc == "dbo.my_proc"
        assert proc.sql is None
        assert [(x.name, x.type_decl, x.wire_type, x.value) for x in proc.params] == [
            ("@x", None, "NVARCHAR", "héllo"),
            ("@y", None, "INTN", None),
        ]


def test_stop_leaves_no_threads_or_processes() -> None:
    before = {t.ident for t in threading.enumerate()}
    peer = TDSPeer().start()
    sock = _raw_connect(peer)  # a client that never disconnects
    proc = peer._proc
    assert proc is not None
    peer.stop()
    sock.close()
    assert proc.returncode is not None
    assert {t.ident for t in threading.enumerate()} <= before


@pytest.mark.parametrize(
    ("sql_type", "value"),
    [
        ("int", -123456),
        ("bigint", -(2**62)),
        ("smallint", -2),
        ("tinyint", 255),
        ("bit", False),
        ("float", -1.25e300),
        ("real", 0.5),
        ("nvarchar(20)", "ünïcödé"),
        ("nvarchar(max)", "z" * 9000),
        ("varchar(10)", "abc"),
        ("varbinary(10)", b"\x00\x01"),
        ("varbinary(max)", b"\xff" * 9000),
        ("datetime2", datetime(2000, 2, 29, 23, 59, 59, 999999)),
        ("datetime2(3)", datetime(2000, 2, 29, 23, 59, 59, 123000)),
        ("date", date(1, 1, 1)),
        ("time", dtime(13, 14, 15, 161718)),
        ("decimal(18,4)", Decimal("-12345678901234.5678")),
        ("decimal(38,0)", Decimal(10**37)),
        ("uniqueidentifier", uuid.UUID(int=2**127 + 5)),
        ("money", Decimal("-922337203685477.5808")),
        ("int", None),
        ("nvarchar(max)", None),
        ("datetime2", None),
    ],
)
def test_codec_roundtrip(sql_type: str, value: Any) -> None:
    info = p.SqlType.parse(sql_type).info
    encoded = p.write_type_info(info) + p.write_value(info, value)
    reader = p.Reader(encoded)
    decoded_info = p.read_type_info(reader)
    assert decoded_info.type == info.type
    assert p.read_value(reader, decoded_info) == value
    assert reader.remaining() == 0


def test_param_decl_split() -> None:
    decls = p.split_param_decls("@P1 int,@P2 decimal(18,2),@P3 nvarchar(max) OUTPUT")
    assert decls == [("@P1", "int"), ("@P2", "decimal(18,2)"), ("@P3", "nvarchar(max)")]


def test_password_obfuscation_roundtrip() -> None:
    assert p.decode_password(p.encode_password("pä$$wörd")) == "pä$$wörd"


def test_connection_string_quotes_values() -> None:
    peer = TDSPeer()
    peer.port = 1433
    cs = peer.connection_string(database="db", user="u", password="a;b}c")
    assert "PWD={a;b}}c};" in cs
    assert cs.startswith("DRIVER={ODBC Driver 18 for SQL Server};SERVER=127.0.0.1,1433;")
    assert "Encrypt=no;TrustServerCertificate=yes;" in cs
