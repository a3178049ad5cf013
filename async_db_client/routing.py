"""Several servers behind one tier: which server takes which call.

A MySQL/MariaDB tier configured with ``hosts`` (see
:class:`~async_db_client.config.MySQLConfig`), or a PostgreSQL tier with two or more
``hosts`` (:class:`~async_db_client.config.PostgreSQLConfig`: ``replication`` mode only,
a primary and its streaming-replication standbys), has one pool per server, shared
through the client's pool manager, and a :class:`Topology` that the executor asks where
each call goes. What differs between the engines (how a server says what it is, how a
write's position is taken and waited for) is a :class:`ReplicationProbe`:
:class:`MariaDBReplication` or :class:`PostgreSQLReplication`. What it guarantees:

* **Roles are discovered, not trusted.** Before the first call, every few seconds
  (``REFRESH_INTERVAL``, in the background, started by the calls themselves) and at
  once after an error, each server is asked what it is: ``@@read_only`` and its replica
  status (lag, SQL thread) in ``replication`` mode (PostgreSQL: ``pg_is_in_recovery()``,
  ``transaction_read_only``, the WAL receiver and the replay lag), ``wsrep_local_state``,
  ``wsrep_ready`` and ``wsrep_cluster_status`` in ``galera`` mode, whether it answers
  in ``sequential`` mode. Each probe is bounded by ``PROBE_TIMEOUT``.
* **Writes go only where they can run.** Writes, transactions, migrations and the
  outbox go to the primary (the writable server; the current one is kept while it stays
  writable, so a restarted old primary that comes back writable does not take the writes
  back), to one synced Galera node (one at a time: writing through several only adds
  certification conflicts), or to the current server (``sequential``, moving on in order
  when it fails). A server that refuses a statement for its role (read-only, 1290 or
  PostgreSQL's 25006; not in the primary component, 1047:
  :class:`~async_db_client.errors.ServerRoleError`) is
  examined again at once and gets no more writes until it says it is writable; nothing
  ran there, so the call runs again where it can.
* **Bounded waits.** A call that finds no server for it rediscovers with backoff for at
  most ``connect_retry_budget``, then raises
  :class:`~async_db_client.errors.NoServerError` saying what each server is.
* **Reads are spread.** Reads outside a transaction go round-robin over the replicas
  whose SQL thread runs and whose lag is at most ``max_replication_lag`` (replication),
  or over every synced node (galera); with none fit, to the primary. A PostgreSQL
  standby's lag is 0 when it has replayed all the WAL it received (given
  ``PG_CATCH_UP`` to finish: so an idle standby of an idle primary is current, however
  old its last replayed transaction), else the age
  of the last transaction it replayed (``now() - pg_last_xact_replay_timestamp()``, on
  the primary's clock as read on the standby's); a standby without a WAL receiver (its
  primary gone) reads only while no primary answers. A read whose server
  fails (lost connection, refused connect, busy for ``REPLICA_ACQUIRE_TIMEOUT``) runs
  again on another: reads change nothing.
* **read_your_writes** (the default): after this client writes, its reads see the
  write. Replication (MariaDB): the write's GTID (``@@last_gtid`` of the writing session)
  is remembered, and a replica read first waits for it (``MASTER_GTID_WAIT``, at most
  ``GTID_WAIT_TIMEOUT``), going to the primary if it times out; a replica known to have
  applied it is read at once. Galera: every connection asks for causal reads
  (``wsrep_sync_wait = 1``). MySQL (no ``@@last_gtid``): reads after a write go to the
  primary. PostgreSQL: the write's WAL position (``pg_current_wal_insert_lsn()`` in the
  writing session after the commit: at or past the end of the commit record) is
  remembered, and a standby read first polls ``pg_last_wal_replay_lsn()`` until it
  reaches it (PostgreSQL 15 has no server-side wait; at most ``GTID_WAIT_TIMEOUT``),
  going to the primary if it does not; a standby known to have replayed it is read at
  once. ``eventual`` skips all this.
* **A failing server is deny-listed**: a refused or lost connection keeps it out of
  routing until a probe (in the background, with backoff) finds it answering again.

What this does not do: promote a replica (the operator's or an orchestrator's job, e.g.
``pg_promote()``; the new primary is found within a refresh, or at once when the old
one refuses a write), or make asynchronous replication synchronous (see the README's
"What survives what": with PostgreSQL's asynchronous replication the commits the
standby had not received when the primary died are lost on promotion; with
``synchronous_standby_names`` and ``synchronous_commit = on`` an acknowledged commit is
on a standby's disk).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .config import MySQLConfig, PostgreSQLConfig
from .drivers.base import Driver
from .errors import (
    AsyncDBClientError,
    DBConnectionError,
    NoServerError,
    PoolTimeout,
    QueryError,
    QueryTimeoutError,
    ServerRoleError,
)
from .executor import Session
from .pool import ConnectionPool
from .retry import Backoff

__all__ = [
    "Host",
    "MariaDBReplication",
    "PostgreSQLReplication",
    "ReplicationProbe",
    "RoutingCounters",
    "Topology",
    "WritePositions",
]

logger = logging.getLogger("async_db_client.routing")

#: How old the view of the servers may get before a call starts a new discovery.
REFRESH_INTERVAL = 3.0
#: The longest one server's probe may take (connect included).
PROBE_TIMEOUT = 2.0
#: How long a read waits for a replica's connection before trying another server.
REPLICA_ACQUIRE_TIMEOUT = 1.0
#: How long a replica read waits for this client's last write to arrive there.
GTID_WAIT_TIMEOUT = 1.0
#: How long a server that failed stays out of routing, at most, between probes.
DENY_BACKOFF = Backoff(0.5, 10.0)

PoolSource = Callable[[], ConnectionPool[Any]]


@dataclass
class RoutingCounters:
    """What a router counted since the client opened (``DBInstance.topology()``)."""

    #: Reads sent to a replica (replication) or to any synced node (galera).
    reads_spread: int = 0
    #: Reads sent to the writer: none fit elsewhere, or read_your_writes without GTIDs.
    reads_on_writer: int = 0
    #: Replica reads that first waited for this client's writes (MASTER_GTID_WAIT;
    #: PostgreSQL: the write's WAL LSN, polled on the standby).
    gtid_waits: int = 0
    #: ... of which timed out, the read then going to the writer.
    gtid_wait_timeouts: int = 0
    #: Discoveries run (periodic, after errors, waiting for a writer).
    discoveries: int = 0
    #: Times the writer changed (failover, switchover, first discovery).
    writer_changes: int = 0


class WritePositions:
    """The GTIDs of a client's writes: the newest per replication domain (MariaDB GTIDs
    are ``domain-server-sequence``). Shared by the threads of the sync facade and the
    outbox's replayer, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._newest: dict[int, tuple[int, int]] = {}  # domain -> (sequence, server)

    def add(self, gtids: str) -> None:
        self.add_parsed(_parse_gtids(gtids))

    def add_parsed(self, positions: Iterable[tuple[int, int, int]]) -> None:
        """``(stream, server, sequence)`` triples: a MariaDB GTID's domain, server and
        sequence, or PostgreSQL's WAL (stream 0, server 0, the LSN as a number)."""
        with self._lock:
            for domain, server, sequence in positions:
                if sequence > self._newest.get(domain, (-1, 0))[0]:
                    self._newest[domain] = (sequence, server)

    def snapshot(self) -> dict[int, tuple[int, int]]:
        with self._lock:
            return dict(self._newest)


