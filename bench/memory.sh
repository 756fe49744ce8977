#!/usr/bin/env bash
# Memory of a big deployment: a ~51 MB manifest of 20,000 changes (each
# "SELECT n" with a 2.5 KB comment), read by deploy.plan and run by
# deploy.apply in one backend each; prints the backend's peak RSS (VmHWM) and
# the time. Assumes the extension is installed (scripts/setup.sh).
# The manifest is read server-side (pg_read_file(...)::jsonb): a 51 MB psql
# variable does not fit on a command line. PostgreSQL's own parse of that
# jsonb text is part of the peak, as it is for a client sending $1::jsonb.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5485}
N=${N:-20000}
TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_memory.XXXXXX")
chmod 755 "$TMP"
trap 'bash "$ROOT/scripts/cluster.sh" stop "$TMP" || true; rm -rf "$TMP"' EXIT
bash scripts/cluster.sh start "$TMP" "$PORT"
eval "$(bash scripts/cluster.sh env "$TMP")"
export PGOPTIONS='-c client_min_messages=warning'

python3 - "$N" >"$TMP/big.json" <<'PY'
import json, sys
pad = "-- " + "x" * 2500
n = int(sys.argv[1])
print(json.dumps({"project": "big", "version": "1.0.0",
                  "changes": [{"id": f"c{i:05d}", "sql": f"SELECT {i}; {pad}"} for i in range(n)]}))
PY
chmod 644 "$TMP/big.json"
echo "manifest: $(( $(stat -c %s "$TMP/big.json") / 1000000 )) MB, $N changes"

# measure FN: run deploy.FN on the manifest in its own backend, sampling its VmHWM.
measure() {
  local fn=$1 client pid="" peak=0 v
  createdb "m_$fn"; psql -X -q -d "m_$fn" -c "CREATE EXTENSION pg_deploy"
  PGAPPNAME=memory_bench psql -X -q -At -d "m_$fn" >"$TMP/$fn.out" 2>&1 <<SQL &
SELECT pg_sleep(0.5);
\timing on
SELECT length(deploy.$fn(pg_read_file('$TMP/big.json')::jsonb)::text);
\timing off
SELECT pg_sleep(0.5);
SQL
  client=$!
  for _ in $(seq 100); do
    pid=$(psql -X -At -d "m_$fn" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'memory_bench'")
    [ -n "$pid" ] && break; sleep 0.05
  done
  while kill -0 "$client" 2>/dev/null; do
    v=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    if [ -n "$v" ] && [ "$v" -gt "$peak" ]; then peak=$v; fi
    sleep 0.1
  done
  wait "$client"
  echo "deploy.$fn: peak backend RSS $((peak / 1024)) MB, $(grep -m1 '^Time' "$TMP/$fn.out")"
}

measure plan
measure apply
psql -X -At -d m_apply -c "SELECT 'stored: deploy.manifests ' || pg_size_pretty(pg_total_relation_size('deploy.manifests'))
                                  || ', deploy.change_sql ' || pg_size_pretty(pg_total_relation_size('deploy.change_sql'))"
