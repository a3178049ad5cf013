"""Several private mariadbds as the servers of one tier: a primary with GTID replicas
(:class:`ReplicationTopology`) and a Galera cluster (:class:`GaleraTopology`).

Each node is a :class:`~tests.support.mariadb_server.PrivateMariaDB` of its own (folder,
option file, datadir, socket, pid file, tmpdir, ports from ``free_port``, 127.0.0.1
only), all under one folder per topology, so that everything a topology started can be
found and ended: ``close()`` stops every node, ends whatever is left under that folder
(a state transfer's rsync) and removes it; a start that fails halfway does the same, and
so does the end of the process (``atexit``) for a topology nobody closed.

The recipes (option files, GTID replication, promotion, semi-sync, Galera's ports and
bootstrap, readiness) are those of the project's notes on topologies, checked on this
machine. What tests do to the nodes, the topology does and keeps track of: ``kill``
(SIGKILL), ``stop``/``cont`` (SIGSTOP/SIGCONT), ``start`` (again, on the same datadir;
a Galera node rejoins), ``promote`` a replica, ``stop_sql_thread``, ``set_semi_sync``.
``heal()`` hands the topology back as it was set up (the session's fixtures call it
before each test): nodes running, the original roles, replicating and caught up; it
re-seeds replication, or starts the whole topology anew, if that is what it takes. The
users and databases made through the topology survive that (empty).

Waits poll the servers' own state with deadlines that only a hang reaches (the machine
is shared); the helpers read the servers with SHOW only, so they never count in a
node's ``Com_select``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

import pymysql
import pymysql.cursors

from tests.support.live import unavailable, unique_name
from tests.support.mariadb_server import (
    INSTALL_DB,
    MARIADBD,
    PrivateMariaDB,
    free_port,
    processes_under,
)

logger = logging.getLogger("tests.topologies")

GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
SST_SCRIPT = Path("/usr/bin/wsrep_sst_rsync")
#: Schemas a re-seed keeps.
SYSTEM_SCHEMAS = frozenset({"mysql", "information_schema", "performance_schema", "sys"})
#: How long a node may take to start (a Galera joiner's includes its state transfer).
START_TIMEOUT = 240.0
#: How long a topology may take to settle (replicas catching up, nodes syncing,
#: eviction): only a hang gets this far on a loaded machine.
SETTLE = 180.0
#: How long heal() waits for what recovers by itself (a replica reconnecting, a node
#: rejoining) before it repairs.
RECOVER = 30.0
#: The prefix of the databases create_database() makes (the users it grants may use
#: exactly these).
DATABASE_PREFIX = "adc_ha"
POLL = 0.1


class TopologyError(RuntimeError):
    """A topology could not start, heal or do what a test asked of it."""


def require_topology(kind: str) -> None:
    """Skip (fail under ``CI=true``) when this machine cannot run the topology."""
    if os.geteuid() != 0 or not os.path.exists(MARIADBD) or not os.path.exists(INSTALL_DB):
        unavailable(
            f"the {kind} topology needs root and the mariadb-server package "
            "(tools/install_system_deps.sh)"
        )
    if kind == "galera":
        missing = [
            what
            for what, present in (
                (f"galera-4 ({GALERA_PROVIDER})", GALERA_PROVIDER.exists()),
                ("rsync", shutil.which("rsync") is not None),
                (f"the rsync state transfer ({SST_SCRIPT})", SST_SCRIPT.exists()),
            )
            if not present
        ]
        if missing:
            unavailable(
                "a Galera cluster needs " + ", ".join(missing) + ": run "
                "tools/install_system_deps.sh (it installs galera-4 and rsync)"
            )


def _gtids(text: str) -> dict[int, int]:
    """``"0-1-42,1-2-7"`` as ``{domain: sequence}``."""
    found: dict[int, int] = {}
    for part in (text or "").split(","):
        pieces = part.strip().split("-")
        if len(pieces) == 3 and all(p.isdigit() for p in pieces):
            domain, sequence = int(pieces[0]), int(pieces[2])
            found[domain] = max(sequence, found.get(domain, -1))
    return found


def _covers(applied: dict[int, int], wanted: dict[int, int]) -> bool:
    return all(applied.get(domain, -1) >= sequence for domain, sequence in wanted.items())


def _poll(
    condition: Callable[[], bool], timeout: float, what: Callable[[], str] | str
) -> None:
    """Poll ``condition`` (errors of the servers count as 'not yet') until it holds;
    TopologyError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            if condition():
                return
        except (pymysql.err.MySQLError, OSError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            suffix = f" (last error: {last_error})" if last_error else ""
            raise TopologyError(f"not within {timeout:g}s: {described}{suffix}")
        time.sleep(POLL)


class Node:
    """One server of a topology: its address, and root's statements on it (over TCP)."""

    def __init__(self, name: str, server: PrivateMariaDB, *, causal: bool = False) -> None:
        self.name = name
        self.server = server
        #: Galera: the tests' statements (cursor(), execute()) are causal (wsrep_sync_wait
        #: = 15: reads, updates, deletes, inserts and SHOW): each first waits until the node
        #: has applied what the cluster committed before it. Apply is asynchronous: without
        #: it a DELETE through node 1 right after a CREATE TABLE through node 3 may find no
        #: table, and a read may miss a write.
        self.causal = causal

    def __repr__(self) -> str:
        state = "frozen" if self.frozen else "running" if self.running else "down"
        return f"<Node {self.name} {self.address} {state}>"

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as a tier's ``hosts`` lists it."""
        return f"127.0.0.1:{self.server.port}"

    @property
    def running(self) -> bool:
        return self.server.running

    @property
    def frozen(self) -> bool:
        return self.server.frozen

    @property
    def up(self) -> bool:
        """Running and not frozen."""
        return self.server.running and not self.server.frozen

    def connect(self, **kw: Any) -> pymysql.connections.Connection:
        # A read timeout: a statement on a node that hangs fails instead of hanging a test;
        # a connect timeout that a loaded machine does not reach.
        options = {"connect_timeout": 10, "read_timeout": 60, "write_timeout": 60, **kw}
        return self.server.connect(**options)

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor of root on this node (autocommit), closed with its connection."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            if self.causal:
                cursor.execute("SET SESSION wsrep_sync_wait=15")
            yield cursor

    def execute(self, *statements: str) -> None:
        """Run each statement as root, in order, on one connection."""
        with self.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def _show(self, statement: str) -> dict[str, str]:
        with contextlib.closing(self.connect(read_timeout=30)) as conn, conn.cursor() as cursor:
            cursor.execute(statement)
            return {str(name): "" if value is None else str(value) for name, value in cursor}

    def variables(self, *names: str) -> dict[str, str]:
        """Global variables, by SHOW (not counted in Com_select)."""
        listed = ", ".join(f"'{name}'" for name in names)
        return self._show(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({listed})")

    def status(self, *names: str) -> dict[str, str]:
        """Global status values, by SHOW (not counted in Com_select)."""
        listed = ", ".join(f"'{name}'" for name in names)
        return self._show(f"SHOW GLOBAL STATUS WHERE Variable_name IN ({listed})")

    def slave_status(self) -> dict[str, Any]:
        """SHOW SLAVE STATUS as a dict ({} when the node replicates from nobody)."""
        with (
            contextlib.closing(self.connect(read_timeout=30)) as conn,
            conn.cursor(pymysql.cursors.DictCursor) as cursor,
        ):
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            return dict(row) if row else {}

    def databases(self) -> list[str]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cursor:
            cursor.execute("SHOW DATABASES")
            return [str(name) for (name,) in cursor.fetchall()]


#: Topologies started and not yet closed (closed at exit, whatever happened).
_LIVE: set[Topology] = set()
_LIVE_LOCK = threading.Lock()


def _close_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for topology in live:
        with contextlib.suppress(Exception):
            topology.close()


atexit.register(_close_all)


class Topology:
    """The nodes of one topology, what tests do to them, and their users and databases.

    ``with ReplicationTopology() as t:`` (or ``t.launch()`` ... ``t.close()``)."""

    kind = "?"

    def __init__(self, size: int) -> None:
        self.size = size
        self.nodes: list[Node] = []
        self.base: Path | None = None
        #: Seconds the last launch() took.
        self.start_seconds: float | None = None
        #: How many times heal() had to re-seed or start the topology anew.
        self.repairs = 0
        self.rebuilds = 0
        self._users: dict[str, str] = {}
        self._databases: set[str] = set()
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.nodes}>"

    def __hash__(self) -> int:
        return id(self)

    def __enter__(self) -> Self:
        self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------- nodes

    @property
    def hosts(self) -> list[str]:
        """Every node's address, in the order the nodes were set up (the primary, or
        Galera's first node, first)."""
        return [node.address for node in self.nodes]

    def up_nodes(self) -> list[Node]:
        """The nodes running and not frozen, in order."""
        return [node for node in self.nodes if node.up]

    def writer_node(self) -> Node:
        raise NotImplementedError

    def kill(self, node: Node) -> None:
        """SIGKILL: no shutdown, no flush."""
        with self._lock:
            node.server.kill()

    def stop(self, node: Node) -> None:
        """SIGSTOP: the node hangs with its sockets open (``cont`` resumes it)."""
        with self._lock:
            node.server.freeze()

    def cont(self, node: Node) -> None:
        """SIGCONT: a stopped node goes on where it was."""
        with self._lock:
            node.server.thaw()

    freeze = stop
    thaw = cont

    def shutdown(self, node: Node) -> None:
        """A clean shutdown (SIGTERM)."""
        with self._lock:
            node.server.stop()

    def start(self, node: Node) -> None:
        """Start a node again on its datadir (after kill or shutdown) and wait until it
        has its place back (a replica replicating, a Galera node synced)."""
        raise NotImplementedError

    def com_select(self, node: Node) -> int:
        """The node's ``Com_select``: SELECT statements it ran, from any session."""
        return int(node.status("Com_select").get("Com_select", "0"))

    # --------------------------------------------------------- users, databases

    def create_user(self, user: str, password: str) -> None:
        """An application user (again: the password is reset): every right on the
        databases of :meth:`create_database`, and REPLICA MONITOR to see replica status;
        no READ ONLY ADMIN, so read_only stops it as it stops a real application."""
        with self._lock:
            self._grant(self.writer_node(), user, password)
            self._users[user] = password
            self.settle()

    def _grant(self, node: Node, user: str, password: str) -> None:
        with node.cursor() as cursor:
            cursor.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))
            cursor.execute(
                f"GRANT ALL PRIVILEGES ON `{DATABASE_PREFIX}\\_%%`.* TO %s@'%%'", (user,)
            )
            cursor.execute("GRANT REPLICA MONITOR ON *.* TO %s@'%%'", (user,))

    def create_database(self) -> str:
        """A new empty database (a unique name: ``adc_ha_...``), on every node once this
        returns."""
        name = unique_name(DATABASE_PREFIX)
        with self._lock:
            self._create_database(self.writer_node(), name)
            self._databases.add(name)
            self.settle()
        return name

    @staticmethod
    def _create_database(node: Node, name: str) -> None:
        node.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")

    def drop_database(self, name: str) -> None:
        with self._lock:
            self._databases.discard(name)
            self.writer_node().execute(f"DROP DATABASE IF EXISTS `{name}`")

    def settle(self) -> None:
        """Wait until every running node has what the writer has."""
        raise NotImplementedError

    # ---------------------------------------------------------------- lifecycle

    def launch(self) -> Topology:
        """Start every node and set the topology up; on failure nothing is left running
        (TopologyError). A clash over a port with another process is retried."""
        began = time.monotonic()
        for attempt in range(3):
            self.base = Path(tempfile.mkdtemp(prefix=f"adc-{self.kind}-"))
            self.base.chmod(0o755)
            with _LIVE_LOCK:
                _LIVE.add(self)
            try:
                self._build()
                self._restore_objects()
            except BaseException as exc:
                clash = self._port_clash()
                self.close()
                if not isinstance(exc, Exception):
                    raise
                if clash and attempt < 2:
                    logger.warning("%s: a port was taken, starting again: %s", self.kind, exc)
                    continue
                if isinstance(exc, TopologyError):
                    raise
                raise TopologyError(f"the {self.kind} topology did not start: {exc}") from exc
            self.start_seconds = time.monotonic() - began
            logger.info("%s topology up in %.1fs: %s", self.kind, self.start_seconds, self.hosts)
            return self
        raise AssertionError("unreachable")

    def _port_clash(self) -> bool:
        if self.base is None:
            return False
        for log in self.base.glob("*/error.log"):
            with contextlib.suppress(OSError):
                if b"Address already in use" in log.read_bytes():
                    return True
        return False

    def _build(self) -> None:
        raise NotImplementedError

    def _new_server(self, name: str, **kw: Any) -> PrivateMariaDB:
        assert self.base is not None
        return PrivateMariaDB(parent=self.base, name=f"{name}-", **kw)

    def _restore_objects(self) -> None:
        """Make the users and databases made through this topology (after a re-seed or
        a new start: the databases empty)."""
        writer = self.writer_node()
        for user, password in self._users.items():
            self._grant(writer, user, password)
        present = set(writer.databases())
        for name in sorted(self._databases - present):
            self._create_database(writer, name)
        self.settle()

    def close(self) -> None:
        """Kill every node (the data is thrown away), end whatever else runs under the
        topology's folder, remove it."""
        with self._lock:
            nodes, self.nodes = self.nodes, []
            for node in nodes:
                with contextlib.suppress(Exception):
                    node.server.kill()
                with contextlib.suppress(Exception):
                    node.server.close()
            if self.base is not None:
                for pid in processes_under(self.base):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                shutil.rmtree(self.base, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def heal(self) -> None:
        """Hand the topology back as it was set up (see the module docstring)."""
        raise NotImplementedError

    def _rebuild(self, why: BaseException | str) -> None:
        logger.warning("%s: starting the topology anew (%s)", self.kind, why)
        self.rebuilds += 1
        self.close()
        self.launch()

    def _run_parallel(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run ``jobs`` in threads; every one finishes before the first error is raised."""
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = [pool.submit(job) for job in jobs]
            errors = [f.exception() for f in futures]
        for error in errors:
            if error is not None:
                raise error
        return [f.result() for f in futures]


def _change_master(primary: Node) -> str:
    return (
        f"CHANGE MASTER TO master_host='127.0.0.1', master_port={primary.port}, "
        "master_user='root', master_password='', master_use_gtid=slave_pos, "
        "master_connect_retry=1, master_delay=0"
    )


class ReplicationTopology(Topology):
    """A primary and ``replicas`` GTID replicas (gtid_strict_mode, log_slave_updates,
    row-based binlogs; replicas read_only). ``primary`` and ``replicas`` follow
    promotions; ``nodes`` and ``hosts`` keep the order of the set-up (primary first)."""

    kind = "replication"

    def __init__(self, replicas: int = 2) -> None:
        super().__init__(replicas + 1)
        self._primary: Node | None = None
        self.replicas: list[Node] = []
        #: Nodes with no role any more (a primary replaced by a promotion).
        self.detached: list[Node] = []
        self.semi_sync = False

    @property
    def primary(self) -> Node:
        if self._primary is None:
            raise TopologyError("the replication topology has no primary")
        return self._primary

    @primary.setter
    def primary(self, node: Node) -> None:
        self._primary = node

    def writer_node(self) -> Node:
        return self.primary

    @staticmethod
    def _options(index: int, replica: bool) -> dict[str, object]:
        return {
            "server_id": index,
            "log_bin": f"bin{index}",
            "relay_log": f"relay{index}",
            "binlog_format": "ROW",
            "gtid_strict_mode": 1,
            "log_slave_updates": 1,
            "read_only": 1 if replica else None,
            # A crashed process loses nothing with 2 (only an OS crash would): less fsync
            # on a shared disk.
            "innodb_flush_log_at_trx_commit": 2,
            "slave_net_timeout": 10,
        }

    def _build(self) -> None:
        def make(index: int) -> Node:
            server = self._new_server(f"n{index}", options=self._options(index, index > 1))
            node = Node(f"n{index}", server)
            with self._lock:
                self.nodes.append(node)
            server.start(timeout=START_TIMEOUT)
            return node

        made = self._run_parallel([lambda i=i: make(i) for i in range(1, self.size + 1)])
        self.nodes = list(made)
        self._seed()

    def _seed(self) -> None:
        """Set the original roles up from scratch: every node's data of the tests and
        binlogs dropped, node 1 the primary, the others its replicas from an empty GTID
        position."""
        for node in self.nodes:
            node.execute(
                "STOP SLAVE",
                "RESET SLAVE ALL",
                "SET GLOBAL rpl_semi_sync_master_enabled=0",
                "SET GLOBAL rpl_semi_sync_slave_enabled=0",
            )
            with node.cursor() as cursor:
                cursor.execute("SET SESSION sql_log_bin=0")
                cursor.execute("SHOW DATABASES")
                for (name,) in cursor.fetchall():
                    if name not in SYSTEM_SCHEMAS:
                        cursor.execute(f"DROP DATABASE `{name}`")
                for user in self._users:
                    cursor.execute("DROP USER IF EXISTS %s@'%%'", (user,))
            node.execute("RESET MASTER", "SET GLOBAL gtid_slave_pos=''")
        primary, replicas = self.nodes[0], self.nodes[1:]
        self.primary, self.replicas, self.detached = primary, list(replicas), []
        self.semi_sync = False
        for node in self.nodes:
            node.server.options["read_only"] = 1 if node in replicas else None
            node.server.write_options()
        primary.execute("SET GLOBAL read_only=0")
        for replica in replicas:
            replica.execute("SET GLOBAL read_only=1", _change_master(primary), "START SLAVE")
        for replica in replicas:
            self._wait_replicating(replica)

    def _wait_replicating(self, replica: Node, timeout: float = SETTLE) -> None:
        def running() -> bool:
            status = replica.slave_status()
            return (
                status.get("Slave_IO_Running") == "Yes"
                and status.get("Slave_SQL_Running") == "Yes"
            )

        _poll(running, timeout, lambda: f"{replica} replicating: {self._describe(replica)}")

    @staticmethod
    def _describe(node: Node) -> str:
        with contextlib.suppress(Exception):
            status = node.slave_status()
            keys = (
                "Slave_IO_Running",
                "Slave_SQL_Running",
                "Master_Port",
                "Last_IO_Error",
                "Last_SQL_Error",
                "Gtid_IO_Pos",
                "Seconds_Behind_Master",
            )
            return ", ".join(f"{key}={status.get(key)!r}" for key in keys)
        return "(status not readable)"

    # -------------------------------------------------------------- what tests do

    def start(self, node: Node) -> None:
        with self._lock:
            node.server.start(timeout=START_TIMEOUT)
            if node in self.replicas and self._primary is not None and self._primary.up:
                self._wait_replicating(node)

    def stop_sql_thread(self, replica: Node) -> None:
        """The replica keeps receiving, and stops applying (lag on demand)."""
        replica.execute("STOP SLAVE SQL_THREAD")

    def wait_replicated(self, nodes: Iterable[Node] | None = None, timeout: float = SETTLE) -> None:
        """Wait until ``nodes`` (default: every running replica) have applied everything
        in the primary's binlog now."""
        with self._lock:
            primary = self.writer_node()
            targets = [r for r in self.replicas if r.up] if nodes is None else list(nodes)
            wanted = _gtids(primary.variables("gtid_binlog_pos").get("gtid_binlog_pos", ""))

        def caught_up() -> bool:
            return all(
                _covers(_gtids(r.variables("gtid_current_pos").get("gtid_current_pos", "")), wanted)
                for r in targets
            )

        _poll(
            caught_up,
            timeout,
            lambda: f"replicas applying {wanted}: "
            + "; ".join(f"{r}: {self._describe(r)}" for r in targets),
        )

    def settle(self) -> None:
        self.wait_replicated()

    def promote(self, node: Node) -> None:
        """Make a replica the primary, as an operator would: it applies all it received
        from the old primary, stops replicating and turns writable; the other replicas
        replicate from it. The old primary is left as it is (``detached``)."""
        with self._lock:
            if node not in self.replicas:
                raise TopologyError(f"{node} is not a replica: cannot promote it")
            node.execute("STOP SLAVE IO_THREAD")
            if node.slave_status().get("Slave_SQL_Running") != "Yes":
                node.execute("START SLAVE SQL_THREAD")

            def applied_all_received() -> bool:
                status = node.slave_status()
                received = _gtids(str(status.get("Gtid_IO_Pos") or ""))
                current = node.variables("gtid_current_pos").get("gtid_current_pos", "")
                return _covers(_gtids(current), received) or "read all relay log" in str(
                    status.get("Slave_SQL_Running_State") or ""
                )

            _poll(
                applied_all_received,
                SETTLE,
                lambda: f"{node} applying its relay log: {self._describe(node)}",
            )
            node.execute("STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only=0")
            node.server.options["read_only"] = None
            node.server.write_options()
            old = self._primary
            others = [r for r in self.replicas if r is not node]
            for replica in others:
                if replica.up:
                    replica.execute("STOP SLAVE", _change_master(node), "START SLAVE")
            self.primary, self.replicas = node, others
            if old is not None:
                self.detached.append(old)

    def set_semi_sync(self, enabled: bool, *, timeout_ms: int = 10_000) -> None:
        """Semi-synchronous replication on (the primary acknowledges a commit once a
        replica has it; falls back to asynchronous after ``timeout_ms``) or off."""
        with self._lock:
            primary = self.writer_node()
            replicas = [r for r in self.replicas if r.up]
            flag = 1 if enabled else 0
            primary.execute(
                f"SET GLOBAL rpl_semi_sync_master_timeout={int(timeout_ms)}",
                f"SET GLOBAL rpl_semi_sync_master_enabled={flag}",
            )
            for replica in replicas:
                replica.execute(
                    f"SET GLOBAL rpl_semi_sync_slave_enabled={flag}",
                    "STOP SLAVE IO_THREAD",
                    "START SLAVE IO_THREAD",
                )
            self.semi_sync = enabled
            if enabled:

                def acknowledging() -> bool:
                    status = primary.status(
                        "Rpl_semi_sync_master_clients", "Rpl_semi_sync_master_status"
                    )
                    return (
                        int(status.get("Rpl_semi_sync_master_clients", "0")) == len(replicas)
                        and status.get("Rpl_semi_sync_master_status") == "ON"
                    )

                _poll(acknowledging, SETTLE, "every replica acknowledging (semi-sync)")
            for replica in replicas:
                self._wait_replicating(replica)

    # --------------------------------------------------------------------- heal

    def _problems(self) -> tuple[list[str], list[str]]:
        """What differs from the set-up: (lasting problems, passing ones)."""
        lasting: list[str] = []
        passing: list[str] = []
        down = [node for node in self.nodes if not node.up]
        if down:
            return [f"not running: {down}"], []
        if self._primary is not self.nodes[0] or self.replicas != self.nodes[1:]:
            lasting.append(f"roles changed: primary {self.primary}")
            return lasting, passing
        primary = self.primary
        names = ("read_only", "rpl_semi_sync_master_enabled", "rpl_semi_sync_slave_enabled")
        settings = primary.variables(*names)
        if settings.get("read_only") != "OFF":
            lasting.append(f"{primary} read_only")
        if primary.slave_status():
            lasting.append(f"{primary} replicates")
        wanted = _gtids(primary.variables("gtid_binlog_pos").get("gtid_binlog_pos", ""))
        for replica in self.replicas:
            values = replica.variables(*names, "gtid_current_pos")
            if values.get("read_only") != "ON":
                lasting.append(f"{replica} writable")
            status = replica.slave_status()
            if (
                status.get("Slave_SQL_Running") != "Yes"
                or status.get("Slave_IO_Running") == "No"
                or int(status.get("Master_Port") or 0) != primary.port
                or int(status.get("SQL_Delay") or 0) != 0
                or status.get("Using_Gtid") != "Slave_Pos"
                or status.get("Last_SQL_Errno") not in (0, None)
            ):
                lasting.append(f"{replica}: {self._describe(replica)}")
            elif status.get("Slave_IO_Running") != "Yes":
                passing.append(f"{replica} connecting")
            elif not _covers(_gtids(values.get("gtid_current_pos", "")), wanted):
                passing.append(f"{replica} behind")
            if values.get("rpl_semi_sync_slave_enabled") != "OFF":
                lasting.append(f"{replica} semi-sync")
        if settings.get("rpl_semi_sync_master_enabled") != "OFF":
            lasting.append(f"{primary} semi-sync")
        return lasting, passing

    def heal(self) -> None:
        with self._lock:
            try:
                for node in self.nodes:
                    if node.frozen:
                        node.server.thaw()
                    if not node.running:
                        node.server.start(timeout=START_TIMEOUT)
                deadline = time.monotonic() + RECOVER
                while True:
                    lasting, passing = self._problems()
                    if lasting or (passing and time.monotonic() >= deadline):
                        logger.warning("replication: re-seeding (%s)", lasting or passing)
                        self.repairs += 1
                        self._seed()
                        self._restore_objects()
                        break
                    if not passing:
                        break
                    time.sleep(POLL)
                lasting, passing = self._problems()
                if lasting or passing:
                    raise TopologyError(f"still not healthy: {lasting + passing}")
            except Exception as exc:  # e.g. a node that no longer starts
                self._rebuild(exc)


class GaleraTopology(Topology):
    """``size`` Galera nodes (3: a quorum survives one node lost): node 1 bootstraps
    the cluster, the others join it by a state transfer (rsync)."""

    kind = "galera"

    def __init__(self, size: int = 3) -> None:
        super().__init__(size)

    def writer_node(self) -> Node:
        up = self.up_nodes()
        if not up:
            raise TopologyError("no Galera node is running")
        return up[0]

    def _ports(self) -> list[tuple[int, int, int]]:
        """(SQL, group, state transfer) per node: all different, and group+1 (IST) free."""
        taken: set[int] = set()
        found = []

        def fresh(pair: bool = False) -> int:
            while True:
                port = free_port()
                wanted = {port, port + 1} if pair else {port}
                if not wanted & taken and (not pair or _port_free(port + 1)):
                    taken.update(wanted)
                    return port

        for _ in range(self.size):
            found.append((fresh(), fresh(pair=True), fresh()))
        return found

    def _options(self, index: int, ports: list[tuple[int, int, int]]) -> dict[str, object]:
        sql, group, sst = ports[index - 1]
        members = ",".join(f"127.0.0.1:{g}" for _, g, _ in ports)
        return {
            "binlog_format": "ROW",
            "default_storage_engine": "InnoDB",
            "innodb_autoinc_lock_mode": 2,
            "innodb_flush_log_at_trx_commit": 2,
            "wsrep_on": "ON",
            "wsrep_provider": GALERA_PROVIDER,
            "wsrep_cluster_name": f"adc_{os.getpid()}_{ports[0][1]}",
            "wsrep_cluster_address": f"gcomm://{members}",
            "wsrep_node_address": f"127.0.0.1:{group}",
            "wsrep_node_name": f"n{index}",
            "wsrep_node_incoming_address": f"127.0.0.1:{sql}",
            "wsrep_provider_options": f'"base_port={group};gcache.size=32M"',
            "wsrep_sst_receive_address": f"127.0.0.1:{sst}",
            "wsrep_sst_method": "rsync",
        }

    def _build(self) -> None:
        ports = self._ports()
        for index in range(1, self.size + 1):
            server = self._new_server(
                f"n{index}",
                port=ports[index - 1][0],
                options=self._options(index, ports),
                install=index == 1,  # the others receive their data by a state transfer
            )
            self.nodes.append(Node(f"n{index}", server, causal=True))
        first, *others = self.nodes
        first.server.start(["--wsrep-new-cluster"], timeout=START_TIMEOUT)
        self._wait_synced([first])
        for joined, node in enumerate(others, start=2):
            node.server.start(timeout=START_TIMEOUT)
            self._wait_synced(self.nodes[:joined])

    # ------------------------------------------------------------------ waiting

    def _state(self, node: Node) -> dict[str, str]:
        return node.status(
            "wsrep_local_state",
            "wsrep_ready",
            "wsrep_cluster_status",
            "wsrep_cluster_size",
            "wsrep_last_committed",
        )

    def _synced(self, node: Node, size: int) -> bool:
        state = self._state(node)
        return (
            state.get("wsrep_local_state") == "4"
            and state.get("wsrep_ready") == "ON"
            and state.get("wsrep_cluster_status") == "Primary"
            and state.get("wsrep_cluster_size") == str(size)
        )

    def _describe_all(self, nodes: Sequence[Node]) -> str:
        parts = []
        for node in nodes:
            try:
                parts.append(f"{node}: {self._state(node)}")
            except Exception as exc:
                parts.append(f"{node}: {exc}")
        return "; ".join(parts)

    def _wait_synced(self, nodes: Sequence[Node], timeout: float = SETTLE) -> None:
        def synced() -> bool:
            if not all(self._synced(node, len(nodes)) for node in nodes):
                return False
            # Every write committed in the cluster is applied on each node.
            committed = {self._state(node).get("wsrep_last_committed") for node in nodes}
            return len(committed) == 1

        _poll(synced, timeout, lambda: "nodes synced: " + self._describe_all(nodes))

    def wait_synced(self, timeout: float = SETTLE) -> None:
        """Wait until every running node is synced in one primary component of them all,
        each having applied every write committed."""
        self._wait_synced(self.up_nodes(), timeout)

    def settle(self) -> None:
        self.wait_synced()

    def wait_evicted(self, node: Node, timeout: float = SETTLE) -> None:
        """Wait until the other running nodes form a primary component without ``node``
        (killed or stopped): the cluster takes writes again."""
        others = [n for n in self.up_nodes() if n is not node]

        def evicted() -> bool:
            return all(self._synced(other, len(others)) for other in others)

        _poll(evicted, timeout, lambda: f"{node} evicted: " + self._describe_all(others))

    # -------------------------------------------------------------- what tests do

    def start(self, node: Node) -> None:
        """Start a node again: it rejoins (a state transfer) and is synced on return."""
        with self._lock:
            node.server.start(timeout=START_TIMEOUT)
            self.wait_synced()

    def cont(self, node: Node) -> None:
        """SIGCONT, and wait until the node has rejoined and is synced. Right after
        SIGCONT a node evicted while it was stopped still reports what it was before
        (synced, in a primary component of the old size) until it notices; it is back
        only once every node counts it again and it has applied what they committed."""
        with self._lock:
            node.server.thaw()
            self.wait_synced()

    thaw = cont

    # --------------------------------------------------------------------- heal

    def heal(self) -> None:
        with self._lock:
            try:
                for node in self.nodes:
                    if node.frozen:
                        node.server.thaw()
                down = [node for node in self.nodes if not node.running]
                if len(down) == len(self.nodes):
                    raise TopologyError("every node is down")
                if down:
                    # Those running may need a moment (a thawed node rejoining) to form a
                    # primary component for the others to join.
                    running = [n for n in self.nodes if n.running]
                    self._wait_synced(running, RECOVER)
                    for node in down:
                        self.repairs += 1
                        node.server.start(timeout=START_TIMEOUT)
                        self.wait_synced()
                    return
                try:
                    self._wait_synced(self.nodes, RECOVER)
                except TopologyError as exc:
                    # A node that does not come back by itself starts again (and rejoins).
                    laggards = [n for n in self.nodes if not self._safe_synced(n)]
                    if not laggards or len(laggards) == len(self.nodes):
                        raise
                    logger.warning("galera: restarting %s (%s)", laggards, exc)
                    self.repairs += 1
                    for node in laggards:
                        node.server.kill()
                    for node in laggards:
                        node.server.start(timeout=START_TIMEOUT)
                        self.wait_synced()
            except Exception as exc:
                self._rebuild(exc)

    def _safe_synced(self, node: Node) -> bool:
        try:
            return self._synced(node, len(self.nodes))
        except Exception:
            return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