def _parse_gtids(text: str) -> Iterable[tuple[int, int, int]]:
    """``"0-1-42,1-2-7"`` as ``(domain, server, sequence)`` triples (bad parts skipped)."""
    for part in text.split(","):
        pieces = part.strip().split("-")
        if len(pieces) == 3 and all(p.isdigit() for p in pieces):
            yield int(pieces[0]), int(pieces[1]), int(pieces[2])


def _position(newest: dict[int, tuple[int, int]]) -> str:
    return ",".join(f"{d}-{server}-{seq}" for d, (seq, server) in sorted(newest.items()))


@dataclass(eq=False)
class Host:
    """One server of a tier: its pool, and what the last probe found."""

    address: str
    driver: Driver[Any]
    pool: PoolSource
    #: ``primary``/``writable`` (replication), ``replica``, ``read-only``, ``synced``/
    #: ``not synced`` (galera), ``current``/``standby`` (sequential), ``down``, ``unknown``.
    role: str = "unknown"
    #: Replica lag in seconds (None: not a replica, or unknown).
    lag: float | None = None
    #: May serve reads.
    readable: bool = False
    #: Said it can take writes (writable, synced, answering).
    writable: bool = False
    #: A replica that is up to date with what it received but cannot reach its primary:
    #: read only while no primary is reachable either.
    readable_without_primary: bool = False
    #: Why it serves nothing, or its last error.
    why: str | None = None
    #: Loop time until which it gets no calls (0: not deny-listed).
    denied_until: float = 0.0
    failures: int = 0
    #: The replica has applied at least these GTIDs (domain -> sequence; PostgreSQL:
    #: 0 -> the LSN it replayed).
    applied: dict[int, int] = field(default_factory=dict)

    def denied(self, now: float) -> bool:
        return now < self.denied_until

    def has_applied(self, newest: dict[int, tuple[int, int]]) -> bool:
        return all(self.applied.get(d, -1) >= seq for d, (seq, _) in newest.items())

    def note_applied(self, gtids: str) -> None:
        self.note_applied_parsed(_parse_gtids(gtids))

    def note_applied_parsed(self, positions: Iterable[tuple[int, int, int]]) -> None:
        for domain, _, sequence in positions:
            if sequence > self.applied.get(domain, -1):
                self.applied[domain] = sequence


