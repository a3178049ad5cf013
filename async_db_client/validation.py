"""Checks on method arguments, and the whitelists that decide which names reach SQL.

Only names listed here are ever placed into SQL text; every value travels as a parameter.
Each check raises :class:`~async_db_client.errors.InvalidInputError` naming the argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .errors import InvalidInputError
from .models import (
    MAX_SESSION_ID_CHARS,
    MAX_SITE_ID_CHARS,
    check_hash,
    check_identifier,
    check_path,
)

__all__ = [
    "INT64_MAX",
    "LOG_ORDER_COLUMNS",
    "SINGLE_FIELDS",
    "LogQuery",
    "check_choice",
    "check_hash_arg",
    "check_idempotency_key",
    "check_log_ids",
    "check_non_negative_int",
    "check_path_arg",
    "check_site_arg",
]

#: Columns ``get_logs`` may order by: the log entry's own columns, nothing else.
LOG_ORDER_COLUMNS: tuple[str, ...] = ("log_id", "site_id", "log_level", "timestamp", "session_id")

#: Fields ``get_single_field`` may read.
SINGLE_FIELDS: tuple[str, ...] = (
    "current_hash",
    "prev_hash",
    "current_dtg_first",
    "current_dtg_latest",
    "prev_dtg_latest",
    "target_hash",
    "session_id",
)

_DIRECTIONS = ("ASC", "DESC")
#: Integers every engine stores and compares (BIGINT): larger ones are refused here, the
#: same on every backend, before any SQL.
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _str_arg(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"{name} must be a str, not {type(value).__name__}", field=name)
    return value


def _ruled(rule: Callable[..., str], value: str, name: str, *args: Any, show: bool = False) -> str:
    """``rule(value, *args, name=name)`` (a rule of models.py), its ValueError as ours;
    short identifiers are shown, since a trailing space or a control character is easy
    to miss."""
    try:
        return rule(value, *args, name=name)
    except ValueError as exc:
        shown = f", got {_show(value)}" if show else ""
        raise InvalidInputError(f"{exc}{shown}", field=name) from None


def check_path_arg(path: Any, name: str = "path") -> str:
    """A path argument: the rule of :func:`~async_db_client.models.check_path`."""
    return _ruled(check_path, _str_arg(path, name), name)


def check_hash_arg(value: Any, name: str) -> str:
    """A hash argument: the rule of :func:`~async_db_client.models.check_hash`."""
    return _ruled(check_hash, _str_arg(value, name), name)


def check_site_arg(value: Any, name: str = "site_id") -> str:
    """A site identifier: a non-blank str of at most 64 characters, valid Unicode, without
    control characters or a trailing space (see :func:`~async_db_client.models.check_identifier`).
    """
    value = _str_arg(value, name)
    if not value.strip():
        raise InvalidInputError(f"{name} must not be blank, got {_show(value)}", field=name)
    return _ruled(check_identifier, value, name, MAX_SITE_ID_CHARS, show=True)


def check_idempotency_key(value: Any) -> str | None:
    """An idempotency key: 1 to 64 printable ASCII characters without spaces, or None."""
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 64
        or not value.isascii()
        or not value.isprintable()
        or " " in value
    ):
        raise InvalidInputError(
            "idempotency_key must be 1 to 64 printable ASCII characters without spaces",
            field="idempotency_key",
        )
    return value


def check_non_negative_int(value: Any, name: str, *, allow_none: bool = False) -> int | None:
    """An int from 0 to 2**63 - 1 (bool refused), or None where allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(
            f"{name} must be a non-negative int, not {type(value).__name__}", field=name
        )
    if not 0 <= value <= INT64_MAX:
        raise InvalidInputError(f"{name} must be from 0 to {INT64_MAX}, got {value}", field=name)
    return value


def check_choice(value: Any, name: str, choices: Iterable[str], *, fold_case: bool = False) -> str:
    """``value`` must be one of ``choices`` (optionally compared case-insensitively)."""
    options = tuple(choices)
    if isinstance(value, str):
        candidate = value.upper() if fold_case else value
        if candidate in options:
            return candidate
    raise InvalidInputError(
        f"{name} must be one of {', '.join(options)}; got {_show(value)}", field=name
    )


def check_log_ids(log_ids: Any) -> list[int]:
    """A list of integer log ids (duplicates dropped, order kept)."""
    if isinstance(log_ids, str | bytes) or not isinstance(log_ids, Iterable):
        raise InvalidInputError("log_ids must be a list of ints", field="log_ids")
    ids: dict[int, None] = {}
    for position, value in enumerate(log_ids):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInputError(
                f"log_ids[{position}] must be an int, not {type(value).__name__}",
                field="log_ids",
            )
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInputError(
                f"log_ids[{position}] is not a 64-bit integer, got {value}", field="log_ids"
            )
        ids[value] = None
    return list(ids)


@dataclass(frozen=True)
class LogQuery:
    """A validated ``get_logs`` request; ``order_by`` is one of :data:`LOG_ORDER_COLUMNS`."""

    limit: int | None
    offset: int
    order_by: str
    descending: bool
    session_id: str | None
    older_than: datetime | None

    @classmethod
    def build(
        cls,
        *,
        limit: Any,
        offset: Any,
        order_by: Any,
        order_direction: Any,
        session_id_filter: Any,
        older_than_days: Any,
        now: datetime,
    ) -> LogQuery:
        limit = check_non_negative_int(limit, "limit", allow_none=True)
        offset = check_non_negative_int(offset, "offset")
        column = check_choice(order_by, "order_by", LOG_ORDER_COLUMNS)
        direction = check_choice(order_direction, "order_direction", _DIRECTIONS, fold_case=True)
        if session_id_filter is not None:
            # A filter no session id could equal is refused: SQL would match 'a' for 'a '.
            if not isinstance(session_id_filter, str):
                raise InvalidInputError(
                    "session_id_filter must be a str or None", field="session_id_filter"
                )
            _ruled(
                check_identifier,
                session_id_filter,
                "session_id_filter",
                MAX_SESSION_ID_CHARS,
                show=True,
            )
        days = check_non_negative_int(older_than_days, "older_than_days", allow_none=True)
        if days is not None and days > 100_000:
            raise InvalidInputError("older_than_days must be <= 100000", field="older_than_days")
        return cls(
            limit=limit,
            offset=offset or 0,
            order_by=column,
            descending=direction == "DESC",
            session_id=session_id_filter,
            older_than=None if days is None else now - timedelta(days=days),
        )
