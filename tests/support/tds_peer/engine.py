"""The TDS server engine: accepts connections and serves each in its own thread.

It runs in a child process (see ``_child.py``) so that it keeps answering while the test
process holds the GIL: pyodbc calls SQLDescribeParam for ``fast_executemany`` without
releasing it, and the driver then waits for the server's reply to
``sp_describe_undeclared_parameters``. The engine talks to the test process through a
``Host``: ``record`` (asynchronous), ``call`` (ask the responder; blocks this connection
only), ``error`` and ``trace``. Housekeeping probes are answered here, without the host.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import struct
import threading
import traceback
from collections.abc import Iterable
from typing import Any, Protocol

from . import protocol as p
from .models import Column, Info, Param, Reply, Request, ResultSet, ServerError


class Host(Protocol):
    def record(self, req: Request) -> None: ...

    def call(self, req: Request) -> Reply | None: ...

    def error(self, text: str) -> None: ...

    def trace(self, cid: int, direction: str, ptype: int, payload: bytes) -> None: ...


def normalize_sql(sql: str) -> str:
    """Key for per-statement settings: @P1..@Pn -> ?, whitespace collapsed."""
    return " ".join(re.sub(r"@P\d+\b", "?", sql).split())


_HOUSEKEEPING_PROCS = {
    "sp_datatype_info",
    "sp_datatype_info_100",
    "sp_describe_undeclared_parameters",
    "sp_describe_first_result_set",
    "sp_unprepare",
    "sp_reset_connection",
    "sp_server_info",
    "sp_columns",
    "sp_columns_100",
    "sp_tables",
    "sp_special_columns",
    "sp_special_columns_100",
    "sp_sproc_columns",
    "sp_sproc_columns_100",
    "sp_statistics",
    "sp_statistics_100",
    "sp_pkeys",
    "sp_fkeys",
    "sp_stored_procedures",
}
_HOUSEKEEPING_SQL = re.compile(
    r"^\s*(?:exec(?:ute)?\s+)?(?:\[?(?:sys|master|dbo)\]?\.)*\[?("
    + "|".join(sorted(_HOUSEKEEPING_PROCS))
    + r")\]?\b"
    r"|^\s*set\s+fmtonly\s+on\b",
    re.IGNORECASE,
)
_BEGIN_TRAN = re.compile(r"^\s*begin\s+tran(?:saction)?\s*;?\s*$", re.IGNORECASE)
_COMMIT_TRAN = re.compile(r"^\s*commit(?:\s+(?:tran(?:saction)?|work))?\s*;?\s*$", re.IGNORECASE)
_ROLLBACK_TRAN = re.compile(
    r"^\s*rollback(?:\s+(?:tran(?:saction)?|work))?\s*;?\s*$", re.IGNORECASE
)
_PARAM_MARKER = re.compile(r"@P(\d+)\b")
# what sp_describe_undeclared_parameters reports for a statement without registered types
DEFAULT_PARAM_TYPE = "nvarchar(4000)"

# result columns of sp_datatype_info_100 (the driver's SQLGetTypeInfo)
_TYPE_INFO_COLUMNS = [
    Column("TYPE_NAME", "sysname"),
    Column("DATA_TYPE", "smallint"),
    Column("PRECISION", "int"),
    Column("LITERAL_PREFIX", "varchar(32)"),
    Column("LITERAL_SUFFIX", "varchar(32)"),
    Column("CREATE_PARAMS", "varchar(32)"),
    Column("NULLABLE", "smallint"),
    Column("CASE_SENSITIVE", "smallint"),
    Column("SEARCHABLE", "smallint"),
    Column("UNSIGNED_ATTRIBUTE", "smallint"),
    Column("MONEY", "smallint"),
    Column("AUTO_INCREMENT", "smallint"),
    Column("LOCAL_TYPE_NAME", "sysname"),
    Column("MINIMUM_SCALE", "smallint"),
    Column("MAXIMUM_SCALE", "smallint"),
    Column("SQL_DATA_TYPE", "smallint"),
    Column("SQL_DATETIME_SUB", "smallint"),
    Column("NUM_PREC_RADIX", "int"),
    Column("INTERVAL_PRECISION", "smallint"),
    Column("USERTYPE", "smallint"),
]
# (TYPE_NAME, DATA_TYPE, PRECISION, prefix, suffix, create_params, case_sensitive,
#  searchable, min_scale, max_scale, sql_data_type, datetime_sub, radix)
_TYPE_INFO_ROWS: list[tuple[Any, ...]] = [
    ("datetime2", 93, 27, "'", "'", "scale", 0, 3, 0, 7, 9, 3, None),
    ("datetime", 93, 23, "'", "'", None, 0, 3, 3, 3, 9, 3, None),
    ("smalldatetime", 93, 16, "'", "'", None, 0, 3, 0, 0, 9, 3, None),
    ("date", 91, 10, "'", "'", None, 0, 3, None, None, 9, 1, None),
    ("time", -154, 16, "'", "'", "scale", 0, 3, 0, 7, -154, 0, None),
    ("bigint", -5, 19, None, None, None, 0, 2, 0, 0, -5, None, 10),
    ("int", 4, 10, None, None, None, 0, 2, 0, 0, 4, None, 10),
    ("bit", -7, 1, None, None, None, 0, 2, 0, 0, -7, None, None),
    ("float", 6, 53, None, None, None, 0, 2, None, None, 6, None, 2),
    ("nvarchar", -9, 4000, "N'", "'", "max length", 1, 3, None, None, -9, None, None),
    ("varchar", 12, 8000, "'", "'", "max length", 0, 3, None, None, 12, None, None),
    ("varbinary", -3, 8000, "0x", None, "max length", 0, 2, None, None, -3, None, None),
]

# result columns of sp_describe_undeclared_parameters
_DESCRIBE_COLUMNS = [
    Column("parameter_ordinal", "int"),
    Column("name", "sysname"),
    Column("suggested_system_type_id", "int"),
    Column("suggested_system_type_name", "nvarchar(256)"),
    Column("suggested_max_length", "smallint"),
    Column("suggested_precision", "tinyint"),
    Column("suggested_scale", "tinyint"),
    Column("suggested_user_type_id", "int"),
    Column("suggested_user_type_database", "sysname"),
    Column("suggested_user_type_schema", "sysname"),
    Column("suggested_user_type_name", "sysname"),
    Column("suggested_assembly_qualified_type_name", "nvarchar(4000)"),
    Column("suggested_xml_collection_id", "int"),
    Column("suggested_xml_collection_database", "sysname"),
    Column("suggested_xml_collection_schema", "sysname"),
    Column("suggested_xml_collection_name", "sysname"),
    Column("suggested_is_xml_document", "bit"),
    Column("suggested_is_case_sensitive", "bit"),
    Column("suggested_is_fixed_length_clr_type", "bit"),
    Column("suggested_is_input", "bit"),
    Column("suggested_is_output", "bit"),
    Column("formal_parameter_name", "sysname"),
    Column("suggested_tds_type_id", "int"),
    Column("suggested_tds_length", "int"),
]
# T-SQL base type -> (system_type_id, max_length, precision, scale, tds type id, tds length)
_SYSTEM_TYPES: dict[str, tuple[int, int, int, int, int, int]] = {
    "tinyint": (48, 1, 3, 0, p.INTN, 1),
    "smallint": (52, 2, 5, 0, p.INTN, 2),
    "int": (56, 4, 10, 0, p.INTN, 4),
    "bigint": (127, 8, 19, 0, p.INTN, 8),
    "bit": (104, 1, 1, 0, p.BITN, 1),
    "real": (59, 4, 24, 0, p.FLTN, 4),
    "float": (62, 8, 53, 0, p.FLTN, 8),
    "date": (40, 3, 10, 0, p.DATEN, 3),
    "datetime": (61, 8, 23, 3, p.DATETIMN, 8),
    "datetime2": (42, 8, 27, 7, p.DATETIME2N, 8),
    "datetimeoffset": (43, 10, 34, 7, p.DATETIMEOFFSETN, 10),
    "time": (41, 5, 16, 7, p.TIMEN, 5),
    "decimal": (106, 9, 18, 0, p.DECIMALN, 9),
    "numeric": (108, 9, 18, 0, p.NUMERICN, 9),
    "money": (60, 8, 19, 4, p.MONEYN, 8),
    "uniqueidentifier": (36, 16, 0, 0, p.GUID, 16),
    "nvarchar": (231, 8000, 0, 0, p.NVARCHAR, 8000),
    "nchar": (239, 2, 0, 0, p.NCHAR, 2),
    "varchar": (167, 8000, 0, 0, p.BIGVARCHR, 8000),
    "char": (175, 1, 0, 0, p.BIGCHAR, 1),
    "varbinary": (165, 8000, 0, 0, p.BIGVARBIN, 8000),
    "binary": (173, 1, 0, 0, p.BIGBINARY, 1),
}


def describe_params_reply(types: Iterable[str]) -> Reply:
    """The reply to ``sp_describe_undeclared_parameters`` describing @P1..@Pn with the given
    T-SQL types, e.g. ``describe_params_reply(["bigint", "nvarchar(100)", "datetime2(7)"])``.
    The driver uses it for SQLDescribeParam (pyodbc ``fast_executemany``)."""
    rows = []
    for i, decl in enumerate(types, start=1):
        m = re.match(r"^\s*([a-z0-9]+)\s*(?:\(\s*([a-z0-9]+)\s*(?:,\s*(\d+))?\s*\))?", decl, re.I)
        if not m or m.group(1).lower() not in _SYSTEM_TYPES:
            raise ValueError(f"cannot describe parameter type {decl!r}")
        base = m.group(1).lower()
        type_id, max_len, prec, scale, tds_id, tds_len = _SYSTEM_TYPES[base]
        arg, arg2 = m.group(2), m.group(3)
        if arg is not None:
            if arg.lower() == "max":
                max_len, tds_len = -1, 0xFFFF
            elif base in ("decimal", "numeric"):
                prec, scale = int(arg), int(arg2 or 0)
            elif base in ("datetime2", "time", "datetimeoffset"):
                scale = int(arg)
            else:
                unit = 2 if base in ("nvarchar", "nchar") else 1
                max_len = tds_len = int(arg) * unit
        name = f"@P{i}"
        rows.append(
            (
                i,
                name,
                type_id,
                decl,
                max_len,
                prec,
                scale,
                type_id,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                False,
                False,
                False,
                True,
                False,
                "",
                tds_id,
                tds_len,
            )
        )
    return Reply(ResultSet(_DESCRIBE_COLUMNS, rows))


class _Stop(Exception):
    pass


class Engine:
    """Listening socket plus one thread per client connection."""

    def __init__(
        self,
        host: Host,
        *,
        bind: str = "127.0.0.1",
        server_name: str = "TDSPEER",
        server_version: tuple[int, int, int] = (16, 0, 1000),
        language: str = "us_english",
        login_error: ServerError | None = None,
        trace: bool = False,
        param_types: dict[str, list[str]] | None = None,
    ) -> None:
        self.host = host
        self.server_name = server_name
        self.server_version = server_version
        self.language = language
        self.login_error = login_error
        self.tracing = trace
        self.param_types: dict[str, list[str]] = {
            normalize_sql(k): list(v) for k, v in (param_types or {}).items()
        }
        self._lock = threading.Lock()
        self._sessions: dict[int, tuple[threading.Thread, socket.socket]] = {}
        self._stopping = threading.Event()
        self._conn_ids = itertools.count(1)
        self._tran_ids = itertools.count(1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((bind, 0))
            sock.listen(16)
            sock.settimeout(0.05)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self.port: int = sock.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name="tds-peer-accept", daemon=True
        )
        self._accept_thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._accept_thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            sessions = list(self._sessions.values())
        for _thread, conn in sessions:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread, _conn in sessions:
            thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            cid = next(self._conn_ids)
            session = _Session(self, conn, cid)
            thread = threading.Thread(target=session.run, name=f"tds-peer-conn-{cid}", daemon=True)
            with self._lock:
                self._sessions[cid] = (thread, conn)
            thread.start()

    def session_done(self, cid: int) -> None:
        with self._lock:
            self._sessions.pop(cid, None)

    def new_descriptor(self) -> int:
        return 0x0000_0100_0000_0000 | next(self._tran_ids)


class _Session:
    def __init__(self, peer: Engine, conn: socket.socket, cid: int) -> None:
        self.peer = peer
        self.conn = conn
        self.cid = cid
        self.packet_size = 4096
        self.database = "master"
        self.transaction = 0  # current transaction descriptor
        self.handles: dict[int, tuple[str, str]] = {}  # handle -> (sql, params decl)
        self.next_handle = itertools.count(1)
        self.pending: list[p.Message] = []  # read early (an attention), served next

    # -- plumbing ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._handshake()
            while True:
                msg = self.pending.pop(0) if self.pending else p.read_message(self.conn)
                if self.peer.tracing:
                    self.peer.host.trace(self.cid, "in", msg.type, msg.payload)
                self._serve(msg)
        except (ConnectionError, OSError, _Stop):
            pass
        except Exception as exc:  # a bug in the peer or a message it cannot parse
            self.peer.host.error(f"connection {self.cid}: {traceback.format_exc()}")
            with contextlib.suppress(Exception):
                self._send(self._error_reply(f"tds_peer: {exc!r}"))
        finally:
            with contextlib.suppress(OSError):
                self.conn.shutdown(socket.SHUT_RDWR)
            self.conn.close()
            self.peer.session_done(self.cid)

    def _send(self, payload: bytes, ptype: int = p.PKT_REPLY) -> None:
        if self.peer.tracing:
            self.peer.host.trace(self.cid, "out", ptype, payload)
        self.conn.sendall(p.frame(ptype, payload, self.packet_size))

    def _error_reply(self, message: str, number: int = 50000) -> bytes:
        return p.tok_message(
            p.TOK_ERROR, number, message, 1, 16, self.peer.server_name
        ) + p.tok_done(p.DONE_ERROR)

    # -- login --------------------------------------------------------------------------------
    def _handshake(self) -> None:
        msg = p.read_message(self.conn)
        if msg.type != p.PKT_PRELOGIN:
            raise p.ProtocolError(f"expected PRELOGIN, got packet type 0x{msg.type:02X}")
        opts = p.parse_prelogin(msg.payload)
        major, minor, build = self.peer.server_version
        reply = [
            (p.PL_VERSION, struct.pack(">BBHH", major, minor, build, 0)),
            (p.PL_ENCRYPTION, bytes([p.ENCRYPT_NOT_SUP])),
            (p.PL_INSTOPT, b"\x00"),
            (p.PL_THREADID, b""),
            (p.PL_MARS, b"\x00"),
        ]
        if p.PL_FEDAUTHREQUIRED in opts:
            reply.append((p.PL_FEDAUTHREQUIRED, b"\x00"))
        self._send(p.build_prelogin(reply))
        client_enc = opts.get(p.PL_ENCRYPTION, b"\x00")[:1]
        if client_enc in (bytes([p.ENCRYPT_ON]), bytes([p.ENCRYPT_REQ])):
            # The client insists on TLS, which this peer does not offer: it hangs up.
            raise _Stop
        msg = p.read_message(self.conn)
        if msg.type != p.PKT_LOGIN7:
            raise p.ProtocolError(f"expected LOGIN7, got packet type 0x{msg.type:02X}")
        login = p.parse_login7(msg.payload)
        req = Request(
            kind="login",
            connection_id=self.cid,
            user=login.user,
            password=login.password,
            database=login.database,
            app_name=login.app_name,
            hostname=login.hostname,
            server_name=login.server_name,
            library=login.library,
            language=login.language,
            packet_size=login.packet_size,
            tds_version=login.tds_version,
            features=login.features,
        )
        self.peer.host.record(req)
        name = self.peer.server_name
        if self.peer.login_error is not None:
            e = self.peer.login_error
            self._send(
                p.tok_message(p.TOK_ERROR, e.number, e.message, e.state, e.severity, name)
                + p.tok_done(p.DONE_ERROR)
            )
            raise _Stop
        if 512 <= login.packet_size <= 32767:
            self.packet_size = login.packet_size
        self.database = login.database or "master"
        out = bytearray()
        out += p.tok_envchange_str(p.ENV_DATABASE, self.database, "master")
        out += p.tok_message(
            p.TOK_INFO, 5701, f"Changed database context to '{self.database}'.", 2, 0, name
        )
        out += p.tok_envchange_bytes(p.ENV_COLLATION, p.DEFAULT_COLLATION, b"")
        out += p.tok_envchange_str(p.ENV_LANGUAGE, self.peer.language, "")
        out += p.tok_message(
            p.TOK_INFO, 5703, f"Changed language setting to {self.peer.language}.", 1, 0, name
        )
        out += p.tok_loginack("Microsoft SQL Server", 0x74000004, self.peer.server_version)
        if login.option_flags[3] & 0x10:
            out += p.tok_featureextack()
        out += p.tok_envchange_str(p.ENV_PACKETSIZE, str(self.packet_size), str(self.packet_size))
        out += p.tok_done(p.DONE_FINAL)
        self._send(bytes(out))

    # -- requests ------------------------------------------------------------------------------
    def _serve(self, msg: p.Message) -> None:
        reset = bool(msg.status & (p.ST_RESETCONNECTION | p.ST_RESETCONNECTIONSKIPTRAN))
        prefix = b""
        if reset:
            self.handles.clear()
            prefix = p.tok_envchange_bytes(p.ENV_RESET_ACK, b"", b"")
        if msg.status & p.ST_IGNORE:
            return
        try:
            if msg.type == p.PKT_SQL_BATCH:
                out = self._batch(msg.payload, reset)
            elif msg.type == p.PKT_RPC:
                out = self._rpc(msg.payload, reset)
            elif msg.type == p.PKT_TM:
                out = self._tm(msg.payload, reset)
            elif msg.type == p.PKT_ATTENTION:
                self.peer.host.record(Request(kind="attention", connection_id=self.cid))
                out = p.tok_done(p.DONE_ATTN)
            else:
                out = self._error_reply(
                    f"tds_peer: unsupported packet type 0x{msg.type:02X}", number=50001
                )
        except (ConnectionError, OSError):
            raise
        except Exception as exc:
            # A message this peer cannot parse, or a reply it cannot encode (e.g. a value
            # that does not fit its column type): report it, answer with an error, go on.
            self.peer.host.error(f"connection {self.cid}: {traceback.format_exc()}")
            out = self._error_reply(f"tds_peer: {exc!r}"[:2000])
        self._send(prefix + out)

    def _respond(self, req: Request) -> Reply:
        """Housekeeping is answered here; everything else goes to the host's responder."""
        if req.housekeeping:
            self.peer.host.record(req)
            return self._default_reply(req)
        reply = self.peer.host.call(req)  # records it, then asks the responder
        if reply is not None and reply.attention_within is not None:
            self._await_attention(reply.attention_within)
        return self._default_reply(req) if reply is None else reply

    def _await_attention(self, within: float) -> None:
        """Read the client's next message (its ATTENTION) before this reply is sent; it
        is served after the reply, as if it had arrived while the statement ran."""
        self.conn.settimeout(within)
        try:
            msg = p.read_message(self.conn)
        except TimeoutError:
            self.peer.host.error(f"connection {self.cid}: no attention within {within:g}s")
            return
        finally:
            self.conn.settimeout(None)
        if msg.type != p.PKT_ATTENTION:
            self.peer.host.error(
                f"connection {self.cid}: expected an attention, got packet type 0x{msg.type:02X}"
            )
        self.pending.append(msg)

    def _default_reply(self, req: Request) -> Reply:
        proc = req.proc if isinstance(req.proc, str) else None
        name = _proc_base(proc) if proc else None
        sql = req.sql or ""
        if req.kind == "batch":
            m = _HOUSEKEEPING_SQL.match(sql)
            name = m.group(1).lower() if m and m.group(1) else name
        if name in ("sp_datatype_info_100", "sp_datatype_info"):
            data_type = _datatype_arg(req)
            rows = [
                (
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    r[5],
                    1,
                    r[6],
                    r[7],
                    None if r[12] is None else 0,
                    0,
                    None if r[12] is None else 0,
                    r[0],
                    r[8],
                    r[9],
                    r[10],
                    r[11],
                    r[12],
                    None,
                    0,
                )
                for r in _TYPE_INFO_ROWS
                if data_type is None or data_type == 0 or r[1] == data_type
            ]
            return Reply(ResultSet(_TYPE_INFO_COLUMNS, rows))
        if name == "sp_describe_undeclared_parameters":
            tsql = req.sql or ""
            n = max((int(x) for x in _PARAM_MARKER.findall(tsql)), default=0)
            known = self.peer.param_types.get(normalize_sql(tsql))
            if known is not None:
                return describe_params_reply(known)
            return describe_params_reply([DEFAULT_PARAM_TYPE] * n)
        return Reply()

    def _batch(self, payload: bytes, reset: bool) -> bytes:
        r = p.Reader(payload)
        headers = p.parse_all_headers(r)
        sql = r.take(r.remaining()).decode("utf-16-le")
        req = Request(
            kind="batch",
            connection_id=self.cid,
            sql=sql,
            transaction_descriptor=headers.transaction_descriptor or 0,
            reset_connection=reset,
            housekeeping=bool(_HOUSEKEEPING_SQL.match(sql)),
        )
        reply = self._respond(req)
        prefix = b""
        if not any(isinstance(x, ServerError) for x in reply.results):
            prefix = self._batch_tran_envchange(sql)
        return prefix + self._encode(reply, in_proc=False, final_status=0)

    def _batch_tran_envchange(self, sql: str) -> bytes:
        if _BEGIN_TRAN.match(sql):
            return self._begin_tran()
        if _COMMIT_TRAN.match(sql):
            return self._end_tran(p.ENV_COMMIT_TRAN)
        if _ROLLBACK_TRAN.match(sql):
            return self._end_tran(p.ENV_ROLLBACK_TRAN)
        return b""

    def _begin_tran(self) -> bytes:
        self.transaction = self.peer.new_descriptor()
        return p.tok_envchange_bytes(p.ENV_BEGIN_TRAN, struct.pack("<Q", self.transaction), b"")

    def _end_tran(self, kind: int) -> bytes:
        if not self.transaction:
            return b""
        old, self.transaction = self.transaction, 0
        return p.tok_envchange_bytes(kind, b"", struct.pack("<Q", old))

    def _encode(self, reply: Reply, *, in_proc: bool, final_status: int) -> bytes:
        """Token stream for a reply. In a batch every result ends with DONE; inside an RPC
        with DONEINPROC (the caller adds RETURNSTATUS and DONEPROC)."""
        token = p.TOK_DONEINPROC if in_proc else p.TOK_DONE
        out = bytearray()
        items = reply.results
        name = self.peer.server_name
        if not items and not in_proc:
            return p.tok_done(final_status)
        for i, item in enumerate(items):
            last = i == len(items) - 1
            more = p.DONE_MORE if (in_proc or not last) else final_status
            if isinstance(item, ResultSet):
                cols = [(c.name, c.parsed().info) for c in item.columns]
                out += p.tok_colmetadata(cols)
                for row in item.rows:
                    out += p.tok_row(cols, row)
                out += p.tok_done(p.DONE_COUNT | more, len(item.rows), token, curcmd=0xC1)
            elif isinstance(item, ServerError):
                out += p.tok_message(
                    p.TOK_ERROR,
                    item.number,
                    item.message,
                    item.state,
                    item.severity,
                    name,
                    item.procedure,
                    item.line,
                )
                out += p.tok_done(p.DONE_ERROR | more, 0, token)
            elif isinstance(item, Info):
                out += p.tok_message(
                    p.TOK_INFO, item.number, item.message, item.state, item.severity, name
                )
                if last and not in_proc:
                    out += p.tok_done(final_status)
            else:
                out += p.tok_done(p.DONE_COUNT | more, int(item), token, curcmd=0xC3)
        return bytes(out)

    # -- RPC ------------------------------------------------------------------------------------
    def _rpc(self, payload: bytes, reset: bool) -> bytes:
        r = p.Reader(payload)
        headers = p.parse_all_headers(r)
        calls: list[tuple[str | int, list[tuple[Param, p.TypeInfo]]]] = []
        while r.remaining() > 0:
            n = r.u16()
            proc: str | int
            if n == 0xFFFF:
                pid = r.u16()
                proc = p.PROC_NAMES.get(pid, pid)
            else:
                proc = r.take(n * 2).decode("utf-16-le")
            r.u16()  # option flags
            params: list[tuple[Param, p.TypeInfo]] = []
            while r.remaining() > 0 and r.data[r.pos] not in (0xFF, 0xFE, 0x80):
                pname = r.b_varchar()
                status = r.u8()
                if status & 0x08:
                    raise p.ProtocolError("encrypted (Always Encrypted) parameters unsupported")
                ti = p.read_type_info(r)
                value = p.read_value(r, ti)
                params.append(
                    (
                        Param(pname, None, value, ti.name, ti.size, ti.scale, bool(status & 1)),
                        ti,
                    )
                )
            calls.append((proc, params))
            if r.remaining() > 0:
                r.u8()  # batch separator
        out = bytearray()
        for i, (proc, params) in enumerate(calls):
            last = i == len(calls) - 1
            out += self._one_rpc(proc, params, headers, reset, last)
        return bytes(out)

    def _one_rpc(
        self,
        proc: str | int,
        params: list[tuple[Param, p.TypeInfo]],
        headers: p.Headers,
        reset: bool,
        last: bool,
    ) -> bytes:
        raw = [prm for prm, _ti in params]
        name = _proc_base(proc) if isinstance(proc, str) else None
        sql: str | None = None
        decl = ""
        values = raw
        handle: int | None = None
        new_handle = False
        if name == "sp_executesql":
            sql = _str(raw, 0)
            decl = _str(raw, 1) or ""
            values = raw[2:]
        elif name in ("sp_prepexec", "sp_prepare"):
            decl = _str(raw, 1) or ""
            sql = _str(raw, 2)
            values = raw[3:] if name == "sp_prepexec" else []
            handle = next(self.next_handle)
            new_handle = True
            self.handles[handle] = (sql or "", decl)
        elif name == "sp_execute":
            handle = raw[0].value if raw else None
            sql, decl = self.handles.get(handle, (None, "")) if handle is not None else (None, "")
            values = raw[1:]
        elif name == "sp_unprepare":
            handle = raw[0].value if raw else None
            sql = self.handles.get(handle, (None, ""))[0] if handle is not None else None
        elif name in ("sp_describe_undeclared_parameters", "sp_describe_first_result_set"):
            sql = _str(raw, 0)
            values = raw[1:]
        elif name == "sp_datatype_info_100" or name == "sp_datatype_info":
            values = raw
        decls = p.split_param_decls(decl) if decl else []
        typed: list[Param] = []
        for j, prm in enumerate(values):
            dname, dtype = decls[j] if j < len(decls) else (prm.name, None)
            typed.append(
                Param(
                    prm.name or dname,
                    dtype,
                    prm.value,
                    prm.wire_type,
                    prm.wire_size,
                    prm.wire_scale,
                    prm.output,
                )
            )
        req = Request(
            kind="rpc",
            connection_id=self.cid,
            sql=sql,
            proc=proc,
            params=typed,
            raw_params=raw,
            handle=handle,
            transaction_descriptor=headers.transaction_descriptor or 0,
            reset_connection=reset,
            housekeeping=name in _HOUSEKEEPING_PROCS,
        )
        out = bytearray()
        if name == "sp_execute" and handle is not None and handle not in self.handles:
            self.peer.host.record(req)
            reply = Reply(
                ServerError(8179, f"Could not find prepared statement with handle {handle}.")
            )
        else:
            if name == "sp_unprepare" and handle is not None:
                self.handles.pop(handle, None)
            reply = self._respond(req)
        if new_handle:
            assert handle is not None
            out += p.tok_returnvalue(
                0, raw[0].name if raw else "@handle", p.TypeInfo(p.INTN, 4), handle
            )
        out += self._encode(reply, in_proc=True, final_status=0)
        out += p.tok_returnstatus(reply.return_status)
        status = 0 if last else p.DONE_MORE
        if any(isinstance(x, ServerError) for x in reply.results):
            status |= p.DONE_ERROR
        out += p.tok_done(status, 0, p.TOK_DONEPROC)
        return bytes(out)

    # -- transaction manager ------------------------------------------------------------------
    def _tm(self, payload: bytes, reset: bool) -> bytes:
        r = p.Reader(payload)
        headers = p.parse_all_headers(r)
        rtype = r.u16()
        op = p.TM_NAMES.get(rtype, str(rtype))
        req = Request(
            kind="tm",
            connection_id=self.cid,
            tm=op,
            transaction_descriptor=headers.transaction_descriptor or 0,
            reset_connection=reset,
        )
        out = bytearray()
        if op == "begin":
            req.isolation = p.ISOLATION_NAMES.get(r.u8())
            req.tm_name = r.b_varchar() or None
            self.peer.host.record(req)
            out += self._begin_tran()
        elif op in ("commit", "rollback"):
            req.tm_name = r.b_varchar() or None
            flags = r.u8() if r.remaining() else 0
            req.tm_begin_new = bool(flags & 0x01)
            if req.tm_begin_new and r.remaining():
                req.isolation = p.ISOLATION_NAMES.get(r.u8())
                if r.remaining():
                    r.b_varchar()
            self.peer.host.record(req)
            if op == "rollback" and req.tm_name:
                pass  # rollback to a savepoint: the transaction goes on
            else:
                out += self._end_tran(p.ENV_COMMIT_TRAN if op == "commit" else p.ENV_ROLLBACK_TRAN)
                if req.tm_begin_new:
                    out += self._begin_tran()
        elif op == "save":
            req.tm_name = r.b_varchar() or None
            self.peer.host.record(req)
        else:
            self.peer.host.record(req)
            return self._error_reply(f"tds_peer: unsupported TM request {op}", number=50002)
        out += p.tok_done(p.DONE_FINAL)
        return bytes(out)


def _proc_base(name: str) -> str:
    """'[sys].[sp_datatype_info_100]' -> 'sp_datatype_info_100'."""
    return name.rsplit(".", 1)[-1].strip("[]").lower()


def _str(params: list[Param], i: int) -> str | None:
    value = params[i].value if i < len(params) else None
    return value if isinstance(value, str) else None


def _datatype_arg(req: Request) -> int | None:
    if req.kind == "rpc":
        for prm in req.params:
            if isinstance(prm.value, int) and not isinstance(prm.value, bool):
                return prm.value
        return None
    m = re.search(r"sp_datatype_info(?:_100)?\]?\s+(-?\d+)", req.sql or "", re.IGNORECASE)
    return int(m.group(1)) if m else None
