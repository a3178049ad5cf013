"""MS-TDS 7.4 wire format: packet framing, token encoders, TYPE_INFO and value codecs.

Only what a recording test peer needs: decoding client messages (PRELOGIN, LOGIN7,
SQL batch, RPC, transaction manager) and encoding server tokens (LOGINACK, ENVCHANGE,
INFO/ERROR, COLMETADATA/ROW, RETURNVALUE, RETURNSTATUS, DONE*). Layouts follow the
[MS-TDS] specification sections noted next to each function. Standard library only.
"""

from __future__ import annotations

import re
import socket
import struct
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

# -- packet types (2.2.3.1.1) ------------------------------------------------------------
PKT_SQL_BATCH = 0x01
PKT_RPC = 0x03
PKT_REPLY = 0x04
PKT_ATTENTION = 0x06
PKT_BULK = 0x07
PKT_FEDAUTH = 0x08
PKT_TM = 0x0E
PKT_LOGIN7 = 0x10
PKT_SSPI = 0x11
PKT_PRELOGIN = 0x12

# packet status bits (2.2.3.1.2)
ST_EOM = 0x01
ST_IGNORE = 0x02
ST_RESETCONNECTION = 0x08
ST_RESETCONNECTIONSKIPTRAN = 0x10

HEADER = struct.Struct(">BBHHBB")

# -- tokens (2.2.7) ------------------------------------------------------------------------
TOK_RETURNSTATUS = 0x79
TOK_COLMETADATA = 0x81
TOK_ERROR = 0xAA
TOK_INFO = 0xAB
TOK_RETURNVALUE = 0xAC
TOK_LOGINACK = 0xAD
TOK_FEATUREEXTACK = 0xAE
TOK_ROW = 0xD1
TOK_ENVCHANGE = 0xE3
TOK_DONE = 0xFD
TOK_DONEPROC = 0xFE
TOK_DONEINPROC = 0xFF

DONE_FINAL = 0x00
DONE_MORE = 0x01
DONE_ERROR = 0x02
DONE_INXACT = 0x04
DONE_COUNT = 0x10
DONE_ATTN = 0x20
DONE_SRVERROR = 0x100

# ENVCHANGE types (2.2.7.9)
ENV_DATABASE = 1
ENV_LANGUAGE = 2
ENV_PACKETSIZE = 4
ENV_COLLATION = 7
ENV_BEGIN_TRAN = 8
ENV_COMMIT_TRAN = 9
ENV_ROLLBACK_TRAN = 10
ENV_TRAN_ENDED = 17
ENV_RESET_ACK = 18

# TM request types (2.2.6.9)
TM_NAMES = {
    0: "get_dtc_address",
    1: "propagate",
    5: "begin",
    6: "promote",
    7: "commit",
    8: "rollback",
    9: "save",
}
ISOLATION_NAMES = {
    0: None,
    1: "read uncommitted",
    2: "read committed",
    3: "repeatable read",
    4: "serializable",
    5: "snapshot",
}

# Well-known RPC procedure ids (2.2.6.6, ProcID)
PROC_NAMES = {
    1: "sp_cursor",
    2: "sp_cursoropen",
    3: "sp_cursorprepare",
    4: "sp_cursorexecute",
    5: "sp_cursorprepexec",
    6: "sp_cursorunprepare",
    7: "sp_cursorfetch",
    8: "sp_cursoroption",
    9: "sp_cursorclose",
    10: "sp_executesql",
    11: "sp_prepare",
    12: "sp_execute",
    13: "sp_prepexec",
    14: "sp_prepexecrpc",
    15: "sp_unprepare",
}

# -- data types (2.2.5.4) ------------------------------------------------------------------
NULLTYPE = 0x1F
INT1 = 0x30
BIT = 0x32
INT2 = 0x34
INT4 = 0x38
DATETIM4 = 0x3A
FLT4 = 0x3B
MONEY = 0x3C
DATETIME = 0x3D
FLT8 = 0x3E
MONEY4 = 0x7A
INT8 = 0x7F
GUID = 0x24
INTN = 0x26
DECIMAL = 0x37
NUMERIC = 0x3F
BITN = 0x68
DECIMALN = 0x6A
NUMERICN = 0x6C
FLTN = 0x6D
MONEYN = 0x6E
DATETIMN = 0x6F
DATEN = 0x28
TIMEN = 0x29
DATETIME2N = 0x2A
DATETIMEOFFSETN = 0x2B
CHAR = 0x2F
VARCHAR = 0x27
BINARY = 0x2D
VARBINARY = 0x25
BIGVARBIN = 0xA5
BIGVARCHR = 0xA7
BIGBINARY = 0xAD
BIGCHAR = 0xAF
NVARCHAR = 0xE7
NCHAR = 0xEF
XML = 0xF1
UDT = 0xF0
TEXT = 0x23
IMAGE = 0x22
NTEXT = 0x63
SSVARIANT = 0x62
TVP = 0xF3

