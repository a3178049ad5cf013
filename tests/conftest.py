"""Shared fixtures (a fake clock, the live databases) and the hypothesis profile."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings

from async_db_client import FakeClock
from tests.support.postgres_topology import PostgresReplication, require_pg_topology
from tests.support.topologies import (
    GaleraTopology,
    ReplicationTopology,
    require_topology,
)

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

# Several servers per tier (tests/support/topologies.py): each topology starts once per
# session, when a test first asks for it, and stops at the session's end; before each
# test it is handed back as set up, whatever the test before did to it.


@pytest.fixture(scope="session")
def replication_topology() -> Iterator[ReplicationTopology]:
    """A primary and two GTID replicas, private mariadbds (skipped without mariadbd;
    failed under CI=true)."""
    require_topology("replication")
    with ReplicationTopology() as topology:
        yield topology


@pytest.fixture(scope="session")
def galera_topology() -> Iterator[GaleraTopology]:
    """A 3-node Galera cluster of private mariadbds (skipped without galera-4, rsync or
    mariadbd; failed under CI=true)."""
    require_topology("galera")
    with GaleraTopology() as topology:
        yield topology


@pytest.fixture(scope="session")
def pg_replication_topology() -> Iterator[PostgresReplication]:
    """A PostgreSQL primary and two streaming standbys, private servers (skipped without
    root or postgresql-15; failed under CI=true). Shared: tests that kill, promote or
    pause make their own (tests/test_postgres_replication_live.py)."""
    require_pg_topology()
    with PostgresReplication(standbys=2) as topology:
        yield topology


@pytest.fixture
def replication(replication_topology: ReplicationTopology) -> ReplicationTopology:
    """The session's replication topology as set up: every node running, node 1 the
    writable primary, the others its read-only replicas, replicating and caught up (a
    test may kill, stop, lag, demote or promote: this undoes it)."""
    replication_topology.heal()
    return replication_topology


@pytest.fixture
def galera(galera_topology: GaleraTopology) -> GaleraTopology:
    """The session's Galera cluster as set up: three nodes running and synced (a node a
    test killed or stopped has rejoined)."""
    galera_topology.heal()
    return galera_topology
