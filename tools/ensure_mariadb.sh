#!/usr/bin/env bash
# Makes sure the MariaDB server the live tests use answers on 127.0.0.1:3306, starting it
# (or installing it) when needed. Fails loudly if it cannot.
set -euo pipefail
ping() { mariadb-admin --protocol=tcp -h127.0.0.1 -P3306 -uroot ping >/dev/null 2>&1; }
ping && exit 0
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "MariaDB is not installed; installing mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq mariadb-server mariadb-client >/dev/null
fi
echo "starting MariaDB"
mkdir -p /run/mysqld && chown mysql /run/mysqld
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 1 60); do
  ping && { echo "MariaDB is up"; exit 0; }
  sleep 0.5
done
echo "ERROR: MariaDB did not come up on 127.0.0.1:3306 within 30 s" >&2
exit 1
