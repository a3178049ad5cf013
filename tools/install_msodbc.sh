#!/usr/bin/env bash
# Install Microsoft "ODBC Driver 18 for SQL Server" for the tests, from the PyPI wheel
# mssql-python-odbc, into a virtualenv, and register it -- with MariaDB's ODBC driver,
# which the tests use too -- in the venv's own odbcinst.ini:
#
#   tools/install_msodbc.sh VENV
#   ODBCSYSINI=VENV/etc pytest ...        (what `make test` does)
#
# Nothing outside the venv changes: unixODBC reads $ODBCSYSINI/odbcinst.ini instead of
# /etc/odbcinst.ini when the variable is set. System libraries the driver needs are
# installed by the explicit system step (`make system-deps`, tools/install_system_deps.sh);
# this script only says which are missing. The driver's licence allows installing and
# using it to develop and test. Its files stay inside the venv; never copy them into this
# repository. Idempotent and fast when everything is in place.
set -euo pipefail

VENV="$(cd "${1:?usage: install_msodbc.sh VENV}" && pwd)"
DRIVER_NAME="ODBC Driver 18 for SQL Server"
MARIADB_NAME="MariaDB Unicode"
PKG="mssql-python-odbc"
PKG_VERSION="${MSODBC_WHEEL_VERSION:-18.6.2.2}"
INI_DIR="$VENV/etc"

die() { echo "install_msodbc: ERROR: $*" >&2; exit 1; }
log() { echo "install_msodbc: $*"; }
trap 'echo "install_msodbc: ERROR: command failed at line $LINENO" >&2' ERR

[ "$(uname -s)" = Linux ] || die "only Linux is supported"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (got $(uname -m))"
PY="$VENV/bin/python"
[ -x "$PY" ] || die "no python at $PY (pass the venv directory as \$1)"

# 1. unixODBC must be there (pyodbc links against it): the system step installs it.
ldconfig -p | grep -q 'libodbc.so.2' \
    || die "unixODBC is not installed: run 'make system-deps' (apt-get install unixodbc)"

# 2. The wheel (skip pip entirely when the right version is already there).
libs_dir() {
    "$PY" -c 'import mssql_python_odbc as m; print(m.__version__, m.get_libs_dir())' 2>/dev/null
}
info="$(libs_dir || true)"
if [ "${info%% *}" != "$PKG_VERSION" ]; then
    log "pip install --no-deps $PKG==$PKG_VERSION into $VENV"
    "$PY" -m pip install -q --disable-pip-version-check --no-deps "$PKG==$PKG_VERSION" \
        || die "pip install $PKG==$PKG_VERSION failed"
    info="$(libs_dir)" || die "$PKG installed but cannot be imported"
fi
LIBS="${info#* }"
LIBDIR="$LIBS/linux/debian_ubuntu/x86_64/lib"
shopt -s nullglob
candidates=("$LIBDIR"/libmsodbcsql-18.*.so.*)
shopt -u nullglob
[ "${#candidates[@]}" -ge 1 ] || die "no libmsodbcsql-18.*.so.* under $LIBDIR"
DRIVER_SO="$(printf '%s\n' "${candidates[@]}" | sort -V | tail -n1)"
[ -f "$LIBDIR/../share/resources/en_US/msodbcsqlr18.rll" ] \
    || die "driver resource file msodbcsqlr18.rll missing next to $DRIVER_SO"

# 3. Shared-library dependencies: the system step installs them; say which are missing.
missing="$(ldd "$DRIVER_SO" 2>&1 | awk '/=> not found/ {print $1}' | sort -u | tr '\n' ' ')"
[ -z "$missing" ] || die "the driver needs $missing: run 'make system-deps'"

# 4. Register both drivers in the venv's odbcinst.ini (rewritten when it differs).
MARIADB_SO="$(ldconfig -p | awk '/libmaodbc.so / {print $NF; exit}')"
[ -n "$MARIADB_SO" ] || MARIADB_SO="$(find /usr/lib -name libmaodbc.so -print -quit 2>/dev/null)"
[ -n "$MARIADB_SO" ] || die "MariaDB's ODBC driver is not installed: run 'make system-deps'"
mkdir -p "$INI_DIR"
wanted="$(cat <<INI
[$DRIVER_NAME]
Description=Microsoft ODBC Driver 18 for SQL Server (from PyPI $PKG)
Driver=$DRIVER_SO
UsageCount=1

[$MARIADB_NAME]
Description=MariaDB Connector/ODBC (Unicode)
Driver=$MARIADB_SO
Threading=0
UsageCount=1
INI
)"
if [ "$(cat "$INI_DIR/odbcinst.ini" 2>/dev/null)" != "$wanted" ]; then
    log "registering '$DRIVER_NAME' and '$MARIADB_NAME' in $INI_DIR/odbcinst.ini"
    printf '%s\n' "$wanted" >"$INI_DIR/odbcinst.ini"
fi
touch "$INI_DIR/odbc.ini"
export ODBCSYSINI="$INI_DIR"

# 5. Smoke check: the driver manager loads the library. A connection string with an invalid
#    Encrypt value is rejected by the driver itself ("[Microsoft][ODBC Driver 18 ...]",
#    no network) when it loaded, and by the driver manager ("Can't open lib") when it did
#    not. Needs pyodbc in the venv.
if "$PY" -c 'import pyodbc' 2>/dev/null; then
    "$PY" - "$DRIVER_NAME" <<'PY' || die "the driver manager cannot load '$DRIVER_NAME'"
import sys

import pyodbc

name = sys.argv[1]
if name not in pyodbc.drivers():
    sys.exit(f"'{name}' is not listed by pyodbc.drivers()")
pyodbc.pooling = False
try:
    pyodbc.connect(f"DRIVER={{{name}}};SERVER=127.0.0.1,1;Encrypt=invalid-value", timeout=1)
except pyodbc.Error as exc:
    text = str(exc)
    if "Can't open lib" in text or "[Microsoft]" not in text:
        sys.exit(f"driver did not load: {text}")
PY
fi
log "OK: '$DRIVER_NAME' -> $DRIVER_SO"