class ReplicationProbe(Protocol):
    """What differs between engines in ``replication`` mode: how a server says what it
    is, and how a write's position is taken and waited for (the seam :class:`Topology`
    routes through; :class:`MariaDBReplication` and :class:`PostgreSQLReplication`)."""

    async def probe(
        self, host: Host, session: Session, max_lag: float, warn: Callable[[str], None]
    ) -> None:
        """Set ``host``'s role, lag, ``writable``, ``readable`` (and what it applied)."""
        ...

    def parse(self, position: str) -> Iterable[tuple[int, int, int]]:
        """A position as ``(stream, server, sequence)`` triples (see WritePositions)."""
        ...

    def format(self, newest: dict[int, tuple[int, int]]) -> str:
        """The newest positions as the text :meth:`wait` takes."""
        ...

    async def last_write(self, session: Session) -> str | None:
        """Where the write just committed on ``session`` ends (QueryError: no way to
        know on this server)."""
        ...

    async def wait(self, session: Session, position: str, wait: float) -> bool:
        """Whether the server of ``session`` applied ``position`` within ``wait`` s."""
        ...


class MariaDBReplication:
    """MySQL/MariaDB replication: ``@@read_only``, ``SHOW SLAVE STATUS``; positions are
    MariaDB GTIDs (``@@last_gtid``, ``MASTER_GTID_WAIT``); MySQL has no ``@@last_gtid``."""

    def parse(self, position: str) -> Iterable[tuple[int, int, int]]:
        return _parse_gtids(position)

    def format(self, newest: dict[int, tuple[int, int]]) -> str:
        return _position(newest)

    async def last_write(self, session: Session) -> str | None:
        row = await session.fetchone("SELECT @@last_gtid")
        return str(row[0]) if row is not None and row[0] else None

    async def wait(self, session: Session, position: str, wait: float) -> bool:
        row = await session.fetchone("SELECT MASTER_GTID_WAIT(?, ?)", (position, wait))
        return row is not None and row[0] == 0

    async def probe(
        self, host: Host, session: Session, max_lag: float, warn: Callable[[str], None]
    ) -> None:
        # SHOW, not SELECT: probes stay out of the servers' Com_select (what operators
        # and the tests count reads by).
        rows = await session.fetchall(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN "
            "('read_only', 'version', 'gtid_slave_pos')"
        )
        variables = {str(name).lower(): str(value) for name, value in rows}
        read_only = variables.get("read_only", "OFF").upper() in ("ON", "1")
        if "mariadb" in variables.get("version", "").lower():
            host.applied = {}
            host.note_applied(variables.get("gtid_slave_pos", ""))
        try:
            status_rows = await session.fetch_named("SHOW SLAVE STATUS")
        except QueryError as exc:
            status_rows = None
            warn(
                f"{host.address}: cannot read the replica status ({exc}); grant the user "
                "REPLICA MONITOR (MariaDB) or REPLICATION CLIENT (MySQL) so that "
                "replicas can serve reads"
            )
        host.writable = not read_only
        host.readable = False
        if not read_only:
            host.role = "writable"
            return
        if status_rows is None:
            host.role, host.why = "read-only", "replica status not visible to this user"
            return
        if not status_rows:
            host.role, host.why = "read-only", "read-only and not replicating"
            return
        status = status_rows[0]
        sql_running = status.get("Slave_SQL_Running") == "Yes"
        io_running = status.get("Slave_IO_Running") == "Yes"
        lag = status.get("Seconds_Behind_Master")
        host.role = "replica"
        host.lag = None if lag is None else float(lag)
        if not sql_running:
            host.why = "SQL thread stopped"
        elif host.lag is None:
            # Connecting to its primary: as current as it can be while the primary is
            # away, so it serves reads only if no primary answers either.
            host.readable_without_primary = not io_running
            host.why = "lag unknown (not connected to its primary)"
        elif host.lag > max_lag:
            host.why = f"lag {host.lag:g}s > max_replication_lag {max_lag:g}s"
        else:
            host.readable = True