TYPE_NAMES = {
    NULLTYPE: "NULL",
    INT1: "INT1",
    BIT: "BIT",
    INT2: "INT2",
    INT4: "INT4",
    DATETIM4: "DATETIM4",
    FLT4: "FLT4",
    MONEY: "MONEY",
    DATETIME: "DATETIME",
    FLT8: "FLT8",
    MONEY4: "MONEY4",
    INT8: "INT8",
    GUID: "GUID",
    INTN: "INTN",
    DECIMAL: "DECIMAL",
    NUMERIC: "NUMERIC",
    BITN: "BITN",
    DECIMALN: "DECIMALN",
    NUMERICN: "NUMERICN",
    FLTN: "FLTN",
    MONEYN: "MONEYN",
    DATETIMN: "DATETIMN",
    DATEN: "DATEN",
    TIMEN: "TIMEN",
    DATETIME2N: "DATETIME2N",
    DATETIMEOFFSETN: "DATETIMEOFFSETN",
    CHAR: "CHAR",
    VARCHAR: "VARCHAR",
    BINARY: "BINARY",
    VARBINARY: "VARBINARY",
    BIGVARBIN: "BIGVARBIN",
    BIGVARCHR: "BIGVARCHR",
    BIGBINARY: "BIGBINARY",
    BIGCHAR: "BIGCHAR",
    NVARCHAR: "NVARCHAR",
    NCHAR: "NCHAR",
    XML: "XML",
    UDT: "UDT",
    TEXT: "TEXT",
    IMAGE: "IMAGE",
    NTEXT: "NTEXT",
    SSVARIANT: "SSVARIANT",
    TVP: "TVP",
}

FIXED_SIZES = {
    NULLTYPE: 0,
    INT1: 1,
    BIT: 1,
    INT2: 2,
    INT4: 4,
    DATETIM4: 4,
    FLT4: 4,
    MONEY: 8,
    DATETIME: 8,
    FLT8: 8,
    MONEY4: 4,
    INT8: 8,
}
BYTELEN_TYPES = {
    GUID,
    INTN,
    DECIMAL,
    NUMERIC,
    BITN,
    DECIMALN,
    NUMERICN,
    FLTN,
    MONEYN,
    DATETIMN,
    CHAR,
    VARCHAR,
    BINARY,
    VARBINARY,
}
USHORTLEN_TYPES = {BIGVARBIN, BIGVARCHR, BIGBINARY, BIGCHAR, NVARCHAR, NCHAR}
CHAR_TYPES = {BIGVARCHR, BIGCHAR, NVARCHAR, NCHAR, TEXT, NTEXT, CHAR, VARCHAR}
UNICODE_TYPES = {NVARCHAR, NCHAR, NTEXT}
SCALED_TIME_TYPES = {TIMEN, DATETIME2N, DATETIMEOFFSETN}

PLP_NULL = 0xFFFFFFFFFFFFFFFF
PLP_UNKNOWN = 0xFFFFFFFFFFFFFFFE
MAX_LEN = 0xFFFF

# Latin1_General / SQL_Latin1_General_CP1_CI_AS: LCID 0x0409, flags 0xD0 (CI, AI-off...)
DEFAULT_COLLATION = bytes([0x09, 0x04, 0xD0, 0x00, 0x34])

EPOCH_1900 = datetime(1900, 1, 1)
DATE_0001 = date(1, 1, 1)


class ProtocolError(Exception):
    """The client sent something this peer cannot parse."""


# ==========================================================================================
# packet framing (2.2.3)
# ==========================================================================================
def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("peer closed connection")
        buf += chunk
    return bytes(buf)


@dataclass
class Message:
    type: int
    status: int  # status byte of the first packet (reset-connection bits live there)
    payload: bytes


def read_message(sock: socket.socket) -> Message:
    """Read packets until one has EOM; return the concatenated payload."""
    parts: list[bytes] = []
    first_status: int | None = None
    first_type: int | None = None
    while True:
        ptype, status, length, _spid, _pid, _win = HEADER.unpack(recv_exact(sock, HEADER.size))
        if length < HEADER.size:
            raise ProtocolError(f"bad packet length {length}")
        body = recv_exact(sock, length - HEADER.size)
        if first_type is None:
            first_type, first_status = ptype, status
        parts.append(body)
        if status & ST_EOM:
            break
    assert first_type is not None and first_status is not None
    if first_status & ST_IGNORE:
        return Message(first_type, first_status | ST_IGNORE, b"")
    return Message(first_type, first_status, b"".join(parts))


