#!/usr/bin/env bash
# Benchmark: 1,000 small DDL changes applied as a plain psql -1 script vs one
# deploy.apply() call, plus the cost of a no-op re-apply.
# Assumes the extension is installed (scripts/setup.sh). Writes bench/results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5497}
N=${N:-1000}       # changes
REPS=${REPS:-3}    # raw vs apply rounds
NOOPS=${NOOPS:-5}  # no-op re-applies

# tmpfs by default: on this VM's disk, file creation noise swamps the numbers.
BENCH_TMPDIR=${BENCH_TMPDIR:-$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )}
TMP=$(mktemp -d "$BENCH_TMPDIR/pg_deploy_bench.XXXXXX")
trap 'bash "$ROOT/scripts/cluster.sh" stop "$TMP" || true; rm -rf "$TMP"' EXIT
bash scripts/cluster.sh start "$TMP" "$PORT"
eval "$(bash scripts/cluster.sh env "$TMP")"

# Same changes twice: as one SQL file and as a manifest.
python3 bench/ddl_changes.py "$N" "$TMP/manifest.json" "$TMP/all.sql"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# Sum of psql's "Time: X ms" lines on stdin.
sum_timing() { awk '/^Time: / {s += $2} END {printf "%.1f", s}'; }

# Flush dirty buffers first so one run's writes don't land in the next one's time.
checkpoint() { psql -X -q -d postgres -c 'CHECKPOINT'; }

# run_raw DB: prints "server_ms wall_ms" for the plain script in one transaction.
run_raw() {
  local t0 t1 server
  checkpoint
  t0=$(now_ms)
  server=$(psql -X -q -v ON_ERROR_STOP=1 -1 -d "$1" -c '\timing on' -f "$TMP/all.sql" | sum_timing)
  t1=$(now_ms)
  echo "$server $((t1 - t0))"
}

# run_apply DB: prints "server_ms wall_ms" for one deploy.apply of the manifest.
# \set with backquotes reads the file in psql: a 1,000-change manifest is too
# large for a command-line argument.
run_apply() {
  local t0 t1 server
  checkpoint
  t0=$(now_ms)
  server=$(psql -X -q -v ON_ERROR_STOP=1 -d "$1" <<SQL | sum_timing
SET client_min_messages = warning;
\\set manifest \`cat $TMP/manifest.json\`
\\timing on
SELECT deploy.apply(:'manifest'::jsonb) IS NOT NULL;
SQL
  )
  t1=$(now_ms)
  echo "$server $((t1 - t0))"
}

: >"$TMP/raw" ; : >"$TMP/apply" ; : >"$TMP/noop"
for rep in $(seq "$REPS"); do
  createdb "raw_$rep"
  createdb "apply_$rep"
  psql -X -q -v ON_ERROR_STOP=1 -d "apply_$rep" -c 'CREATE EXTENSION pg_deploy;'
  # Alternate which goes first so neither always gets the colder caches.
  if (( rep % 2 )); then
    run_raw "raw_$rep" >>"$TMP/raw"; run_apply "apply_$rep" >>"$TMP/apply"
  else
    run_apply "apply_$rep" >>"$TMP/apply"; run_raw "raw_$rep" >>"$TMP/raw"
  fi
  echo "round $rep: raw $(tail -1 "$TMP/raw") / apply $(tail -1 "$TMP/apply") (server ms, wall ms)"
done
[ "$(psql -X -At -d "apply_$REPS" -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'bench'")" = "$N" ] \
  || { echo "apply did not create $N tables" >&2; exit 1; }
for _ in $(seq "$NOOPS"); do run_apply "apply_$REPS" >>"$TMP/noop"; done

med() { cut -d' ' -f"$2" "$TMP/$1" | median; }
raw_s=$(med raw 1); raw_w=$(med raw 2)
app_s=$(med apply 1); app_w=$(med apply 2)
noop_s=$(med noop 1); noop_w=$(med noop 2)
ratio_s=$(awk -v a="$app_s" -v b="$raw_s" 'BEGIN {printf "%.2f", a / b}')
ratio_w=$(awk -v a="$app_w" -v b="$raw_w" 'BEGIN {printf "%.2f", a / b}')
verdict() { awk -v v="$1" -v max="$2" 'BEGIN {print (v <= max) ? "met" : "MISSED"}'; }

{
  echo "# pg_deploy benchmark"
  echo
  echo "$N changes (CREATE TABLE + CREATE INDEX each), PostgreSQL $(psql -X -At -d postgres -c 'SHOW server_version'),"
  echo "$(nproc) cores, cluster on $BENCH_TMPDIR, fsync off; medians of $REPS rounds, no-op median of $NOOPS runs; $(date -u +%Y-%m-%d)."
  echo "server = sum of psql \\timing over the statements (excludes connecting); wall = the whole psql process."
  echo
  echo "| measure | server ms | wall ms | target |"
  echo "| --- | ---: | ---: | --- |"
  echo "| psql -1 -f all.sql | $raw_s | $raw_w | |"
  echo "| deploy.apply(manifest) | $app_s | $app_w | |"
  echo "| ratio apply / raw | ${ratio_s}x | ${ratio_w}x | <= 1.15x: $(verdict "$ratio_s" 1.15) |"
  echo "| no-op re-apply (issue 13) | $noop_s | $noop_w | <= 10 ms: $(verdict "$noop_s" 10) |"
} | tee bench/results.md
