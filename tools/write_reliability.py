"""Writes RELIABILITY.md from the descriptions below and the numbers of the last run.

``make reliability`` runs the fault and load tests with ``ADC_RELIABILITY_REPORT=1``
(they record into benchmarks/results/reliability.json) and then this script.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "reliability.json"
TARGET = ROOT / "RELIABILITY.md"

# (test, what it injects, what it proves, report key or None)
FAULTS = [
    (
        "tests/test_faults_live.py · drop",
        "a loopback TCP proxy closes every client connection three times in 0.1 s, in the "
        "middle of a 20,000-record bulk write from 8 tasks",
        "lost connections are retried on fresh ones; a call whose every attempt meets a "
        "dropped connection raises ConnectionLostError (documented), never anything else",
        "proxy: drop every connection, three times",
    ),
    (
        "tests/test_faults_live.py · stall",
        "the proxy forwards nothing for 8 s (open and new connections): the query "
        "timeout (5 s) + the client's grace (2 s) + 1 s",
        "statements in flight end with QueryTimeoutError after query_timeout + 2 s, "
        "new connections with DBConnectionError within the acquire timeout; no hang",
        "proxy: stall all traffic for 8 s",
    ),
    (
        "tests/test_faults_live.py · cut",
        "for 1 s the proxy cuts each server reply after 5 bytes and closes the connection",
        "a result lost half-way is a lost connection: retried, nothing half-applied",
        "proxy: cut connections mid-result for 1 s",
    ),
    (
        "tests/test_faults_live.py · unreachable",
        "the proxy drops every connection and refuses new ones for 6 s: the acquire "
        "timeout (5 s) + 1 s",
        "calls fail with DBConnectionError within the acquire timeout, then the pool "
        "reconnects by itself",
        "proxy: server unreachable for 6 s",
    ),
    (
        "tests/test_faults_live.py · kill -9",
        "a private mariadbd is killed with SIGKILL mid-write and started again 1 s later",
        "stale connections are discarded (generation bump), the pool reconnects with "
        "backoff, the write completes",
        "kill -9 of the server, restarted after 1 s",
    ),
    (
        "tests/test_restart_live.py",
        "kill -9 and restart of a private mariadbd between two 500-record writes",
        "calls during the outage fail within the acquire timeout, health_check says "
        "False, the next write after the restart succeeds, the pool refills to min_size",
        None,
    ),
    (
        "tests/test_outbox_live.py",
        "the server is killed, then 5,000 upserts (1,000 paths, 5 versions each) and 5 logs "
        "are written, then the server is started again",
        "with the outbox every call returns success at once; all writes arrive once, in "
        "order per path, with the time they were made; entries left at close are "
        "replayed by the next client",
        "outbox: server killed, 5,000 writes, server restarted",
    ),
    (
        "tests/test_outbox_live.py · poison and transient",
        "one queued record the server refuses for good (an integrity error) among 30; "
        "statements timing out behind `LOCK TABLES ... WRITE` with a 1 s query timeout",
        "the refused entry is tried `max_attempts` times, moved to the dead letters, logged "
        "at ERROR and counted while the other 29 arrive; timeouts are retried with backoff "
        "until the lock goes; `flush_outbox()` always returns; `aclose()` closes every pool "
        "and thread whatever a tier's close raises",
        None,
    ),
    (
        "tests/test_outbox_live.py · order and crash replay",
        "a bulk write, `set_target_hash` or a transaction made while older writes for the "
        "same paths wait in the outbox; a client that only reads opening a file a crash left",
        "order holds per path whatever method wrote it (they wait for the queue, at most "
        "`acquire_timeout`, else DBConnectionError); the file is replayed at open",
        None,
    ),
    (
        "tests/test_sync_facade_live.py",
        "a real SIGINT while the sync facade enters a transaction and while it commits "
        "(SQLite and MariaDB); fork() with MariaDB pools and an outbox open; 16 threads",
        "Ctrl-C leaves no transaction open and a commit either happened or raised; the "
        "child never touches the parent's sockets and the parent keeps working; each "
        "thread has its own loop and pools, `close()` closes them all",
        None,
    ),
    (
        "tests/test_connect_live.py",
        "a refused port, a listener that never answers, a short acquire timeout, tasks "
        "queued behind a failing connect, executor retries, the sync facade and the CLI",
        "one DBConnectionError naming the target, the reason and the limit, within "
        "`connect_retry_budget` (5 s; was 26-30 s), never one budget per retry or per "
        "queued task; closing never waits for a connect in flight",
        None,
    ),
    (
        "tests/test_differential.py",
        "the same random operations (1,500 steps x 6 seeds in the long run; the default run "
        "is shorter) on every backend, including transactions and bulk writes",
        "every backend answers exactly as the reference (the in-memory store): records, "
        "logs, dashboards, errors",
        None,
    ),
    (
        "tests/test_ha_live.py · eventual reads",
        "300 reads with `read_consistency: eventual` on a primary and two replicas",
        "at least 90% of the servers' `Com_select` lands on the replicas, both used (the "
        "router's own probes use SHOW, which Com_select does not count)",
        "replication: eventual reads on replicas",
    ),
    (
        "tests/test_ha_live.py · read_your_writes, both replicas stopped",
        "40 write-then-read pairs after the client saw both replicas fit, then both stop "
        "applying (their SQL threads stopped)",
        "every read returns the write just made: GTID waits that time out fall back to the "
        "primary",
        "replication: read_your_writes, 2 replica(s) stopped",
    ),
    (
        "tests/test_ha_live.py · lagging and dead replicas",
        "a replica's SQL thread stopped after the client saw it fit; a replica 60 s behind "
        "(MASTER_DELAY); a replica killed mid-reads and started again",
        "read_your_writes: 40 write-then-read pairs always return the write (0, 1 or 2 "
        "replicas stopped); a lagging or dead replica gets no read (Com_select unchanged), "
        "no read fails, the replica serves again once back",
        None,
    ),
    (
        "tests/test_ha_live.py · primary demoted",
        "the primary set read_only behind the client's back, then a replica promoted",
        "the refused write (1290) is not retried there: NoServerError within "
        "`connect_retry_budget` while none is writable, then the same call lands on the "
        "new primary; the old primary gets nothing, even once writable again",
        None,
    ),
    (
        "tests/test_ha_live.py · primary killed (async)",
        "SIGKILL of the primary during bulk writes from 4 tasks; the test promotes the "
        "replica that received the most",
        "writes resume on the new primary with the same client; every write acknowledged "
        "after the failover is there; acknowledged writes lost with the old primary are "
        "counted (asynchronous replication's promise, not the library's)",
        "replication: primary killed, replica promoted (async)",
    ),
    (
        "tests/test_ha_live.py · primary killed (semi-sync)",
        "the same, with semi-synchronous replication on (no fallback to asynchronous)",
        "nothing acknowledged is lost, nothing doubled",
        "replication: primary killed, replica promoted (semi-sync)",
    ),
    (
        "tests/test_ha_live.py · Galera node killed",
        "SIGKILL of the Galera node taking the writes, during a bulk write from 4 tasks; "
        "then it restarts and rejoins (state transfer)",
        "every acknowledged write is on the surviving nodes and, after the rejoin, on it; "
        "writes move to another node; calls within their bound",
        "galera: writer node SIGKILLed during a bulk write, then rejoining",
    ),
    (
        "tests/test_ha_live.py · Galera node frozen",
        "SIGSTOP of the writing node during the bulk write (the cluster evicts it), then "
        "SIGCONT",
        "statements in flight end with QueryTimeoutError (documented); nothing acknowledged "
        "lost; the node rejoins and serves reads again",
        "galera: writer node SIGSTOPped during a bulk write, then rejoining",
    ),
    (
        "tests/test_postgres_replication_live.py · eventual reads",
        "a PostgreSQL primary and two pg_basebackup standbys; 40 reads with "
        "read_consistency eventual",
        "every read lands on a standby (the router's counter, and each standby's own "
        "pg_stat_user_tables scans of the table)",
        "postgresql: eventual reads on standbys",
    ),
    (
        "tests/test_postgres_replication_live.py · read_your_writes, replay paused",
        "200 write-then-read pairs on a primary and two standbys, then 5 more with WAL "
        "replay paused on both (pg_wal_replay_pause)",
        "every read returns the write just made: standby reads wait for the write's LSN, "
        "and while replay is paused each bounded wait times out and the read runs on the "
        "primary",
        "postgresql: read_your_writes, replay paused",
    ),
    (
        "tests/test_postgres_replication_live.py · read-only primary",
        "the primary set default_transaction_read_only behind the client's back (periodic "
        "discovery off), the standby promoted",
        "the refused write (25006) triggers a discovery and lands on the new primary, "
        "nothing on the old one",
        None,
    ),
    (
        "tests/test_postgres_replication_live.py · primary killed (synchronous)",
        "SIGKILL of the PostgreSQL primary (synchronous_standby_names '*') during writes, "
        "then pg_promote() on the standby",
        "writes resume on the promoted standby with the same client; nothing acknowledged "
        "lost, nothing doubled",
        "postgresql: primary killed, standby promoted (synchronous)",
    ),
    (
        "tests/contract on mysql-replication, mysql-galera and postgresql-replication",
        "the whole contract suite on a primary with two replicas (listed replica first), "
        "on a 3-node Galera cluster and on a PostgreSQL primary with two standbys (listed "
        "standby first)",
        "every contract holds unchanged: read_your_writes makes several servers answer "
        "like one",
        None,
    ),
    (
        "tests/test_postgres_faults_live.py · kill -9",
        "a private postgres killed with SIGKILL (its backends too) mid-bulk from 8 tasks, "
        "started again 1 s later",
        "lost connections are discarded and retried, nothing reported stored is lost, "
        "nothing doubled or half-rotated",
        "kill -9 of PostgreSQL, restarted after 1 s",
    ),
    (
        "tests/test_postgres_faults_live.py · drop",
        "the loopback proxy in front of the local PostgreSQL drops every connection "
        "during a bulk write",
        "the same audit as on MariaDB; no connection left idle in transaction "
        "(pg_stat_activity)",
        "PostgreSQL proxy: drop every connection",
    ),
    (
        "tests/test_postgres_faults_live.py · stall",
        "the proxy forwards nothing for 8 s: query timeout (5 s) + grace (2 s) + 1 s",
        "statements in flight end with QueryTimeoutError, nothing half-applied",
        "PostgreSQL proxy: stall all traffic for 8 s",
    ),
    (
        "tests/test_postgres_faults_live.py · unreachable",
        "the proxy refuses every connection for 6 s: acquire timeout (5 s) + 1 s",
        "calls fail with DBConnectionError within the acquire timeout, then recover",
        "PostgreSQL proxy: server unreachable for 6 s",
    ),
    (
        "tests/test_load_live.py · 1,000 tasks",
        "1,000 concurrent tasks (2,000 operations) on a pool of 10",
        "no deadlock; pool statistics consistent; SHOW PROCESSLIST shows exactly the "
        "pool's connections (none leaked)",
        "load: 1,000 tasks on a pool of 10",
    ),
    (
        "tests/test_load_live.py · bounded waits",
        "50 tasks of 1 s statements on a pool of 2 with a 2 s acquire timeout (25 s of "
        "queue)",
        "waiting tasks get PoolTimeout at the deadline (+ at most 10 s for a loaded "
        "machine), not when the queue drains; stats count every timeout",
        None,
    ),
    (
        "tests/test_load_live.py · cancellation storm",
        "600 tasks (two-write transactions with awaits inside, reads, bulk writes), each "
        "cancelled at a seeded point of the storm's own progress (after its n-th finished "
        "statement, or never), plus 10 transactions cancelled between their writes and 4 "
        "writes cancelled while the server runs them (held on a row lock)",
        "no connection left checked out, no transaction open on the server, no "
        "transaction half-written; every connection cancelled mid-use is discarded",
        "cancellation storm: 600 tasks cancelled at seeded points of its progress",
    ),
    (
        "tests/test_load_live.py · 16 threads",
        "the sync facade used from 16 threads at once (1,600 operations)",
        "a loop and a pool per calling thread (pool_stats() sums them), every call "
        "answered, nothing lost",
        "sync facade from 16 threads",
    ),
    (
        "tests/test_pool_live.py",
        "cancellation mid-query, a connection killed by the server while idle and while "
        "in use, statements over the query timeout, connections returned inside a "
        "transaction, a full pool, use from a second event loop",
        "each is handled as documented (see the test names); counted in pool statistics",
        None,
    ),
    (
        "tests/test_odbc_live.py, tests/test_mssql_driver.py",
        "the same faults on the ODBC path: killed connections, cancelled statements "
        "(ATTENTION on the wire), driver-side query timeouts, deadlock victims",
        "the ODBC pool behaves like the aiomysql one; its threads stop on close",
        None,
    ),
]

SECURITY = [
    (
        "tests/test_hostile_input.py · payloads",
        "117 classic payloads (SQL injection, stacked queries, `%s`/`?`, backslashes, NUL, "
        "Unicode quotes, U+202E, lone surrogates, JSON breakers, trailing spaces, sizes "
        "either side of every limit) into each of 36 string parameters of the three tiers, "
        "on memory and on MariaDB",
        "each call works with an exact read-back, or is refused the documented way "
        "(InvalidInputError, or False/None) exactly when the rules say so; sentinel rows, "
        "tables and row counts unharmed",
    ),
    (
        "tests/test_hostile_input.py · generated",
        "hypothesis: Unicode strings (surrogates, controls, bidi, repeats up to 20,000 "
        "characters) in all 36 parameters; random records and log entries; hostile child "
        "names for the integrity queries",
        "the same, plus: orphan and untracked-children queries on MariaDB agree with "
        "Python's answer",
    ),
    (
        "tests/test_hostile_input.py · sizes",
        "lists of 100,000 names (quotes, backslashes, emoji); exactly 4 MiB of escape-heavy "
        "names and one byte more; 25 MB of names; 70,000-character ids; 1 M-character "
        "details",
        "stored and read back intact through single, bulk, restore and export up to the "
        "limits; refused by validation (not by the database) beyond them",
    ),
    (
        "tests/test_config_fuzz.py",
        "hypothesis: wrong values at 81 key paths, unknown keys, each of 17 required keys "
        "missing, wrong tier types, several mutations at once, garbage sections, inf/NaN "
        "durations",
        "always ConfigurationError naming the key as the config spells it (through "
        "parse_config, the async and the sync factory), never a password, no pydantic "
        "error kept behind it",
    ),
    (
        "tests/test_tls_live.py",
        "certificates made with openssl; a private mariadbd with "
        "--require-secure-transport=ON",
        "a verifying client connects (TLSv1.x); a wrong CA and a wrong host name are refused "
        "at once, not retried; plaintext is refused; a TLS-configured client never falls "
        "back to plaintext",
    ),
    (
        "tests/test_secrets.py",
        "a known password through bad configs, refused and failed logins (aiomysql and "
        "ODBC), query/integrity/timeout/pool errors, the sync facade, reprs and stats",
        "the password is in no log record (DEBUG, every logger) and in no exception text, "
        "chained causes included",
    ),
    (
        "tests/test_least_privilege_live.py + contract on mysql-least-privilege",
        "a runtime user with only SELECT/INSERT/UPDATE/DELETE on the library's tables "
        "(root migrated first); 8 DDL/admin statements tried",
        "the grants are exactly those, the 8 statements are denied, and the whole contract "
        "suite (125 tests) passes as that user, auto_migrate on",
    ),
]

COLUMNS = [
    ("records", "records"),
    ("writes", "writes"),
    ("operations", "operations"),
    ("tasks", "tasks"),
    ("reported_stored", "reported stored"),
    ("applied_without_report", "applied, reply lost"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("failed_calls", "failed calls"),
    ("acknowledged_before_failover", "acknowledged before the failover"),
    ("lost_before_failover", "lost with the old primary"),
    ("acknowledged_after_failover", "acknowledged after"),
    ("lost_after_failover", "lost after"),
    ("writes_resumed_after_promotion_s", "writes resumed after the promotion (s)"),
    ("eviction_s", "eviction (s)"),
    ("errors", "errors raised"),
    ("slowest_call_s", "slowest call (s)"),
    ("call_bound_s", "bound (s)"),
    ("recovery_s", "recovery (s)"),
    ("replay_s", "replay (s)"),
    ("retries", "retries"),
    ("connections_lost", "connections lost"),
    ("cancelled", "cancelled"),
    ("finished", "finished"),
    ("cancelled_in_transaction", "of them between a transaction's writes"),
    ("cancelled_mid_statement", "of them mid-statement"),
    ("connections_discarded", "connections discarded"),
    ("checked_out_after", "checked out after"),
    ("open_transactions_after", "open transactions after"),
    ("half_written_transactions", "half-written transactions"),
    ("leaked_connections", "leaked connections"),
    ("max_wait_s", "longest acquire wait (s)"),
    ("seconds", "seconds"),
    ("reads", "reads"),
    ("com_select", "Com_select by server"),
    ("standby_scans", "table scans by standby"),
    ("reads_spread", "reads on replicas"),
    ("reads_on_writer", "reads on the primary"),
    ("gtid_waits", "GTID waits"),
    ("gtid_wait_timeouts", "GTID waits timed out"),
    ("discoveries", "discoveries"),
]


def numbers(entry: dict[str, Any]) -> str:
    parts = []
    for key, label in COLUMNS:
        if key in entry:
            value = entry[key]
            if isinstance(value, list):
                value = ", ".join(value) or "none"
            elif isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            parts.append(f"{label}: {value}")
    return "; ".join(parts)


def main() -> None:
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    when = max((v.get("when", "") for v in results.values()), default="never")
    lines = [
        "# Reliability",
        "",
        "What the library is tested to survive, how, and the numbers of the last run "
        f"(`make reliability`, {when}; 2-core machine, MariaDB 10.11 and PostgreSQL 15 on "
        "loopback).",
        "",
        "All fault tests inject for real: a TCP proxy the tests own, `kill -9`, SIGSTOP "
        "and restarts of private `mariadbd`s (single servers, a primary with two GTID "
        "replicas, a 3-node Galera cluster) and of a private `postgres`, task "
        "cancellation, SIGINT. Only loopback "
        "addresses are used.",
        "",
        "## Faults and load",
        "",
        "| test | injects | proves | last run |",
        "|---|---|---|---|",
    ]
    for test, injects, proves, key in FAULTS:
        shown = numbers(results[key]) if key and key in results else "pass/fail only"
        lines.append(f"| {test} | {injects} | {proves} | {shown} |")
    lines += [
        "",
        "“Reported stored” counts records in calls that returned success; the audit then "
        "reads the table directly: each of those has the new hash with the old one "
        "rotated into `prev_hash`, every other record is either untouched or fully "
        "written (a reply lost after the commit), and no path appears twice.",
        "",
        "## Hostile input and security",
        "",
        "| test | injects | proves |",
        "|---|---|---|",
    ]
    for test, injects, proves in SECURITY:
        lines.append(f"| {test} | {injects} | {proves} |")
    lines += [
        "",
        "## What survives what",
        "",
        "| failure | one server | primary + replicas (async) | + semi-sync | Galera |",
        "|---|---|---|---|---|",
        "| connection lost, server restarted | idempotent work retried; the outbox keeps "
        "single writes | same, on the primary | same | same, on a synced node |",
        "| a replica dies or lags | - | reads move to the others; none lost | same | - |",
        "| the primary dies | calls fail (outbox: queued) | writes acknowledged but not yet "
        "shipped are lost with it; the promoted replica takes writes, same client | "
        "nothing acknowledged lost | a node dies: nothing acknowledged lost, writes "
        "move on |",
        "| the primary turns read-only | - | never written again; NoServerError until one "
        "is writable | same | a node leaves the primary component (1047): same |",
        "",
        "The library never acknowledges a write its server did not commit, and never "
        "writes to a server that is not (or no longer) the writable one; what a committed "
        "write survives is the servers' replication promise.",
        "",
        "## Bounds",
        "",
        "A call's worst case follows from its pool settings: each of `retry_attempts + 1` "
        "attempts may wait `acquire_timeout`, the statement `query_timeout` (+ 2 s client "
        "grace; MariaDB enforces the timeout itself first) and a backoff of at most "
        "`reconnect_backoff_max`. Only idempotent work is retried: upserts (repeating "
        "one changes nothing), logs (a client key), reads and deletes. With several "
        "servers, each attempt may also wait `connect_retry_budget` for a server to take "
        "the call and one discovery (2 s); a call that never reached its server, or that "
        "a server refused for its role, runs again elsewhere whatever it is.",
        "",
    ]
    TARGET.write_text("\n".join(lines))
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(results)} measured entries)")


if __name__ == "__main__":
    main()