def frame(ptype: int, payload: bytes, packet_size: int, spid: int = 0x33) -> bytes:
    """Split a message into packets of at most packet_size bytes."""
    chunk = max(packet_size - HEADER.size, 1)
    out = bytearray()
    pieces = [payload[i : i + chunk] for i in range(0, len(payload), chunk)] or [b""]
    for n, piece in enumerate(pieces, start=1):
        status = ST_EOM if n == len(pieces) else 0
        out += HEADER.pack(ptype, status, len(piece) + HEADER.size, spid, n % 256, 0)
        out += piece
    return bytes(out)


# ==========================================================================================
# reader
# ==========================================================================================
class Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError(f"truncated message: need {n} bytes at {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str) -> Any:
        s = struct.Struct("<" + fmt)
        v = s.unpack_from(self.take(s.size))
        return v[0] if len(v) == 1 else v

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(self.unpack("H"))

    def u32(self) -> int:
        return int(self.unpack("I"))

    def u64(self) -> int:
        return int(self.unpack("Q"))

    def b_varchar(self) -> str:
        return self.take(self.u8() * 2).decode("utf-16-le")

    def us_varchar(self) -> str:
        return self.take(self.u16() * 2).decode("utf-16-le")


# ==========================================================================================
# PRELOGIN (2.2.6.5)
# ==========================================================================================
PL_VERSION, PL_ENCRYPTION, PL_INSTOPT, PL_THREADID, PL_MARS, PL_TRACEID = 0, 1, 2, 3, 4, 5
PL_FEDAUTHREQUIRED, PL_NONCEOPT, PL_TERMINATOR = 6, 7, 0xFF
ENCRYPT_OFF, ENCRYPT_ON, ENCRYPT_NOT_SUP, ENCRYPT_REQ = 0, 1, 2, 3


def parse_prelogin(data: bytes) -> dict[int, bytes]:
    opts: dict[int, bytes] = {}
    i = 0
    while i < len(data) and data[i] != PL_TERMINATOR:
        token = data[i]
        off, ln = struct.unpack_from(">HH", data, i + 1)
        opts[token] = data[off : off + ln]
        i += 5
    return opts


def build_prelogin(options: list[tuple[int, bytes]]) -> bytes:
    header_len = 5 * len(options) + 1
    head = bytearray()
    body = bytearray()
    for token, value in options:
        head += struct.pack(">BHH", token, header_len + len(body), len(value))
        body += value
    return bytes(head) + bytes([PL_TERMINATOR]) + bytes(body)


# ==========================================================================================
# LOGIN7 (2.2.6.4)
# ==========================================================================================
def decode_password(raw: bytes) -> str:
    """Undo the LOGIN7 password obfuscation (XOR 0xA5, then swap nibbles)."""
    out = bytearray()
    for b in raw:
        b ^= 0xA5
        out.append(((b & 0x0F) << 4) | (b >> 4))
    return out.decode("utf-16-le")


@dataclass
class Login7:
    tds_version: int
    packet_size: int
    client_prog_ver: int
    client_pid: int
    option_flags: tuple[int, int, int, int]
    hostname: str
    user: str
    password: str
    app_name: str
    server_name: str
    library: str
    language: str
    database: str
    features: dict[int, bytes]


def parse_login7(data: bytes) -> Login7:
    r = Reader(data)
    _length, tds_version, packet_size, prog_ver, pid, _conn_id = r.unpack("IIIIII")
    f1, f2, type_flags, f3 = r.unpack("BBBB")
    r.unpack("iI")  # ClientTimeZone, ClientLCID

    def field(index: int) -> tuple[int, int]:
        return struct.unpack_from("<HH", data, 36 + 4 * index)

    def text(index: int) -> str:
        off, ln = field(index)
        return data[off : off + 2 * ln].decode("utf-16-le")

    pw_off, pw_len = field(2)
    features: dict[int, bytes] = {}
    if f3 & 0x10:  # fExtension: ibExtension points to a DWORD offset of FeatureExt
        ext_off, ext_len = field(5)
        if ext_len >= 4:
            (fe_off,) = struct.unpack_from("<I", data, ext_off)
            fr = Reader(data, fe_off)
            while fr.remaining() > 0:
                fid = fr.u8()
                if fid == 0xFF:
                    break
                features[fid] = fr.take(fr.u32())
    return Login7(
        tds_version=tds_version,
        packet_size=packet_size,
        client_prog_ver=prog_ver,
        client_pid=pid,
        option_flags=(f1, f2, type_flags, f3),
        hostname=text(0),
        user=text(1),
        password=decode_password(data[pw_off : pw_off + 2 * pw_len]),
        app_name=text(3),
        server_name=text(4),
        library=text(6),
        language=text(7),
        database=text(8),
        features=features,
    )


# ==========================================================================================
# ALL_HEADERS (2.2.5.3)
# ==========================================================================================
@dataclass
class Headers:
    transaction_descriptor: int | None = None
    outstanding_requests: int | None = None
    trace_activity: bytes | None = None


def parse_all_headers(r: Reader) -> Headers:
    h = Headers()
    start = r.pos
    total = r.u32()
    while r.pos < start + total:
        hlen = r.u32()
        htype = r.u16()
        body = r.take(hlen - 6)
        if htype == 2:
            h.transaction_descriptor, h.outstanding_requests = struct.unpack_from("<QI", body)
        elif htype == 3:
            h.trace_activity = body
    r.pos = start + total
    return h


# ==========================================================================================
# TYPE_INFO (2.2.5.6) and values
# ==========================================================================================
@dataclass
class TypeInfo:
    type: int
    size: int = 0  # declared max length in bytes (0xFFFF = max / PLP)
    precision: int = 0
    scale: int = 0
    collation: bytes = b""

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"0x{self.type:02X}")

    @property
    def plp(self) -> bool:
        return (self.type in USHORTLEN_TYPES and self.size == MAX_LEN) or self.type in (XML, UDT)


