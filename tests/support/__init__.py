"""What the tests use and are not tests themselves (test modules live in ``tests/``).

backends.py       the backends the contract suites run against (``BACKENDS``)
live.py           the live MariaDB: reachability, a database per session, configs, fixtures
mariadb_server.py a private, throwaway mariadbd that tests kill, restart or reconfigure
topologies.py     a primary with GTID replicas and a Galera cluster of those (HA tests)
fault_proxy.py    a loopback TCP proxy that drops, stalls, refuses or cuts connections
reliability.py    the fault tests' bulk write under fire, its audit, the RELIABILITY numbers
mssql_emulator.py a statement-level SQL Server stand-in behind the TDS peer
tsql_check.py     a strict T-SQL check on top of sqlglot's parser
tds_peer/         a recording fake SQL Server (MS-TDS) for the real ODBC driver; see its README
hostile/          payloads, strategies and oracles of tests/test_hostile_input.py
"""
