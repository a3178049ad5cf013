"""Shared fixtures (a fake clock, the live databases) and the hypothesis profile."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings

from async_db_client import FakeClock

# The hostile-input oracles and harness assert; keep pytest's detailed assertion messages
# for them as when they were part of the test module.
pytest.register_assert_rewrite("tests.support.hostile")

# No per-example deadline (hypothesis's default is 200 ms): on a machine whose cores are
# busy elsewhere an ordinary example can take longer, and the run would fail by load.
settings.register_profile("adc", deadline=None)
# Under CI the property tests are also derandomized: the same code always meets the same
# examples, so a run cannot fail by luck (locally they keep exploring new ones).
settings.register_profile(
    "ci", parent=settings.get_profile("adc"), derandomize=True, database=None, print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "adc")

START = datetime(2024, 1, 8, 10, 30, tzinfo=UTC)

# The ODBC drivers the tests use are registered in the venv (tools/install_msodbc.sh),
# never in /etc: point unixODBC there when pytest runs without `make test`.
_VENV_ODBC = Path(sys.prefix) / "etc"
if "ODBCSYSINI" not in os.environ and (_VENV_ODBC / "odbcinst.ini").exists():
    os.environ["ODBCSYSINI"] = str(_VENV_ODBC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


from tests.support.live import (  # noqa: E402  (fixtures)
    mysql_database,  # noqa: F401
    mysql_least_privilege,  # noqa: F401
    own_database,  # noqa: F401
)
from tests.support.mariadb_server import private_server  # noqa: E402,F401  (a fixture)
from tests.support.postgres import (  # noqa: E402  (fixtures)
    own_postgres_database,  # noqa: F401
    postgres_database,  # noqa: F401
    postgres_least_privilege,  # noqa: F401
)
from tests.support.redis_server import redis_server  # noqa: E402,F401  (a fixture)
