"""The multi-server test support itself (tests/support/topologies.py): the roles as set
up, replication and Galera replicating, a killed node back, heal() undoing a promotion,
and nothing left running after close() or after a start that fails halfway."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pymysql
import pytest

from tests.support.mariadb_server import processes_under
from tests.support.topologies import (
    GaleraTopology,
    Node,
    ReplicationTopology,
    TopologyError,
    require_topology,
)

pytestmark = pytest.mark.live

USER, PASSWORD = "adc_topo", "Topo-pw-1"


def count(node: Node, database: str) -> int:
    with node.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM `{database}`.t")
        return int(cursor.fetchone()[0])


def test_replication_roles_as_set_up(replication: ReplicationTopology) -> None:
    primary, replicas = replication.primary, replication.replicas
    assert len(replicas) == 2 and replication.nodes == [primary, *replicas]
    assert replication.hosts == [n.address for n in replication.nodes]
    assert len(set(replication.hosts)) == 3
    assert all(h.startswith("127.0.0.1:") for h in replication.hosts)
    assert primary.variables("read_only")["read_only"] == "OFF"
    assert primary.slave_status() == {}
    for replica in replicas:
        assert replica.variables("read_only")["read_only"] == "ON"
        status = replica.slave_status()
        assert status["Slave_IO_Running"] == status["Slave_SQL_Running"] == "Yes"
        assert int(status["Master_Port"]) == primary.port
        assert status["Using_Gtid"] == "Slave_Pos"


def test_replication_replicates_and_read_only_stops_the_user(
    replication: ReplicationTopology,
) -> None:
    replication.create_user(USER, PASSWORD)
    database = replication.create_database()
    try:
        replication.primary.execute(
            f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)",
            f"INSERT INTO `{database}`.t VALUES (1), (2)",
        )
        replication.wait_replicated()
        for replica in replication.replicas:
            assert count(replica, database) == 2
            # The application user reads a replica and may not write there (read_only
            # applies to it: no READ ONLY ADMIN).
            with contextlib.closing(
                replica.connect(user=USER, password=PASSWORD, database=database)
            ) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM t")
                assert cursor.fetchone()[0] == 2
                with pytest.raises(pymysql.err.OperationalError) as info:
                    cursor.execute("INSERT INTO t VALUES (3)")
                assert info.value.args[0] == 1290
    finally:
        replication.drop_database(database)


def test_a_killed_replica_restarts_and_catches_up(replication: ReplicationTopology) -> None:
    victim = replication.replicas[0]
    database = replication.create_database()
    try:
        replication.kill(victim)
        assert not victim.running and victim not in replication.up_nodes()
        replication.primary.execute(
            f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)",
            f"INSERT INTO `{database}`.t VALUES (1)",
        )
        replication.start(victim)
        assert victim.up
        replication.wait_replicated([victim])
        assert count(victim, database) == 1
    finally:
        replication.drop_database(database)


def test_heal_undoes_a_promotion_and_keeps_the_databases(
    replication: ReplicationTopology,
) -> None:
    original = replication.primary
    database = replication.create_database()
    try:
        replication.kill(original)
        replication.promote(replication.replicas[1])
        new = replication.primary
        assert new is not original and new.variables("read_only")["read_only"] == "OFF"
        assert original in replication.detached
        new.execute(f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)")
        replication.heal()
        assert replication.primary is original and replication.replicas == replication.nodes[1:]
        assert all(node.up for node in replication.nodes)
        for node in replication.nodes:  # the database is back on every node, empty
            assert database in node.databases()
            with node.cursor() as cursor:
                cursor.execute(f"SHOW TABLES FROM `{database}`")
                assert cursor.fetchall() == ()
    finally:
        replication.drop_database(database)


def test_galera_cluster_of_three(galera: GaleraTopology) -> None:
    assert len(galera.up_nodes()) == 3 and galera.writer_node() is galera.nodes[0]
    for node in galera.nodes:
        state = node.status("wsrep_cluster_size", "wsrep_local_state", "wsrep_ready")
        assert state == {"wsrep_cluster_size": "3", "wsrep_local_state": "4", "wsrep_ready": "ON"}
    database = galera.create_database()
    try:
        galera.nodes[0].execute(
            f"CREATE TABLE `{database}`.t (id INT PRIMARY KEY)",
            f"INSERT INTO `{database}`.t VALUES (1)",
        )
        assert count(galera.nodes[2], database) == 1  # causal read on node 3
    finally:
        galera.drop_database(database)


def test_close_and_a_failed_start_leave_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    require_topology("replication")
    topology = ReplicationTopology(replicas=1)
    with topology:
        base = topology.base
        assert base is not None
        pids = {node.server.pid for node in topology.nodes}
        assert None not in pids and pids <= set(processes_under(base))
    assert processes_under(base) == [] and not base.exists()

    started: list[Path] = []

    def fail(self: ReplicationTopology) -> None:
        assert self.base is not None and all(node.running for node in self.nodes)
        started.append(self.base)
        raise RuntimeError("the set-up fails once the nodes run")

    monkeypatch.setattr(ReplicationTopology, "_seed", fail)
    with pytest.raises(TopologyError, match="fails once the nodes run"):
        ReplicationTopology(replicas=1).launch()
    assert started and processes_under(started[0]) == [] and not started[0].exists()
