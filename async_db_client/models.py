"""Validated records exchanged with every tier.

Models returned by the library also answer dict-style reads (``record['files']``,
``record.get('current_hash')``, ``'path' in record``, ``dict(record)``), so code written
for the synchronous predecessor, which returned dicts, keeps working unchanged. Returned
models are frozen; their lists are fresh copies owned by the caller.

Validation rules (each failure names the field):

* ``path``: non-empty, at most 4096 bytes of UTF-8, no NUL.
* hashes (``current_hash``, ``prev_hash``, ``target_hash``): non-empty, at most 128
  characters, no whitespace or control characters.
* child names (``dirs``, ``files``, ``links``): non-empty, no ``/``, no NUL; the three
  lists of one record take at most 4 MiB as compact JSON (UTF-8), so a record always
  fits one statement of every engine (MariaDB's default packet limit is 16 MiB).
* ``session_id`` and ``site_id``: at most 64 characters, no control characters
  (U+0000-U+001F, U+007F-U+009F), not ending in a space: SQL compares ``'a'`` and
  ``'a '`` as equal (MariaDB's PAD SPACE collations, SQL Server always), so such ids
  would name one site in SQL and two in memory, and control characters sort differently.
* timestamps given as epoch seconds are non-negative integers; datetimes are UTC (a naive
  datetime is taken as UTC, an aware one is converted).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self, TypeVar

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)

from .errors import InvalidInputError

__all__ = [
    "MAX_HASH_CHARS",
    "MAX_NAMES_JSON_BYTES",
    "MAX_PATH_BYTES",
    "MAX_SESSION_ID_CHARS",
    "MAX_SITE_ID_CHARS",
    "BulkResult",
    "DashboardMetrics",
    "HashRecord",
    "LogEntry",
    "LogLevel",
    "PipelineUpdate",
    "RejectedRecord",
    "SiteCompletion",
    "SiteStatus",
    "as_utc",
    "check_hash",
    "check_identifier",
    "check_path",
    "describe_validation_error",
    "names_json_bytes",
    "parse_model",
]

MAX_PATH_BYTES = 4096
MAX_HASH_CHARS = 128
MAX_SESSION_ID_CHARS = 64
MAX_SITE_ID_CHARS = 64
MAX_SUMMARY_CHARS = 4000
MAX_DETAIL_CHARS = 1_000_000
MAX_EPOCH = 2**53  # beyond any real clock; keeps values exact in JSON and doubles
#: The names in dirs, files and links of one record together, as JSON strings with their
#: commas (see :func:`names_json_bytes`). Escaped into a MySQL statement that is at most
#: 8 MiB, well inside MariaDB's default 16 MiB packet.
MAX_NAMES_JSON_BYTES = 4 * 1024 * 1024
_NAME_LISTS = ("dirs", "files", "links")
_NAMES_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


# The rules below are the only place each input rule is written: the models apply them
# to record fields, and validation.py to method arguments (naming the argument, as
# ``name``). They raise ValueError saying what is wrong, never echoing the value.


def _says(name: str, text: str) -> str:
    return f"{name} {text}" if name else text


def _utf8_len(value: str, what: str = "") -> int:
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        # Lone surrogates (e.g. os.fsdecode of undecodable bytes) cannot be stored anywhere.
        raise ValueError(_says(what, "is not valid Unicode (contains a lone surrogate)")) from None


def check_path(value: str, name: str = "path") -> str:
    """A path: non-empty, no NUL, at most 4096 bytes of UTF-8 (ValueError otherwise)."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL")
    size = _utf8_len(value, name)
    if size > MAX_PATH_BYTES:
        raise ValueError(f"{name} is {size} bytes of UTF-8, the limit is {MAX_PATH_BYTES}")
    return value