def read_type_info(r: Reader) -> TypeInfo:
    t = r.u8()
    ti = TypeInfo(t)
    if t in FIXED_SIZES:
        ti.size = FIXED_SIZES[t]
    elif t in BYTELEN_TYPES:
        ti.size = r.u8()
        if t in (DECIMALN, NUMERICN, DECIMAL, NUMERIC):
            ti.precision, ti.scale = r.u8(), r.u8()
    elif t == DATEN:
        ti.size = 3
    elif t in SCALED_TIME_TYPES:
        ti.scale = r.u8()
    elif t in USHORTLEN_TYPES:
        ti.size = r.u16()
        if t in CHAR_TYPES:
            ti.collation = r.take(5)
    elif t in (TEXT, NTEXT, IMAGE):
        ti.size = r.u32()
        if t in CHAR_TYPES:
            ti.collation = r.take(5)
    elif t == XML:
        if r.u8():  # schema present
            r.b_varchar()
            r.b_varchar()
            r.us_varchar()
    elif t == SSVARIANT:
        ti.size = r.u32()
    else:
        raise ProtocolError(f"unsupported TYPE_INFO 0x{t:02X} ({TYPE_NAMES.get(t, '?')})")
    return ti


def _codec_for(collation: bytes) -> str:
    if len(collation) == 5 and collation[3] & 0x04:  # fUTF8 (bit 27 of LCID+flags dword)
        return "utf-8"
    return "cp1252"


def _time_len(scale: int) -> int:
    return 3 if scale <= 2 else 4 if scale <= 4 else 5


def _decode_time(raw: bytes, scale: int) -> time:
    ticks = int.from_bytes(raw, "little")
    micro = ticks * 10**6 // 10**scale
    return (datetime.min + timedelta(microseconds=micro)).time()


def _decode_date(raw: bytes) -> date:
    return DATE_0001 + timedelta(days=int.from_bytes(raw, "little"))


def read_plp(r: Reader) -> bytes | None:
    total = r.u64()
    if total == PLP_NULL:
        return None
    out = bytearray()
    while True:
        n = r.u32()
        if n == 0:
            break
        out += r.take(n)
    return bytes(out)


def read_value(r: Reader, ti: TypeInfo) -> Any:
    """Decode one value laid out as in ROW / RPC parameter data."""
    t = ti.type
    if t in FIXED_SIZES:
        return _decode_scalar(t, r.take(ti.size), ti)
    if ti.plp:
        raw = read_plp(r)
        if raw is None:
            return None
        return _decode_var(t, raw, ti)
    if t in USHORTLEN_TYPES:
        n = r.u16()
        if n == MAX_LEN:
            return None
        return _decode_var(t, r.take(n), ti)
    if t in (TEXT, NTEXT, IMAGE):
        n = r.u32()
        if n == 0xFFFFFFFF:
            return None
        return _decode_var(t, r.take(n), ti)
    if t == SSVARIANT:
        n = r.u32()
        if n == 0:
            return None
        vr = Reader(r.take(n))
        base = vr.u8()
        nprops = vr.u8()
        props = Reader(vr.take(nprops))
        inner = TypeInfo(base)
        if base in (DECIMALN, NUMERICN):
            inner.precision, inner.scale = props.u8(), props.u8()
        elif base in SCALED_TIME_TYPES:
            inner.scale = props.u8()
        elif base in USHORTLEN_TYPES:
            inner.size = props.u16() if base not in CHAR_TYPES else 0
            if base in CHAR_TYPES:
                inner.collation = props.take(5)
                inner.size = props.u16()
        data = vr.take(vr.remaining())
        if base in FIXED_SIZES:
            return _decode_scalar(base, data, inner)
        if base in USHORTLEN_TYPES:
            return _decode_var(base, data, inner)
        return _decode_scalar(base, data, inner)
    # BYTELEN types and DATEN / TIMEN / DATETIME2N / DATETIMEOFFSETN
    n = r.u8()
    if n == 0:
        return None
    raw = r.take(n)
    if t in (CHAR, VARCHAR, BINARY, VARBINARY):
        return _decode_var(t, raw, ti)
    return _decode_scalar(t, raw, ti)


