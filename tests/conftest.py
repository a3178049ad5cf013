"""Shared fixtures: a fake clock and log capture for the library's logger."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from async_db_client import FakeClock

START = datetime(2024, 1, 8, 10, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


from tests.live import (  # noqa: E402  (fixtures)
    mysql_database,  # noqa: F401
    mysql_least_privilege,  # noqa: F401
    own_database,  # noqa: F401
)
