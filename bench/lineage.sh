#!/usr/bin/env bash
# The cost of lineage (docs/lineage.md): deploy.apply with the event triggers
# recording every DDL command, against the same apply with them disabled
# (deploy.disable_lineage()), side by side in one run: alternating, each round
# on fresh databases, median server time of $ROUNDS rounds. Goal <= 1.05x.
#   bash bench/lineage.sh
# Corpora: documenso's Prisma history (packages/prisma/migrations, from the
# mirror under /work/.mirror that the search tool's fetch puts there; skipped
# with the reason when it is not there) and a synthetic deployment of $N
# changes (bench/ddl_changes.py: CREATE TABLE + CREATE INDEX each).
# Writes bench/lineage-results.md. Assumes the extension is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5476}
ROUNDS=${ROUNDS:-5}
N=${N:-10000}
N_ROUNDS=${N_ROUNDS:-3}
MIRRORS=${MIRRORS:-/work/.mirror}
TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_lineage.XXXXXX")
chmod 755 "$TMP"
trap 'bash "$ROOT/scripts/cluster.sh" stop "$TMP" >/dev/null 2>&1 || true; rm -rf "$TMP"' EXIT

cargo build -q --release -p pg-deploy-cli
CLI=${CARGO_TARGET_DIR:-$ROOT/target}/release/pg-deploy

bash scripts/cluster.sh start "$TMP" "$PORT" >/dev/null
eval "$(bash scripts/cluster.sh env "$TMP")"
# One transaction of the synthetic deployment locks ~5 relations a change (table, TOAST, indexes).
psql -X -q -d postgres -c "ALTER SYSTEM SET max_locks_per_transaction = $(( 6 * N / 100 + 256 ))"
bash scripts/cluster.sh restart "$TMP" >/dev/null
export PGOPTIONS='-c client_min_messages=warning'
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# apply_ms DB MANIFEST: "wall cpu" of one deploy.apply: psql's \timing (server
# round trip) and the backend's own CPU time (/proc/PID/schedstat), which
# does not count the time it waited for a core behind other processes.
apply_ms() {
  psql -X -q -d postgres -c CHECKPOINT
  psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" <<SQL | awk '/^Time: / {t = $2} /^cpu\|/ {split($0, c, "|")} END {printf "%.1f %.1f", t, c[2]}'
SELECT pg_read_file('$2') AS m \gset
SELECT (string_to_array(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' '))[1]::bigint AS cpu0 \gset
\timing on
SELECT deploy.apply(:'m'::jsonb) IS NOT NULL;
\timing off
SELECT 'cpu', round(((string_to_array(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' '))[1]::bigint - :cpu0) / 1e6, 1);
SQL
}

# measure NAME MANIFEST ROUNDS: "name changes rows off on ratio off-cpu on-cpu cpu-ratio rounds" into $TMP/rows.
measure() {
  local name=$1 manifest=$2 rounds=$3 changes r rows=0
  changes=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["changes"]))' "$manifest")
  : >"$TMP/off"; : >"$TMP/on"
  for r in $(seq "$rounds"); do
    createdb "off_$r"; createdb "on_$r"
    psql -X -q -d "off_$r" -c "CREATE EXTENSION pg_deploy" -c "SELECT deploy.disable_lineage()" >/dev/null
    psql -X -q -d "on_$r" -c "CREATE EXTENSION pg_deploy" >/dev/null
    # Alternate which goes first so neither always gets the colder caches.
    if (( r % 2 )); then
      { apply_ms "off_$r" "$manifest"; echo; } >>"$TMP/off"; { apply_ms "on_$r" "$manifest"; echo; } >>"$TMP/on"
    else
      { apply_ms "on_$r" "$manifest"; echo; } >>"$TMP/on"; { apply_ms "off_$r" "$manifest"; echo; } >>"$TMP/off"
    fi
    rows=$(psql -X -At -d "on_$r" -c "SELECT count(*) FROM deploy.lineage WHERE event = 'ddl'")
    echo "# $name round $r: off $(tail -1 "$TMP/off") ms, on $(tail -1 "$TMP/on") ms (wall cpu; $rows rows)" >&2
    dropdb "off_$r"; dropdb "on_$r"
  done
  local off on ratio off_cpu on_cpu cpu_ratio
  off=$(cut -d' ' -f1 "$TMP/off" | median); on=$(cut -d' ' -f1 "$TMP/on" | median)
  off_cpu=$(cut -d' ' -f2 "$TMP/off" | median); on_cpu=$(cut -d' ' -f2 "$TMP/on" | median)
  ratio=$(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a / b}')
  cpu_ratio=$(awk -v a="$on_cpu" -v b="$off_cpu" 'BEGIN {printf "%.3f", a / b}')
  echo "$name $changes $rows $off $on $ratio $off_cpu $on_cpu $cpu_ratio $(cut -d' ' -f1 "$TMP/off" | paste -sd' ') | $(cut -d' ' -f1 "$TMP/on" | paste -sd' ')" | tee -a "$TMP/rows"
}

