#!/usr/bin/env bash
# Demo: set up, start a throwaway cluster, deploy bookings v1 then v2, show history.
# PORT=5499 by default; KEEP=1 leaves the cluster running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PORT=${PORT:-5499}
KEEP=${KEEP:-0}

bash scripts/setup.sh

DIR=$(mktemp -d /tmp/pg_deploy_demo.XXXXXX)
echo "==> starting cluster in $DIR (port $PORT)"
bash scripts/cluster.sh start "$DIR" "$PORT"
eval "$(bash scripts/cluster.sh env "$DIR")"
if [ "$KEEP" != 1 ]; then
  trap 'bash "$ROOT/scripts/cluster.sh" stop "$DIR"; echo "==> cluster stopped; files kept in $DIR"' EXIT
fi

PSQL=(psql -X -v ON_ERROR_STOP=1 -d postgres)

echo "==> CREATE EXTENSION pg_deploy"
"${PSQL[@]}" -c "CREATE EXTENSION pg_deploy;"

# The manifest goes in as a psql variable (:'manifest' quotes it); -c would not interpolate.
apply() {
  echo "==> deploy.apply($1)"
  "${PSQL[@]}" -v manifest="$(cat "$1")" <<'SQL'
SELECT jsonb_pretty(deploy.apply(:'manifest'::jsonb)) AS report;
SQL
}
apply examples/bookings/v1.json
apply examples/bookings/v2.json

echo "==> deploy.status()"
"${PSQL[@]}" -c "SELECT * FROM deploy.status();"
echo "==> deployment log"
"${PSQL[@]}" -c "SELECT id, project, version, outcome, changes_applied, duration_ms FROM deploy.deployments ORDER BY id;"

if [ "$KEEP" = 1 ]; then
  echo "==> cluster left running: $DIR (stop with: bash scripts/cluster.sh stop $DIR)"
  echo "    connect with: psql -h $DIR/sock -p $PORT -U postgres"
fi