def _lsn(text: str) -> int | None:
    """A PostgreSQL LSN (``16/B374D848``) as a number (None if it is not one)."""
    high, slash, low = text.partition("/")
    try:
        return (int(high, 16) << 32) | int(low, 16) if slash else None
    except ValueError:
        return None


#: The PostgreSQL role probe, one statement. Lag: 0 when the standby has replayed all
#: the WAL it received (an idle primary sends nothing, so an idle standby is current
#: however old its last replayed transaction is); otherwise the age of the last
#: transaction it replayed (``now() - pg_last_xact_replay_timestamp()``: how stale what
#: it shows is at most, on the primary's clock as the standby's clock reads it); NULL
#: (unknown) when it has no WAL receiver (not connected to a primary) or replayed no
#: transaction yet. ``pg_stat_wal_receiver`` shows its row (the pid at least) to any user.
PG_PROBE = (
    "SELECT pg_is_in_recovery(), current_setting('transaction_read_only'),"
    " pg_last_wal_replay_lsn()::text, pg_last_wal_receive_lsn()::text,"
    " EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE pid IS NOT NULL),"
    " CASE WHEN NOT pg_is_in_recovery() THEN NULL"
    " WHEN pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0.0"
    " ELSE extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8"
    " END"
)
#: A standby found behind what it received gets this long to replay it before the age of
#: its last replayed transaction counts as its lag: the WAL an idle primary still writes
#: (checkpoints, running-transactions records) is replayed in microseconds, and must not
#: make a standby whose last transaction is hours old look hours behind.
PG_CATCH_UP = 0.2
#: Polls of a standby waiting for a WAL position: the first soon, then at most this far
#: apart (PostgreSQL 15 has no server-side wait for an LSN).
PG_WAIT_POLL = (0.002, 0.05)


class PostgreSQLReplication:
    """PostgreSQL streaming replication: ``pg_is_in_recovery()``; positions are WAL LSNs
    (``pg_current_wal_insert_lsn()`` after the commit, in the writing session: at or past
    the end of its commit record, even with ``synchronous_commit = off``), waited for by
    polling ``pg_last_wal_replay_lsn()``. An insert position just past a page header is
    passed once any later WAL is replayed: at worst such a read waits its bound and runs
    on the primary, never on a standby that lacks the write."""

    def parse(self, position: str) -> Iterable[tuple[int, int, int]]:
        lsn = _lsn(position.strip())
        return [] if lsn is None else [(0, 0, lsn)]

    def format(self, newest: dict[int, tuple[int, int]]) -> str:
        lsn = newest.get(0, (0, 0))[0]
        return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"

    async def last_write(self, session: Session) -> str | None:
        row = await session.fetchone("SELECT pg_current_wal_insert_lsn()::text")
        return str(row[0]) if row is not None and row[0] else None

    async def wait(self, session: Session, position: str, wait: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        delay, longest = PG_WAIT_POLL
        while True:
            row = await session.fetchone(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= ?::text::pg_lsn, false)",
                (position,),
            )
            if row is not None and row[0]:
                return True
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, longest)

    async def probe(
        self, host: Host, session: Session, max_lag: float, warn: Callable[[str], None]
    ) -> None:
        row = await session.fetchone(PG_PROBE)
        assert row is not None
        in_recovery, read_only, replayed, received, receiving, lag = row
        if lag and received and await self.wait(session, str(received), PG_CATCH_UP):
            lag = 0.0  # it was replaying what it had just received
        host.readable = False
        host.writable = not in_recovery and str(read_only).lower() != "on"
        if not in_recovery:
            host.role = "writable" if host.writable else "read-only"
            if not host.writable:
                host.why = "not in recovery, but read-only (default_transaction_read_only)"
            return
        host.role = "standby"
        host.applied = {}
        if replayed:
            host.note_applied_parsed(self.parse(str(replayed)))
        host.lag = None if lag is None or not receiving else float(lag)
        if not receiving:
            # No WAL receiver: as current as it can be while its primary is away, so it
            # serves reads only if no primary answers either.
            host.readable_without_primary = True
            host.why = "lag unknown (not connected to its primary)"
        elif host.lag is None:
            host.why = "lag unknown (no transaction replayed yet)"
        elif host.lag > max_lag:
            host.why = f"lag {host.lag:g}s > max_replication_lag {max_lag:g}s"
        else:
            host.readable = True


