#!/usr/bin/env bash
# Makes sure the PostgreSQL 15 server the live tests use answers on 127.0.0.1:5432 as user
# postgres without a password (trust, as the tests expect), starting it (or installing
# and creating the cluster) when needed. Fails loudly if it cannot.
set -euo pipefail
VERSION=15
CLUSTER=main
answers() { psql -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; }
answers && exit 0
if [ ! -x "/usr/lib/postgresql/$VERSION/bin/postgres" ]; then
  echo "PostgreSQL $VERSION is not installed; installing postgresql-$VERSION"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "postgresql-$VERSION" postgresql-client-$VERSION >/dev/null
fi
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}' | grep -qx "$VERSION/$CLUSTER"; then
  echo "creating the PostgreSQL cluster $VERSION/$CLUSTER"
  pg_createcluster "$VERSION" "$CLUSTER" --port 5432 >/dev/null
fi
HBA="/etc/postgresql/$VERSION/$CLUSTER/pg_hba.conf"
if [ -f "$HBA" ] && ! grep -q "async_db_client tests" "$HBA"; then
  # The tests log in as postgres over TCP on the loopback without a password.
  echo "allowing trust logins on 127.0.0.1 for the tests in $HBA"
  { echo "# async_db_client tests: trust on the loopback (tools/ensure_postgres.sh)"
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
    cat "$HBA"; } > "$HBA.new"
  chown --reference="$HBA" "$HBA.new" && chmod --reference="$HBA" "$HBA.new"
  mv "$HBA.new" "$HBA"
  pg_ctlcluster "$VERSION" "$CLUSTER" reload >/dev/null 2>&1 || true
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" -v c="$CLUSTER" '$1==v && $2==c {print $4}' | grep -q online; then
  echo "starting PostgreSQL $VERSION/$CLUSTER"
  pg_ctlcluster "$VERSION" "$CLUSTER" start
fi
for _ in $(seq 1 60); do
  answers && { echo "PostgreSQL is up"; exit 0; }
  sleep 0.5
done
echo "ERROR: PostgreSQL $VERSION did not answer on 127.0.0.1:5432 as postgres within 30 s" >&2
pg_lsclusters >&2 || true
tail -n 20 "/var/log/postgresql/postgresql-$VERSION-$CLUSTER.log" >&2 2>/dev/null || true
exit 1