def check_hash(value: str, name: str = "hash") -> str:
    """A hash: 1 to 128 characters, no whitespace or control characters."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    if len(value) > MAX_HASH_CHARS:
        raise ValueError(f"{name} is {len(value)} characters, the limit is {MAX_HASH_CHARS}")
    # isprintable() is False for every whitespace character except the space itself, and
    # for lone surrogates, so a printable hash is also valid UTF-8.
    if not value.isprintable() or " " in value:
        raise ValueError(f"{name} must not contain whitespace or control characters")
    return value


def _check_names(values: list[str]) -> list[str]:
    # One pass; the UTF-8 check only for non-ASCII names (bulk writes validate millions).
    for index, name in enumerate(values):
        if not name:
            raise ValueError(f"name #{index} is empty")
        if "/" in name:
            raise ValueError(f"name #{index} contains '/'")
        if "\x00" in name:
            raise ValueError(f"name #{index} contains NUL")
        if not name.isascii():
            _utf8_len(name, f"name #{index}")
    return values


def _check_text(limit: int) -> Any:
    def check(value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain NUL")
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters, the limit is {limit}")
        _utf8_len(value)
        return value

    return check


def check_identifier(value: str, limit: int, name: str = "") -> str:
    """A site or session id: at most ``limit`` characters, valid Unicode, no control
    characters, no trailing space (SQL would compare it equal to the id without)."""
    if len(value) > limit:
        raise ValueError(_says(name, f"is {len(value)} characters, the limit is {limit}"))
    if _CONTROL.search(value):
        raise ValueError(_says(name, "must not contain control characters"))
    if value.endswith(" "):
        raise ValueError(_says(name, "must not end with a space"))
    if not value.isascii():
        _utf8_len(value, name)
    return value


def _identifier(limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        return check_identifier(value, limit)

    return check


def names_json_bytes(lists: list[list[str]]) -> int:
    """What :data:`MAX_NAMES_JSON_BYTES` limits: the names of ``lists`` as JSON strings
    (quoted, escaped, UTF-8), each with its comma; the lists' brackets not counted."""
    return sum(len(_NAMES_JSON.encode(names).encode("utf-8")) - 1 for names in lists if names)


def _check_non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: a naive datetime is taken as UTC, an aware one converted
    (ValueError if the conversion leaves the datetime range, e.g. year 1 at UTC+05:00)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC") from None


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Path = Annotated[str, pydantic.Strict(), AfterValidator(check_path)]
HashValue = Annotated[str, pydantic.Strict(), AfterValidator(check_hash)]
Names = Annotated[list[Annotated[str, pydantic.Strict()]], AfterValidator(_check_names)]
Epoch = Annotated[int, pydantic.Strict(), Field(ge=0, le=MAX_EPOCH)]
SessionId = Annotated[str, pydantic.Strict(), AfterValidator(_identifier(MAX_SESSION_ID_CHARS))]
SiteId = Annotated[str, pydantic.Strict(), AfterValidator(_identifier(MAX_SITE_ID_CHARS))]
UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]