class Topology:
    """The servers of one tier and where each call goes (see the module docstring)."""

    def __init__(
        self,
        config: MySQLConfig | PostgreSQLConfig,
        hosts: list[Host],
        *,
        positions: WritePositions,
        spawn: Callable[[Any], asyncio.Task[Any]],
    ) -> None:
        self.mode = config.ha_mode
        #: The engine's side of replication mode (role probe, write positions).
        self.engine: ReplicationProbe = (
            PostgreSQLReplication()
            if isinstance(config, PostgreSQLConfig)
            else MariaDBReplication()
        )
        self.read_your_writes = config.read_consistency == "read_your_writes"
        self.max_lag = config.max_replication_lag
        self.hosts = hosts
        self.positions = positions
        self._settings = config.pool
        self._spawn = spawn
        self._writer: Host | None = None
        self._next_reader = itertools.count()
        self._refreshing: asyncio.Task[None] | None = None
        self._checked_at: float | None = None  # loop time of the last discovery
        #: False once a server said it has no ``@@last_gtid`` (MySQL): then reads after
        #: a write go to the primary.
        self._gtids = True
        self._warned: set[str] = set()
        self.counters = RoutingCounters()

    def __repr__(self) -> str:
        roles = ", ".join(f"{h.address}={h.role}" for h in self.hosts)
        return f"<Topology {self.mode} {roles}>"

    # ------------------------------------------------------------------ routing

    @property
    def independent(self) -> bool:
        """Servers that do not replicate each other (``sequential``)."""
        return self.mode == "sequential"

    @property
    def current_pool(self) -> ConnectionPool[Any]:
        """The pool writes would use now (the first server's before any discovery)."""
        return (self._writer or self.hosts[0]).pool()

    async def writer(self) -> Host:
        """The server for a write (or a transaction): found, or NoServerError."""
        loop = asyncio.get_running_loop()
        self._tick(loop)
        host = self._writer
        if host is not None and not host.denied(loop.time()):
            return host
        return await self._wait_for(self._pick_writer, "writes")

    async def reader(self) -> tuple[Host, str | None]:
        """The server for a read outside a transaction, and the position (GTIDs, or a
        PostgreSQL LSN) it must wait for first (None: read at once)."""
        loop = asyncio.get_running_loop()
        self._tick(loop)
        if self.mode == "sequential" or self._checked_at is None:
            self.counters.reads_on_writer += 1
            return await self.writer(), None
        now = loop.time()
        writer = self._writer if self._writer is not None and not self._writer.denied(now) else None
        candidates = [
            h
            for h in self.hosts
            if not h.denied(now)
            and (h.readable or (writer is None and h.readable_without_primary))
            and (self.mode == "galera" or h is not writer)
        ]
        if not candidates:
            self.counters.reads_on_writer += 1
            return await self.writer(), None
        host = candidates[next(self._next_reader) % len(candidates)]
        if self.mode == "replication" and self.read_your_writes:
            newest = self.positions.snapshot()
            if newest and not host.has_applied(newest):
                if not self._gtids:
                    self.counters.reads_on_writer += 1
                    return await self.writer(), None
                self.counters.reads_spread += 1
                return host, self.engine.format(newest)
        self.counters.reads_spread += 1
        return host, None

    def acquire_timeout(self, host: Host, reading: bool) -> float | None:
        """How long a call waits for ``host``'s connection (None: the pool's setting)."""
        if reading and host is not self._writer:
            return min(REPLICA_ACQUIRE_TIMEOUT, self._settings.acquire_timeout)
        return None

    async def caught_up(self, session: Session, host: Host, position: str) -> bool:
        """Whether ``host`` applied ``position`` within GTID_WAIT_TIMEOUT (waiting on
        ``session``, the read's own connection)."""
        wait = GTID_WAIT_TIMEOUT
        if self._settings.query_timeout is not None:
            wait = min(wait, self._settings.query_timeout / 2)
        self.counters.gtid_waits += 1
        if await self.engine.wait(session, position, wait):
            host.note_applied_parsed(self.engine.parse(position))
            return True
        self.counters.gtid_wait_timeouts += 1
        logger.info(
            "%s: behind this client's writes after %gs: read on the primary", host.address, wait
        )
        return False

    async def wrote(self, session: Session) -> None:
        """After a write on ``session`` (committed): remember its GTID, for
        read_your_writes on replicas."""
        if self.mode != "replication" or not self.read_your_writes or not self._gtids:
            return
        try:
            position = await self.engine.last_write(session)
        except QueryError:  # MySQL: no @@last_gtid
            self._gtids = False
            return
        if position:
            self.positions.add_parsed(self.engine.parse(position))

    def failed(self, host: Host, exc: BaseException) -> None:
        """A call on ``host`` failed with ``exc``: keep it out of routing and find out
        what it is now, in the background."""
        if isinstance(exc, ServerRoleError):
            host.writable = host.readable = False
            host.role, host.why = "refused its role", str(exc)
            if self._writer is host:
                self._writer = None
        elif isinstance(exc, DBConnectionError) and not isinstance(exc, PoolTimeout):
            self._deny(host, str(exc))
        elif not isinstance(exc, QueryTimeoutError):
            return
        # A timeout may be a frozen server: look at once rather than at the next refresh.
        self._refresh_soon()

    def _deny(self, host: Host, why: str) -> None:
        loop = asyncio.get_running_loop()
        host.failures += 1
        host.denied_until = loop.time() + DENY_BACKOFF.delay(host.failures - 1)
        host.why = why

    # ---------------------------------------------------------------- discovery

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        checked = self._checked_at
        if checked is not None and loop.time() - checked >= REFRESH_INTERVAL:
            self._refresh_soon()

    def _refresh_soon(self) -> None:
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._refreshing = self._spawn(self._refresh())

    async def refresh(self) -> None:
        """Probe every server now (joining a discovery already running)."""
        task = self._refreshing
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = self._refreshing = self._spawn(self._refresh())
        # Shielded: a caller that gives up must not cancel the discovery others wait for.
        await asyncio.shield(task)

    async def _refresh(self) -> None:
        self.counters.discoveries += 1
        await asyncio.gather(*(self._probe_bounded(host) for host in self.hosts))
        self._checked_at = asyncio.get_running_loop().time()
        self._pick_writer()
        for host in self.hosts:
            pool = host.pool()
            pool.role = host.role
            pool.lag = host.lag

    async def _probe_bounded(self, host: Host) -> None:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                pool = host.pool()
                # One connect attempt: a server down must not hold the discovery up.
                async with pool.connection(timeout=PROBE_TIMEOUT, retry_connect=False) as conn:
                    await self._probe(host, Session(pool, conn, host.driver, None))
        except (TimeoutError, AsyncDBClientError) as exc:
            host.readable = host.writable = host.readable_without_primary = False
            host.lag = None
            if isinstance(exc, ServerRoleError):  # 1047 even for SHOW: out of the cluster
                host.role, host.why = "not synced", str(exc)
                return
            host.role = "down"
            if isinstance(exc, TimeoutError):
                self._deny(host, f"no answer within {PROBE_TIMEOUT:g}s")
            else:
                self._deny(host, str(exc))
            return
        host.failures = 0
        host.denied_until = 0.0

    async def _probe(self, host: Host, session: Session) -> None:
        host.readable_without_primary = False
        host.lag = None
        host.why = None
        if self.mode == "sequential":
            await session.ping()
            host.writable = host.readable = True
            host.role = "standby"
            return
        if self.mode == "galera":
            rows = await session.fetchall(
                "SHOW GLOBAL STATUS WHERE Variable_name IN "
                "('wsrep_local_state', 'wsrep_ready', 'wsrep_cluster_status')"
            )
            status = {str(name).lower(): str(value) for name, value in rows}
            synced = (
                status.get("wsrep_local_state") == "4"
                and status.get("wsrep_ready", "").upper() == "ON"
                and status.get("wsrep_cluster_status") == "Primary"
            )
            host.writable = host.readable = synced
            host.role = "synced" if synced else "not synced"
            if not synced:
                host.why = (
                    f"wsrep_local_state {status.get('wsrep_local_state', '?')}, "
                    f"wsrep_ready {status.get('wsrep_ready', '?')}, "
                    f"cluster {status.get('wsrep_cluster_status', '?')}"
                )
            return
        await self.engine.probe(host, session, self.max_lag, self._warn_once)

    def _pick_writer(self) -> Host | None:
        """Choose the server for writes from what the probes found (kept if still fit)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        fit = [h for h in self.hosts if h.writable and not h.denied(now)]
        current = self._writer
        if current is not None and current in fit:
            chosen: Host | None = current
        elif self.mode == "sequential" and current is not None and fit:
            # Move on in order from the server that failed, wrapping around.
            start = self.hosts.index(current)
            order = self.hosts[start + 1 :] + self.hosts[: start + 1]
            chosen = next(h for h in order if h in fit)
        else:
            chosen = fit[0] if fit else None
        if self.mode == "replication" and len(fit) > 1:
            self._warn_once(
                "several writable servers: "
                + ", ".join(h.address for h in fit)
                + f"; writing to {chosen.address if chosen else '?'} only (make the others "
                "read_only)"
            )
        if chosen is not current:
            self.counters.writer_changes += 1
            first = current is None and self.counters.writer_changes == 1
            (logger.info if first else logger.warning)(
                "%s: writes now go to %s (was %s)",
                self.mode,
                chosen.address if chosen else "no server",
                current.address if current else "none",
            )
        self._writer = chosen
        for h in self.hosts:
            if h.writable and h is not chosen and self.mode != "galera":
                h.role = "standby" if self.mode == "sequential" else "writable (unused)"
        if chosen is not None:
            chosen.role = {"replication": "primary", "galera": "synced", "sequential": "current"}[
                self.mode
            ]
        return chosen

    async def _wait_for(self, pick: Callable[[], Host | None], purpose: str) -> Host:
        loop = asyncio.get_running_loop()
        attempts = Backoff.from_settings(self._settings).attempts(
            deadline=loop.time() + self._settings.connect_retry_budget, clock=loop.time
        )
        while True:
            await self.refresh()
            host = pick()
            if host is not None:
                return host
            delay = attempts.next_delay()
            if delay is None:
                raise NoServerError(
                    f"no server can take {purpose} after "
                    f"{self._settings.connect_retry_budget:g}s (connect_retry_budget): "
                    + self.summary()
                )
            await asyncio.sleep(delay)

    def _warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            logger.warning("%s", message)

    # ---------------------------------------------------------------- reporting

    def summary(self) -> str:
        """Each server and what it is, in one line (for errors and logs)."""
        return "; ".join(
            f"{h.address} {h.role}" + (f" ({h.why})" if h.why else "") for h in self.hosts
        )

    def describe(self) -> dict[str, Any]:
        """The servers, their roles, lag, deny-listing and pools (``DBInstance.topology``)."""
        loop_time: float | None
        try:
            loop_time = asyncio.get_running_loop().time()
        except RuntimeError:
            loop_time = None
        hosts = []
        for h in self.hosts:
            serves = [
                kind for kind, yes in (("writes", h is self._writer), ("reads", h.readable)) if yes
            ]
            denied = 0.0 if loop_time is None else max(0.0, h.denied_until - loop_time)
            hosts.append(
                {
                    "address": h.address,
                    "role": h.role,
                    "lag_s": h.lag,
                    "serves": serves,
                    "deny_listed_s": round(denied, 3),
                    "why": h.why,
                    "pool": h.pool().get_stats().as_dict(),
                }
            )
        return {
            "mode": self.mode,
            "read_consistency": "read_your_writes" if self.read_your_writes else "eventual",
            "max_replication_lag": self.max_lag,
            "writer": None if self._writer is None else self._writer.address,
            "hosts": hosts,
            "counters": dataclasses.asdict(self.counters),
        }

    async def health(self) -> dict[str, str | None]:
        """Each server's address, and why it serves nothing now (None: it serves)."""
        await self.refresh()
        return {
            h.address: None if (h.readable or h is self._writer) else (h.why or h.role)
            for h in self.hosts
        }

    def forget(self) -> None:
        """After ``fork()`` in the child: the discovery task belongs to the parent."""
        self._refreshing = None
