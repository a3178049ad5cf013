#!/usr/bin/env bash
# Install Microsoft "ODBC Driver 18 for SQL Server" for tests, from the PyPI wheel
# mssql-python-odbc, into a virtualenv, and register it with unixODBC.
#
#   tools/install_msodbc.sh [VENV]        (default: /work/main/.venv)
#
# The driver's licence allows installing and using it to develop and test. Its files
# stay inside the venv's site-packages; never copy them into this repository.
# Idempotent and fast when everything is already in place. Needs root for apt-get and
# for writing the system odbcinst.ini (Debian 12: /etc/odbcinst.ini).
set -euo pipefail

VENV="${1:-/work/main/.venv}"
DRIVER_NAME="ODBC Driver 18 for SQL Server"
PKG="mssql-python-odbc"
PKG_VERSION="${MSODBC_WHEEL_VERSION:-18.6.2.2}"

die() { echo "install_msodbc: ERROR: $*" >&2; exit 1; }
log() { echo "install_msodbc: $*"; }
trap 'echo "install_msodbc: ERROR: command failed at line $LINENO" >&2' ERR

[ "$(uname -s)" = Linux ] || die "only Linux is supported"
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is supported (got $(uname -m))"
PY="$VENV/bin/python"
[ -x "$PY" ] || die "no python at $PY (pass the venv directory as \$1)"

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "apt-get not found; install these packages by hand: $*"
    if [ "$(id -u)" != 0 ]; then die "need root to apt-get install: $*"; fi
    if [ "$APT_UPDATED" = 0 ]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
        || die "apt-get install $* failed"
}

# 1. unixODBC: driver manager (libodbc2) and the odbcinst tool.
if ! command -v odbcinst >/dev/null || ! dpkg-query -W -f='${Status}' libodbc2 2>/dev/null \
        | grep -q 'ok installed'; then
    apt_install unixodbc odbcinst libodbc2
fi
command -v odbcinst >/dev/null || die "odbcinst still missing after install"

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

# 3. Shared-library dependencies: install the Debian package of any that is missing.
declare -A SONAME_PKG=(
    [libgssapi_krb5.so.2]=libgssapi-krb5-2 [libkrb5.so.3]=libkrb5-3
    [libk5crypto.so.3]=libk5crypto3 [libkrb5support.so.0]=libkrb5support0
    [libcom_err.so.2]=libcom-err2 [libkeyutils.so.1]=libkeyutils1
    [libltdl.so.7]=libltdl7 [libodbcinst.so.2]=libodbcinst2 [libodbc.so.2]=libodbc2
    [libstdc++.so.6]=libstdc++6 [libgcc_s.so.1]=libgcc-s1 [libresolv.so.2]=libc6
)
missing_sonames() { ldd "$DRIVER_SO" 2>&1 | awk '/=> not found/ {print $1}' | sort -u; }
mapfile -t missing < <(missing_sonames)
if [ "${#missing[@]}" -gt 0 ]; then
    pkgs=()
    for so in "${missing[@]}"; do
        p="${SONAME_PKG[$so]:-}"
        [ -n "$p" ] || die "driver needs $so and no Debian package is known for it"
        pkgs+=("$p")
    done
    apt_install "${pkgs[@]}"
    mapfile -t missing < <(missing_sonames)
    [ "${#missing[@]}" -eq 0 ] || die "still missing after apt-get: ${missing[*]}"
fi

# 4. Register with unixODBC under the exact name (idempotent).
current="$(odbcinst -q -d -n "$DRIVER_NAME" 2>/dev/null | awk -F= '/^Driver=/ {print $2}' || true)"
if [ "$current" != "$DRIVER_SO" ]; then
    tmp="$(mktemp)"
    trap 'rm -f "$tmp"' EXIT
    {
        echo "[$DRIVER_NAME]"
        echo "Description=Microsoft ODBC Driver 18 for SQL Server (from PyPI $PKG)"
        echo "Driver=$DRIVER_SO"
        echo "UsageCount=1"
    } >"$tmp"
    if [ -n "$current" ]; then
        # Stale entry (other venv or driver version): remove it (each -u lowers UsageCount
        # by one) and register afresh, rather than stacking a second Driver= line.
        log "replacing driver entry (was $current)"
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            odbcinst -q -d -n "$DRIVER_NAME" >/dev/null 2>&1 || break
            odbcinst -u -d -n "$DRIVER_NAME" >/dev/null 2>&1 || break
        done
        if odbcinst -q -d -n "$DRIVER_NAME" >/dev/null 2>&1; then
            die "cannot remove the stale '$DRIVER_NAME' entry; edit $(odbcinst -j | awk -F': ' '/DRIVERS/ {print $2}')"
        fi
        odbcinst -i -d -f "$tmp" >/dev/null || die "odbcinst -i failed"
    else
        log "registering '$DRIVER_NAME' -> $DRIVER_SO"
        odbcinst -i -d -f "$tmp" >/dev/null || die "odbcinst -i failed"
    fi
fi
n="$(odbcinst -q -d | grep -cxF "[$DRIVER_NAME]" || true)"
[ "$n" = 1 ] || die "expected one '[$DRIVER_NAME]' entry in odbcinst, found $n"
got="$(odbcinst -q -d -n "$DRIVER_NAME" | awk -F= '/^Driver=/ {print $2}')"
[ "$got" = "$DRIVER_SO" ] || die "registered driver path is '$got', expected '$DRIVER_SO'"

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