def _decode_var(t: int, raw: bytes, ti: TypeInfo) -> Any:
    if t in UNICODE_TYPES:
        return raw.decode("utf-16-le")
    if t in CHAR_TYPES:
        return raw.decode(_codec_for(ti.collation), errors="replace")
    if t == XML:
        return raw.decode("utf-16-le")
    return raw


def _decode_scalar(t: int, raw: bytes, ti: TypeInfo) -> Any:
    n = len(raw)
    if t == NULLTYPE:
        return None
    if t in (INT1, INT2, INT4, INT8, INTN):
        return int.from_bytes(raw, "little", signed=n != 1)
    if t in (BIT, BITN):
        return bool(raw[0])
    if t in (FLT4, FLT8, FLTN):
        return struct.unpack("<f" if n == 4 else "<d", raw)[0]
    if t in (MONEY, MONEY4, MONEYN):
        if n == 4:
            units = struct.unpack("<i", raw)[0]
        else:
            hi, lo = struct.unpack("<iI", raw)
            units = (hi << 32) | lo
        return Decimal(units).scaleb(-4)
    if t in (DATETIME, DATETIM4, DATETIMN):
        if n == 4:
            days, minutes = struct.unpack("<HH", raw)
            return EPOCH_1900 + timedelta(days=days, minutes=minutes)
        days, ticks = struct.unpack("<iI", raw)
        return EPOCH_1900 + timedelta(days=days, milliseconds=round(ticks * 10 / 3))
    if t in (DECIMALN, NUMERICN, DECIMAL, NUMERIC):
        sign = raw[0]
        mag = int.from_bytes(raw[1:], "little")
        d = Decimal(mag).scaleb(-ti.scale)
        return d if sign == 1 else -d
    if t == GUID:
        return uuid.UUID(bytes_le=raw)
    if t == DATEN:
        return _decode_date(raw)
    if t == TIMEN:
        return _decode_time(raw, ti.scale)
    if t == DATETIME2N:
        tl = _time_len(ti.scale)
        return datetime.combine(_decode_date(raw[tl:]), _decode_time(raw[:tl], ti.scale))
    if t == DATETIMEOFFSETN:
        tl = _time_len(ti.scale)
        utc = datetime.combine(_decode_date(raw[tl : tl + 3]), _decode_time(raw[:tl], ti.scale))
        offset = struct.unpack("<h", raw[tl + 3 : tl + 5])[0]
        tz = timezone(timedelta(minutes=offset))
        return utc.replace(tzinfo=UTC).astimezone(tz)
    raise ProtocolError(f"cannot decode type 0x{t:02X}")


# ==========================================================================================
# SQL type declarations ("nvarchar(50)", "datetime2(3)", "decimal(18,2)") -> TYPE_INFO
# ==========================================================================================
_DECL = re.compile(r"^\s*([a-z0-9_]+)\s*(?:\(\s*([a-z0-9]+)\s*(?:,\s*([0-9]+)\s*)?\))?\s*$", re.I)


