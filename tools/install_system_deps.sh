#!/usr/bin/env bash
# The explicit system step (`make system-deps`; .ci/run calls it): installs the Debian
# packages the drivers and the test suite need, if missing. Nothing else in this project
# changes the system: `make demo` and `make test` only write inside the checkout.
#   unixodbc unixodbc-dev  - the ODBC driver manager pyodbc links against (mssql extra)
#   odbc-mariadb           - MariaDB's ODBC driver, to test the ODBC path for real
#   mariadb-server/client  - the live database the MySQL tests use
#   libgssapi-krb5-2 ...   - libraries Microsoft's ODBC driver (installed into the venv
#                            by `make test`) links against
#   openssl                - the TLS tests make their certificates with it
#   galera-4 rsync         - the Galera cluster the multi-server tests start (rsync: its
#   iproute2                 state transfer, whose script finds its rsync daemon's port
#                            with ss)
#   redis-server           - the cache tests start private Redis servers
#   postgresql-15 ...      - the live PostgreSQL the postgresql tests use (and initdb /
#                            pg_ctl for private servers); pgbouncer for the transaction
#                            pooling test
# Without root, prints the apt-get command instead and carries on.
set -euo pipefail
packages=(unixodbc unixodbc-dev odbc-mariadb mariadb-server mariadb-client openssl galera-4 rsync
          iproute2
          redis-server postgresql-15 postgresql-client-15 pgbouncer
          libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
          libltdl7)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "warning: missing system packages: ${missing[*]}" >&2
    echo "         install them with: sudo apt-get install -y ${missing[*]}" >&2
    exit 0
  fi
  echo "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Earlier versions of this project registered Microsoft's driver in /etc/odbcinst.ini,
# pointing into a checkout's venv (which may be gone): remove that entry, only ours.
if [ "$(id -u)" -eq 0 ] && command -v odbcinst >/dev/null \
    && odbcinst -q -d -n "ODBC Driver 18 for SQL Server" 2>/dev/null \
       | grep -q "from PyPI mssql-python-odbc"; then
  echo "removing the stale 'ODBC Driver 18 for SQL Server' entry from the system odbcinst.ini"
  for _ in 1 2 3 4 5; do
    odbcinst -u -d -n "ODBC Driver 18 for SQL Server" >/dev/null 2>&1 || break
    odbcinst -q -d -n "ODBC Driver 18 for SQL Server" >/dev/null 2>&1 || break
  done
fi
