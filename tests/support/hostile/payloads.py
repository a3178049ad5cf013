"""Hostile input for tests/test_hostile_input.py: classic payloads, hypothesis strategies
of hostile Unicode, and name lists of an exact JSON size."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from async_db_client.models import (
    MAX_HASH_CHARS,
    MAX_PATH_BYTES,
    MAX_SITE_ID_CHARS,
    MAX_SUMMARY_CHARS,
)
from tests.support.hostile.oracles import names_json_bytes, valid_name

#: Classic payloads: SQL injection for MySQL and SQL Server, placeholder and escape
#: confusion for the drivers, JSON breakers for the JSON columns, Unicode tricks, and
#: sizes around every limit.
PAYLOADS: list[str] = [
    # quotes and escapes
    "'",
    "''",
    '"',
    "`",
    "\\",
    "\\'",
    "\\\\'",
    "\\0",
    "\\Z",
    "\\n",
    "'\\",
    "a'b\"c`d\\e",
    # classic SQL injection
    "' OR '1'='1",
    "' OR 1=1 -- ",
    "' OR 1=1#",
    '" OR ""="',
    "admin'--",
    "1' AND SLEEP(5) AND '1'='1",
    "1; SELECT SLEEP(5)",
    "'; DROP TABLE hash_records; --",
    "'); DROP TABLE remote_logs; --",
    '"; DELETE FROM core_sites; --',
    "x'; UPDATE hash_records SET current_hash='pwned' WHERE '1'='1",
    "1; TRUNCATE TABLE pipeline_sites",
    "' UNION SELECT path, current_hash FROM hash_records --",
    "' UNION ALL SELECT NULL,NULL,NULL,NULL,NULL,NULL,NULL-- -",
    "') OR ('a'='a",
    "1 OR 1=1",
    "log_id; DROP TABLE remote_logs",
    "timestamp DESC, (SELECT SLEEP(5))",
    "current_hash FROM hash_records; --",
    "/*! SELECT 1 */",
    "/*M! SELECT 1 */",
    "*/",
    "/*",
    "-- ",
    "#",
    ";",
    "' INTO OUTFILE '/tmp/adc_pwned",
    "LOAD_FILE('/etc/passwd')",
    "BENCHMARK(10000000,MD5(1))",
    "0x27204f5220313d31",
    "CHAR(39)",
    "N'x' + 'y'",
    "_binary'x'",
    "x' COLLATE utf8mb4_bin --",
    "'; EXEC xp_cmdshell('dir'); --",
    "'; WAITFOR DELAY '0:0:5'; --",
    "[log_id]",
    # placeholders and format strings
    "%s",
    "%(path)s",
    "%%",
    "%",
    "?",
    "??",
    ":1",
    "$1",
    "@p1",
    "{0}",
    "{}",
    "%n%n%n",
    # control characters, NUL, Unicode tricks
    "\x00",
    "a\x00b",
    "\x1a",
    "\x7f",
    "\n",
    "\r\n",
    "\t",
    "\x0b\x0c",
    "\x85",
    "\u2028\u2029",
    "\u202eevil\u202c",
    "\u200b",
    "\ufeff",
    "\u2018 OR \u20181\u2019=\u20191",
    "\u02bc OR 1=1 --",
    "\uff07 OR 1=1 --",
    "e\u0301",
    "\U0001f600",
    "\U0001d54f\U000e0001",
    "\ud800",
    "\udfff",
    "a\ud83d",
    "\udc80\udc81",
    "\ufffd",
    "\uffff",
    # JSON breakers (dirs, files and links are JSON columns)
    '"]',
    '["',
    '{"a":',
    "\\u0000",
    "\\ud800",
    '"\\',
    "}",
    "]",
    "[",
    "null",
    "true",
    "1e999",
    "$[*]",
    "$.a",
    # trailing spaces: SQL compares 'x' and 'x ' as equal (PAD SPACE / ANSI padding)
    "sentinel ",
    "/sentinel ",
    " ",
    "   ",
    # sizes around every limit
    "x" * MAX_SITE_ID_CHARS,
    "x" * (MAX_SITE_ID_CHARS + 1),
    "h" * MAX_HASH_CHARS,
    "h" * (MAX_HASH_CHARS + 1),
    "/" + "p" * (MAX_PATH_BYTES - 1),
    "/" + "p" * MAX_PATH_BYTES,
    "/" + "\U0001f600" * ((MAX_PATH_BYTES - 1) // 4),
    "/" + "\U0001f600" * (MAX_PATH_BYTES // 4),
    "s" * MAX_SUMMARY_CHARS,
    "s" * (MAX_SUMMARY_CHARS + 1),
    "'" * 5000,
    "\\" * 4097,
    "A" * 70_000,
]

# ----------------------------------------------------------- hypothesis strategies

SPECIAL_CHARS = "\x00\x01\x1a\x1f\x7f\x85 \t\n\r'\"`\\/%?;#-*\u2028\u202e\u200b\ufeff\ufffd"
characters = st.one_of(
    st.characters(exclude_categories=[]),  # any code point, surrogates included
    st.characters(categories=["Cs"]),  # lone surrogates, more often
    st.sampled_from(SPECIAL_CHARS),
)
hostile_text = st.one_of(
    st.text(characters, max_size=80),
    st.sampled_from(PAYLOADS),
    st.builds(lambda a, b: a + b, st.sampled_from(PAYLOADS), st.text(characters, max_size=8)),
    st.builds(
        lambda s, n: s * n, st.text(characters, min_size=1, max_size=4), st.integers(1, 5000)
    ),
)
names = st.lists(st.one_of(hostile_text, st.text(characters, min_size=1, max_size=12)), max_size=6)
optional_text = st.one_of(st.none(), hostile_text)
child_names = st.lists(
    st.text(characters, min_size=1, max_size=10).filter(valid_name), min_size=1, max_size=5
)

# ---------------------------------------------------------- names of an exact size


def names_of_json_size(size: int, unit: str = '"') -> list[str]:
    """Names that take exactly ``size`` bytes by :func:`names_json_bytes`, made of ``unit``
    (by default the double quote: 2 bytes of JSON each, 4 once escaped into MySQL's SQL,
    the worst expansion there is)."""
    per_unit = len(json.dumps(unit, ensure_ascii=False).encode()) - 2
    name = unit * 1000
    cost = len(json.dumps(name, ensure_ascii=False).encode()) + 1  # with its comma
    names = [name] * (size // cost)
    rest = size - len(names) * cost
    if rest:
        tail_units, filler = divmod(rest - 3, per_unit)  # quotes and comma: 3 bytes
        names.append(unit * tail_units + "x" * filler)
    assert names_json_bytes({"dirs": names}) == size
    return names