@dataclass
class SqlType:
    """A column type for result sets, parsed from a T-SQL type name."""

    decl: str
    info: TypeInfo

    @classmethod
    def parse(cls, decl: str) -> SqlType:
        m = _DECL.match(decl)
        if not m:
            raise ValueError(f"cannot parse SQL type {decl!r}")
        base = m.group(1).lower()
        a, b = m.group(2), m.group(3)
        is_max = a is not None and a.lower() == "max"
        n = None if a is None or is_max else int(a)

        def ln(default: int, unit: int = 1) -> int:
            if is_max:
                return MAX_LEN
            return (n if n is not None else default) * unit

        simple = {
            "tinyint": TypeInfo(INTN, 1),
            "smallint": TypeInfo(INTN, 2),
            "int": TypeInfo(INTN, 4),
            "bigint": TypeInfo(INTN, 8),
            "bit": TypeInfo(BITN, 1),
            "real": TypeInfo(FLTN, 4),
            "float": TypeInfo(FLTN, 8),
            "smallmoney": TypeInfo(MONEYN, 4),
            "money": TypeInfo(MONEYN, 8),
            "smalldatetime": TypeInfo(DATETIMN, 4),
            "datetime": TypeInfo(DATETIMN, 8),
            "date": TypeInfo(DATEN, 3),
            "uniqueidentifier": TypeInfo(GUID, 16),
        }
        if base in simple:
            info = simple[base]
            if base == "float" and n is not None and n <= 24:
                info = TypeInfo(FLTN, 4)
        elif base in ("datetime2", "time", "datetimeoffset"):
            t = {"datetime2": DATETIME2N, "time": TIMEN, "datetimeoffset": DATETIMEOFFSETN}[base]
            info = TypeInfo(t, scale=7 if n is None else n)
        elif base in ("decimal", "numeric"):
            p = 18 if n is None else n
            s = int(b) if b else 0
            size = 5 if p <= 9 else 9 if p <= 19 else 13 if p <= 28 else 17
            info = TypeInfo(DECIMALN if base == "decimal" else NUMERICN, size, p, s)
        elif base in ("nvarchar", "nchar"):
            t = NVARCHAR if base == "nvarchar" else NCHAR
            info = TypeInfo(t, ln(1 if base == "nchar" else 4000, 2), collation=DEFAULT_COLLATION)
        elif base in ("varchar", "char"):
            t = BIGVARCHR if base == "varchar" else BIGCHAR
            info = TypeInfo(t, ln(1 if base == "char" else 8000), collation=DEFAULT_COLLATION)
        elif base in ("varbinary", "binary"):
            t = BIGVARBIN if base == "varbinary" else BIGBINARY
            info = TypeInfo(t, ln(1 if base == "binary" else 8000))
        elif base == "sysname":
            info = TypeInfo(NVARCHAR, 256, collation=DEFAULT_COLLATION)
        else:
            raise ValueError(f"unsupported SQL type {decl!r}")
        return cls(decl, info)


def split_param_decls(decl: str) -> list[tuple[str, str]]:
    """'@P1 int,@P2 decimal(18,2) OUTPUT' -> [('@P1', 'int'), ('@P2', 'decimal(18,2)')]."""
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in decl:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    out = []
    for p in parts:
        bits = p.strip().split(None, 1)
        if not bits:
            continue
        name = bits[0]
        typ = bits[1] if len(bits) > 1 else ""
        typ = re.sub(r"\s+(OUT|OUTPUT|READONLY)\s*$", "", typ, flags=re.I).strip()
        out.append((name, typ))
    return out