class RecordModel(BaseModel):
    """Base of the returned models: frozen, strict about unknown keys, dict-style reads."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """A model of values that are valid already, every field given (rows the library
        wrote, read back): no validation, and what ``model_construct`` does for such
        input (the same instance state) at a fraction of its cost on the read path."""
        model = cls.__new__(cls)
        _set = object.__setattr__  # the models are frozen; pydantic sets these the same way
        _set(model, "__dict__", values)
        _set(model, "__pydantic_fields_set__", set(values))
        _set(model, "__pydantic_extra__", None)
        _set(model, "__pydantic_private__", None)
        return model

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields:
            return getattr(self, key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Return field ``key``, or ``default`` when the model has no such field."""
        if key in type(self).model_fields:
            return getattr(self, key)
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in type(self).model_fields

    def keys(self) -> list[str]:
        return list(type(self).model_fields)

    def values(self) -> list[Any]:
        return [getattr(self, name) for name in type(self).model_fields]

    def items(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]

    def __len__(self) -> int:
        return len(type(self).model_fields)

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` copy (lists copied too)."""
        return self.model_dump()


class HashRecord(RecordModel):
    """One directory's hash record.

    ``prev_hash`` and the three ``*_dtg_*`` timestamps (epoch seconds, UTC) are maintained
    by the backend on ``insert_or_update_hash``; values given for them there are ignored.
    """

    path: Path
    current_hash: HashValue
    prev_hash: HashValue | None = None
    current_dtg_first: Epoch | None = None
    current_dtg_latest: Epoch | None = None
    prev_dtg_latest: Epoch | None = None
    dirs: Names = Field(default_factory=list)
    files: Names = Field(default_factory=list)
    links: Names = Field(default_factory=list)
    target_hash: HashValue | None = None
    session_id: SessionId | None = None

    @model_validator(mode="after")
    def _names_fit(self) -> HashRecord:
        dirs, files, links = lists = (self.dirs, self.files, self.links)
        # The common case, in a few C calls: JSON takes at most 6 bytes a character
        # ("\u001f") and 3 a name (quotes, comma), so no need to encode.
        if not (dirs or files or links) or (
            6 * (len("".join(dirs)) + len("".join(files)) + len("".join(links)))
            + 3 * (len(dirs) + len(files) + len(links))
            <= MAX_NAMES_JSON_BYTES
        ):
            return self
        sizes = [names_json_bytes([names]) for names in lists]  # exact, for a rare record
        if sum(sizes) > MAX_NAMES_JSON_BYTES:
            # Named after the list that crosses the limit, counting the ones before it.
            crossing = next(
                name
                for n, name in enumerate(_NAME_LISTS)
                if sum(sizes[: n + 1]) > MAX_NAMES_JSON_BYTES
            )
            raise ValueError(
                f"{crossing}: dirs, files and links take {sum(sizes)} bytes as JSON, "
                f"the limit is {MAX_NAMES_JSON_BYTES}"
            )
        return self


class LogLevel(enum.StrEnum):
    """Log levels; input is case-insensitive and normalised to upper case."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class LogEntry(RecordModel):
    """A log entry. ``log_id`` is assigned by the backend; ``timestamp`` defaults to now."""

    log_id: Annotated[int, pydantic.Strict()] | None = None
    site_id: SiteId | None = None
    log_level: Annotated[LogLevel, BeforeValidator(_upper)] = LogLevel.INFO
    timestamp: UTCDateTime | None = None
    session_id: SessionId | None = None
    summary_message: Annotated[
        str,
        pydantic.Strict(),
        AfterValidator(_check_non_blank),
        AfterValidator(_check_text(MAX_SUMMARY_CHARS)),
    ]
    detailed_message: (
        Annotated[str, pydantic.Strict(), AfterValidator(_check_text(MAX_DETAIL_CHARS))] | None
    ) = None


class DashboardMetrics(RecordModel):
    """The core tier's dashboard: exactly the predecessor's eleven counters."""

    crit_error_count: int
    hash_record_count: int
    sync_current: int
    sync_1_behind: int
    sync_l24_behind: int
    sync_g24_behind: int
    sync_unknown: int
    live_current: int
    live_1_behind: int
    live_l24_behind: int
    live_inactive: int


class PipelineUpdate(RecordModel):
    """An update request of the pipeline tier; ``hash_value`` is set once answered."""

    update_id: int
    site_id: SiteId | None = None
    path: Path
    requested_at: UTCDateTime
    hash_value: HashValue | None = None
    answered_at: UTCDateTime | None = None


class SiteStatus(RecordModel):
    """What the core tier knows of one site: last heartbeat, root hash, record count."""

    site_id: SiteId
    last_heartbeat: UTCDateTime | None = None
    root_hash: HashValue | None = None
    root_hash_at: UTCDateTime | None = None
    hash_record_count: int = 0


class SiteCompletion(RecordModel):
    """A pipeline completion record: a site finished processing at ``completed_at``."""

    site_id: SiteId
    completed_at: UTCDateTime


class RejectedRecord(RecordModel):
    """A record the bulk call refused: its position in the input, its path if any, why."""

    index: int
    path: str | None
    reason: str


class BulkResult(RecordModel):
    """Outcome of ``insert_or_update_hashes``: how many were stored, which were rejected."""

    stored: int
    rejected: list[RejectedRecord] = Field(default_factory=list)


def _located(error: Any) -> tuple[str, str]:
    """(dotted location, message) of one pydantic error. A model-level check has no
    location and phrases its message as "field: reason" instead."""
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if not location:
        head, sep, rest = message.partition(": ")
        if sep and head.isidentifier():
            return head, rest
    return location, message


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """A one-line summary of ``exc`` naming each bad field, without echoing any input."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        location, message = _located(error)
        parts.append(f"{location or 'record'}: {message}")
    return "; ".join(parts)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], value: Any, what: str) -> M:
    """Validate ``value`` (a mapping or a model) as ``model``.

    Raises :class:`InvalidInputError` naming the first bad field; the message lists every
    bad field and never echoes the input (which may be huge or sensitive).
    """
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a mapping, not {type(value).__name__}", field=what)
    try:
        return model.model_validate(dict(value))
    except pydantic.ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        first = (_located(errors[0])[0] or None) if errors else None
        reason = describe_validation_error(exc)
        raise InvalidInputError(f"invalid {what}: {reason}", field=first, reason=reason) from None
