#!/usr/bin/env bash
# Installs the Debian packages the drivers and the test suite need, if missing:
#   unixodbc unixodbc-dev  - the ODBC driver manager pyodbc links against (mssql extra)
#   odbc-mariadb           - MariaDB's ODBC driver, to test the ODBC path for real
#   mariadb-server/client  - the live database the MySQL tests use
# Without root, prints the apt-get command instead and carries on.
set -euo pipefail
packages=(unixodbc unixodbc-dev odbc-mariadb mariadb-server mariadb-client openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "warning: missing system packages: ${missing[*]}" >&2
  echo "         install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