# ==========================================================================================
# encoders
# ==========================================================================================
def b_varchar(s: str) -> bytes:
    raw = s.encode("utf-16-le")
    return bytes([len(raw) // 2]) + raw


def us_varchar(s: str) -> bytes:
    raw = s.encode("utf-16-le")
    return struct.pack("<H", len(raw) // 2) + raw


def b_varbyte(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def tok_loginack(prog_name: str, tds_version: int, version: tuple[int, int, int]) -> bytes:
    body = (
        bytes([1])
        + struct.pack(">I", tds_version)
        + b_varchar(prog_name)
        + bytes([version[0], version[1]])
        + struct.pack(">H", version[2])
    )
    return bytes([TOK_LOGINACK]) + struct.pack("<H", len(body)) + body


def tok_envchange_str(kind: int, new: str, old: str) -> bytes:
    body = bytes([kind]) + b_varchar(new) + b_varchar(old)
    return bytes([TOK_ENVCHANGE]) + struct.pack("<H", len(body)) + body


def tok_envchange_bytes(kind: int, new: bytes, old: bytes) -> bytes:
    body = bytes([kind]) + b_varbyte(new) + b_varbyte(old)
    return bytes([TOK_ENVCHANGE]) + struct.pack("<H", len(body)) + body


def tok_message(
    token: int,
    number: int,
    message: str,
    state: int,
    severity: int,
    server: str,
    proc: str = "",
    line: int = 1,
) -> bytes:
    body = (
        struct.pack("<iBB", number, state, severity)
        + us_varchar(message)
        + b_varchar(server)
        + b_varchar(proc)
        + struct.pack("<i", line)
    )
    return bytes([token]) + struct.pack("<H", len(body)) + body


def tok_done(status: int, rowcount: int = 0, token: int = TOK_DONE, curcmd: int = 0) -> bytes:
    return struct.pack("<BHHQ", token, status, curcmd, rowcount)


def tok_returnstatus(value: int) -> bytes:
    return struct.pack("<Bi", TOK_RETURNSTATUS, value)


def tok_featureextack(acks: list[tuple[int, bytes]] | None = None) -> bytes:
    body = b"".join(struct.pack("<BI", fid, len(d)) + d for fid, d in acks or [])
    return bytes([TOK_FEATUREEXTACK]) + body + b"\xff"


def write_type_info(ti: TypeInfo) -> bytes:
    t = ti.type
    if t in FIXED_SIZES or t == DATEN:
        return bytes([t])
    if t in (DECIMALN, NUMERICN):
        return bytes([t, ti.size, ti.precision, ti.scale])
    if t in BYTELEN_TYPES:
        return bytes([t, ti.size])
    if t in SCALED_TIME_TYPES:
        return bytes([t, ti.scale])
    if t in USHORTLEN_TYPES:
        return bytes([t]) + struct.pack("<H", ti.size) + (ti.collation if t in CHAR_TYPES else b"")
    raise ValueError(f"cannot encode TYPE_INFO for {ti.name}")


def _int_bytes(v: int, size: int) -> bytes:
    return int(v).to_bytes(size, "little", signed=size != 1)


def _encode_time(t: time, scale: int) -> bytes:
    micro = ((t.hour * 60 + t.minute) * 60 + t.second) * 10**6 + t.microsecond
    ticks: int = micro * 10**scale // 10**6
    return ticks.to_bytes(_time_len(scale), "little")


def _encode_date(d: date) -> bytes:
    return (d - DATE_0001).days.to_bytes(3, "little")


def _plp(raw: bytes) -> bytes:
    out = struct.pack("<Q", len(raw))
    if raw:
        out += struct.pack("<I", len(raw)) + raw
    return out + struct.pack("<I", 0)


def write_value(ti: TypeInfo, v: Any) -> bytes:
    """Encode one column value as in a ROW token (all types nullable)."""
    t = ti.type
    if ti.plp:
        if v is None:
            return struct.pack("<Q", PLP_NULL)
        return _plp(_var_bytes(ti, v))
    if t in USHORTLEN_TYPES:
        if v is None:
            return struct.pack("<H", MAX_LEN)
        raw = _var_bytes(ti, v)
        if t == NCHAR:  # fixed-length types are padded like the server pads them
            raw = _var_bytes(ti, str(v).ljust(ti.size // 2))
        elif t == BIGCHAR:
            raw = raw.ljust(ti.size, b" ")
        elif t == BIGBINARY:
            raw = raw.ljust(ti.size, b"\0")
        if len(raw) > ti.size:
            raise ValueError(f"value too long for {ti.name}({ti.size} bytes): {len(raw)}")
        return struct.pack("<H", len(raw)) + raw
    if v is None:
        return b"\0"
    if t == INTN:
        return bytes([ti.size]) + _int_bytes(v, ti.size)
    if t == BITN:
        return b"\x01" + bytes([1 if v else 0])
    if t == FLTN:
        return bytes([ti.size]) + struct.pack("<f" if ti.size == 4 else "<d", float(v))
    if t == MONEYN:
        units = int((Decimal(v) * 10000).to_integral_value())
        if ti.size == 4:
            return b"\x04" + struct.pack("<i", units)
        return b"\x08" + struct.pack("<iI", units >> 32, units & 0xFFFFFFFF)
    if t == DATETIMN:
        if isinstance(v, date) and not isinstance(v, datetime):
            v = datetime.combine(v, time())
        delta = v - EPOCH_1900
        if ti.size == 4:
            return b"\x04" + struct.pack("<HH", delta.days, delta.seconds // 60)
        ticks = round((delta.seconds + delta.microseconds / 1e6) * 300)
        return b"\x08" + struct.pack("<iI", delta.days, ticks)
    if t in (DECIMALN, NUMERICN):
        d = Decimal(v)
        mag = int(abs(d).scaleb(ti.scale).to_integral_value())
        body = bytes([0 if d < 0 else 1]) + mag.to_bytes(ti.size - 1, "little")
        return bytes([ti.size]) + body
    if t == GUID:
        u = v if isinstance(v, uuid.UUID) else uuid.UUID(str(v))
        return b"\x10" + u.bytes_le
    if t == DATEN:
        if isinstance(v, datetime):
            v = v.date()
        return b"\x03" + _encode_date(v)
    if t == TIMEN:
        if isinstance(v, datetime):
            v = v.time()
        raw = _encode_time(v, ti.scale)
        return bytes([len(raw)]) + raw
    if t == DATETIME2N:
        if not isinstance(v, datetime):
            v = datetime.combine(v, time())
        raw = _encode_time(v.time(), ti.scale) + _encode_date(v.date())
        return bytes([len(raw)]) + raw
    if t == DATETIMEOFFSETN:
        off = v.utcoffset() or timedelta(0)
        utc = (v - off).replace(tzinfo=None)
        raw = (
            _encode_time(utc.time(), ti.scale)
            + _encode_date(utc.date())
            + struct.pack("<h", int(off.total_seconds() // 60))
        )
        return bytes([len(raw)]) + raw
    raise ValueError(f"cannot encode value for {ti.name}")


def _var_bytes(ti: TypeInfo, v: Any) -> bytes:
    if ti.type in UNICODE_TYPES:
        return str(v).encode("utf-16-le")
    if ti.type in CHAR_TYPES:
        return str(v).encode(_codec_for(ti.collation))
    if isinstance(v, str):
        return v.encode()
    return bytes(v)


def tok_colmetadata(columns: list[tuple[str, TypeInfo]]) -> bytes:
    out = bytearray([TOK_COLMETADATA]) + struct.pack("<H", len(columns))
    for name, ti in columns:
        out += struct.pack("<IH", 0, 0x0001)  # UserType, Flags (fNullable)
        out += write_type_info(ti)
        out += b_varchar(name)
    return bytes(out)


def tok_row(columns: list[tuple[str, TypeInfo]], row: Any) -> bytes:
    values = list(row)
    if len(values) != len(columns):
        raise ValueError(f"row has {len(values)} values, result set has {len(columns)} columns")
    return bytes([TOK_ROW]) + b"".join(
        write_value(ti, v) for (_n, ti), v in zip(columns, values, strict=True)
    )


def tok_returnvalue(ordinal: int, name: str, ti: TypeInfo, value: Any, status: int = 1) -> bytes:
    return (
        bytes([TOK_RETURNVALUE])
        + struct.pack("<H", ordinal)
        + b_varchar(name)
        + bytes([status])
        + struct.pack("<IH", 0, 0x0001)
        + write_type_info(ti)
        + write_value(ti, value)
    )


# ==========================================================================================
# client-side encoders (for the peer's own tests: a minimal raw TDS client)
# ==========================================================================================
def encode_password(password: str) -> bytes:
    out = bytearray()
    for b in password.encode("utf-16-le"):
        out.append((((b & 0x0F) << 4) | (b >> 4)) ^ 0xA5)
    return bytes(out)


def build_login7(
    user: str, password: str, database: str = "", app_name: str = "raw", hostname: str = "h"
) -> bytes:
    """A LOGIN7 stream (2.2.6.4) with SQL authentication and no FeatureExt."""
    fields = [hostname, user, None, app_name, "srv", "", "raw-lib", "", database]
    fixed = 36 + 4 * 9 + 6 + 4 * 3 + 4  # header, 9 pairs, ClientID, 3 pairs, cbSSPILong
    offsets = bytearray()
    data = bytearray()
    for value in fields:
        raw = encode_password(password) if value is None else value.encode("utf-16-le")
        offsets += struct.pack("<HH", fixed + len(data), len(raw) // 2)
        data += raw
    offsets += b"\0" * 6  # ClientID
    offsets += struct.pack("<HH", fixed + len(data), 0) * 3  # SSPI, AtchDBFile, ChangePassword
    offsets += struct.pack("<I", 0)  # cbSSPILong
    head = struct.pack(
        "<IIIIIIBBBBiI", fixed + len(data), 0x74000004, 4096, 7, 1, 0, 0xE0, 0x03, 0, 0, 0, 0x409
    )
    return head + bytes(offsets) + bytes(data)


def parse_tokens(payload: bytes) -> list[tuple[int, bytes]]:
    """Split a simple server reply into (token, body) pairs: enough for ERROR / INFO /
    ENVCHANGE / LOGINACK / DONE* streams (no result sets)."""
    r = Reader(payload)
    out: list[tuple[int, bytes]] = []
    while r.remaining() > 0:
        tok = r.u8()
        if tok in (TOK_DONE, TOK_DONEPROC, TOK_DONEINPROC):
            out.append((tok, r.take(12)))
        elif tok == TOK_RETURNSTATUS:
            out.append((tok, r.take(4)))
        elif tok == TOK_FEATUREEXTACK:
            body = bytearray()
            while True:
                fid = r.u8()
                body.append(fid)
                if fid == 0xFF:
                    break
                n = r.u32()
                body += struct.pack("<I", n) + r.take(n)
            out.append((tok, bytes(body)))
        else:
            out.append((tok, r.take(r.u16())))
    return out


def all_headers(transaction_descriptor: int = 0, outstanding: int = 1) -> bytes:
    """ALL_HEADERS with a transaction descriptor header (2.2.5.3.2)."""
    header = struct.pack("<IHQI", 18, 2, transaction_descriptor, outstanding)
    return struct.pack("<I", 4 + len(header)) + header


def build_rpc(
    calls: list[tuple[str | int, list[tuple[str, str, Any]]]], transaction_descriptor: int = 0
) -> bytes:
    """An RPC request (2.2.6.6): calls of (proc name or id, [(name, sql type, value)]),
    separated by the batch flag 0xFF."""
    out = bytearray(all_headers(transaction_descriptor))
    for i, (proc, params) in enumerate(calls):
        if i:
            out.append(0xFF)
        if isinstance(proc, int):
            out += struct.pack("<HH", 0xFFFF, proc)
        else:
            out += us_varchar(proc)
        out += struct.pack("<H", 0)
        for name, sql_type, value in params:
            info = SqlType.parse(sql_type).info
            out += b_varchar(name) + b"\0" + write_type_info(info) + write_value(info, value)
    return bytes(out)
