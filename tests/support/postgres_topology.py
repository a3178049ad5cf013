"""A PostgreSQL 15 primary with streaming-replication standbys, private servers
(:class:`~tests.support.postgres_server.PrivatePostgres`) on ports of their own: the
PostgreSQL counterpart of :class:`tests.support.topologies.ReplicationTopology`.

The standbys are ``pg_basebackup -R`` copies of the primary (replication connections are
trusted on 127.0.0.1 by initdb's defaults), hot standbys streaming from it. With
``synchronous=True`` the primary waits for a standby to flush each commit
(``synchronous_standby_names = '*'``, ``synchronous_commit = on``): what a client was told
is committed survives the primary's loss once a standby is promoted.

A topology is cheap (seconds) and made per test: what a test does to it (kill, promote,
pause replay, make read-only) is never undone, the whole topology goes with ``close()``.
Waits poll the servers' own state with deadlines only a hang reaches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Self

from tests.support.live import unavailable
from tests.support.postgres_server import BIN, PrivatePostgres
from tests.support.waiting import wait_until

#: How long the servers may take to do what a test waits for (replay, promotion): only a
#: hang gets this far on a loaded machine.
SETTLE = 120.0


def _poll(condition: Callable[[], bool], what: str) -> None:
    wait_until(condition, SETTLE, what=what)


def require_pg_topology() -> None:
    """Skip (fail under ``CI=true``) when this machine cannot run the topology."""
    if os.geteuid() != 0 or not os.path.exists(f"{BIN}/pg_basebackup"):
        unavailable("a PostgreSQL replication topology needs root and postgresql-15")


class PostgresReplication:
    """``with PostgresReplication(standbys=2) as topology:`` ``topology.hosts`` ..."""

    def __init__(self, standbys: int = 1, *, synchronous: bool = False) -> None:
        self.standby_count = standbys
        self.synchronous = synchronous
        self.nodes: list[PrivatePostgres] = []
        self.primary: PrivatePostgres | None = None

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self) -> Self:
        try:
            self.launch()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def launch(self) -> None:
        settings = {"wal_level": "replica", "max_wal_senders": "10", "hot_standby": "on"}
        if self.synchronous:
            settings |= {"synchronous_standby_names": "*", "synchronous_commit": "on"}
        primary = PrivatePostgres(settings=settings)
        self.nodes.append(primary)
        primary.start()
        self.primary = primary
        for _ in range(self.standby_count):
            # The standby's own settings: not synchronous_standby_names (a promoted
            # standby with no standby of its own must not wait for one).
            standby = PrivatePostgres(base_backup_of=primary, settings={"hot_standby": "on"})
            self.nodes.append(standby)
            standby.start()
        for standby in self.standbys:
            _poll(lambda s=standby: self.streaming(s), f"{standby.port} streaming")

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.stop()

    # ------------------------------------------------------------------ reading

    @property
    def standbys(self) -> list[PrivatePostgres]:
        return [node for node in self.nodes if node is not self.primary]

    @property
    def hosts(self) -> list[str]:
        """Every server as ``127.0.0.1:port``, the primary first."""
        return [self.address(node) for node in self.nodes]

    @staticmethod
    def address(node: PrivatePostgres) -> str:
        return f"127.0.0.1:{node.port}"

    def streaming(self, standby: PrivatePostgres) -> bool:
        query = "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        return standby.sql(query) == "1"

    def create_database(self, name: str) -> None:
        """A database on the primary, replayed on every standby before this returns."""
        assert self.primary is not None
        self.primary.sql(f'CREATE DATABASE "{name}"')
        self.wait_replayed()

    def wait_replayed(self, standbys: Iterable[PrivatePostgres] | None = None) -> None:
        """Until each standby replayed all the WAL the primary has written now."""
        assert self.primary is not None
        wanted = self.primary.sql("SELECT pg_current_wal_lsn()")
        for standby in self.standbys if standbys is None else standbys:
            _poll(
                lambda s=standby: s.sql(
                    f"SELECT pg_last_wal_replay_lsn() >= '{wanted}'::pg_lsn"
                ) == "t",
                f"{standby.port} replaying up to {wanted}",
            )

    def scans(self, node: PrivatePostgres, database: str, table: str) -> int:
        """Sequential plus index scans of ``table`` on ``node`` (reads it served; a
        standby's own statistics)."""
        value = node.sql(
            "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) "
            f"FROM pg_stat_user_tables WHERE relname = '{table}'",
            database,
        )
        return int(value or 0)

    # ----------------------------------------------------------------- changing

    def pause_replay(self, standby: PrivatePostgres) -> None:
        """``pg_wal_replay_pause()``, returning once replay has paused."""
        standby.sql("SELECT pg_wal_replay_pause()")
        _poll(
            lambda: standby.sql("SELECT pg_get_wal_replay_pause_state()") == "paused",
            f"{standby.port} replay paused",
        )

    def resume_replay(self, standby: PrivatePostgres) -> None:
        standby.sql("SELECT pg_wal_replay_resume()")

    def kill_primary(self) -> PrivatePostgres:
        """SIGKILL the primary (its process group); it stays down."""
        assert self.primary is not None
        killed = self.primary
        killed.kill()
        return killed

    def promote(self, standby: PrivatePostgres) -> None:
        """``pg_promote()`` on ``standby``, returning once it is out of recovery."""
        standby.sql("SELECT pg_promote(wait => true)")
        _poll(lambda: standby.sql("SELECT pg_is_in_recovery()") == "f", f"{standby.port} promoted")
        self.primary = standby

    def make_read_only(self, node: PrivatePostgres) -> None:
        """``default_transaction_read_only = on`` (ALTER SYSTEM + reload): a primary that
        refuses writes (25006) without restarting; returns once new sessions have it
        (the postmaster has then signalled the existing ones too)."""
        node.sql("ALTER SYSTEM SET default_transaction_read_only = on")
        node.sql("SELECT pg_reload_conf()")
        _poll(
            lambda: node.sql("SHOW default_transaction_read_only") == "on",
            f"{node.port} read-only",
        )