: >"$TMP/rows"
corpus documenso documenso+documenso packages/prisma/migrations >/dev/null
if [ -d "$TMP/src/documenso" ]; then
  "$CLI" manifest --project documenso "$TMP/src/documenso" >"$TMP/documenso.json"
  # A server without an extension the history creates (a bare build has no
  # pgcrypto) takes the history up to the change before it, and says so.
  psql -X -At -d postgres -c "SELECT name FROM pg_available_extensions" >"$TMP/available"
  CUT=$(python3 - "$TMP/documenso.json" "$TMP/available" <<'PY'
import json, re, sys
m = json.load(open(sys.argv[1])); have = set(open(sys.argv[2]).read().split())
for i, c in enumerate(m["changes"]):
    missing = [e for e in re.findall(r'CREATE EXTENSION (?:IF NOT EXISTS )?"?(\w+)', c["sql"], re.I) if e not in have]
    if missing:
        print(f"{c['id']} (needs {', '.join(missing)})")
        m["changes"] = m["changes"][:i]
        break
json.dump(m, open(sys.argv[1], "w"))
PY
)
  [ -z "$CUT" ] || echo "# documenso: up to the change before $CUT, which this server cannot run" >&2
  chmod 644 "$TMP/documenso.json"
  measure documenso "$TMP/documenso.json" "$ROUNDS"
fi
python3 bench/ddl_changes.py "$N" "$TMP/synthetic.json"
chmod 644 "$TMP/synthetic.json"
measure "synthetic-$N" "$TMP/synthetic.json" "$N_ROUNDS"

{
  echo "Generated by \`bash bench/lineage.sh\` on $(date -u +%Y-%m-%d): $(postgres --version), $(nproc) cores"
  echo "shared with other developers' builds and tests (the machine was busy: expect noise of several percent),"
  echo "cluster on ${BENCH_TMPDIR:-/dev/shm}, fsync off. Server time (psql's \\timing) and the backend's CPU time"
  echo "(/proc/PID/schedstat) of one deploy.apply on a fresh database, lineage off (deploy.disable_lineage())"
  echo "vs on, alternating, median of the rounds. Goal: on/off <= 1.05x."
  echo
  [ -z "${CUT:-}" ] || echo "documenso: its history up to the change before $CUT, which this server has not installed."
  echo
  echo "| corpus | changes | lineage rows | off (ms) | on (ms) | on/off | off CPU (ms) | on CPU (ms) | CPU on/off | rounds off \\| on (ms) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  while read -r name changes rows off on ratio off_cpu on_cpu cpu_ratio rest; do
    echo "| $name | $changes | $rows | $off | $on | ${ratio}x | $off_cpu | $on_cpu | ${cpu_ratio}x | ${rest//|/\\|} |"
  done <"$TMP/rows"
} >"$ROOT/bench/lineage-results.md"
cat "$ROOT/bench/lineage-results.md"
