#!/usr/bin/env bash
# Instructions the backend executes (valgrind's callgrind, Ir) for the floor,
# deploy.apply, and deploy.apply with lineage off, on the real histories of
# bench/floor.sh, and where the apply's instructions go. Timings on this
# shared 2-core VM move by tens of percent between runs; instruction counts
# do not depend on other guests (two runs agree within about 1 %), so small
# changes can be measured. They are not time: a cache miss counts as one
# instruction. sha256 is overcounted: under valgrind the sha2 crate cannot use
# the CPU's SHA instructions and runs its portable code, so its share is shown
# apart.
# Also a new session's no-op re-apply of the bench/noop.sh manifests with a
# checksum in every change, at NOOP_SIZES changes (default 1000 10000; empty
# for none), sent as a literal.
#   bash bench/instructions.sh [NAME=DIR ...]
# Corpora as bench/floor.sh takes them. KEEP=DIR keeps the applies' callgrind
# files there (callgrind_annotate --inclusive=yes FILE reads them). Writes bench/instructions-results.md.
# Installs valgrind when it is missing. Assumes the extension is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5474}
NOOP_SIZES=${NOOP_SIZES-1000 10000}
MIRRORS=${MIRRORS:-/work/.mirror}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
command -v valgrind >/dev/null ||
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null
TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_instructions.XXXXXX")
chmod 755 "$TMP"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
stop() { as_pg "$PG_BIN/pg_ctl" stop -w -m fast -D "$TMP/data" >/dev/null 2>&1 || true; }
trap 'stop; rm -rf "$TMP"' EXIT

cargo build -q --release -p pg-deploy-cli
CLI=${CARGO_TARGET_DIR:-$ROOT/target}/release/pg-deploy
[ $# -gt 0 ] || set -- $(real_histories)
[ $# -gt 0 ] || { echo "no corpus to measure" >&2; exit 2; }

# Each figure is for a database some session has connected to before (as in
# bench/floor.sh and bench/noop.sh), so that neither session builds its
# relation cache file. Templates made by a plain server; then the server runs under callgrind,
# counting from PostgresMain on, that is, in each backend alone.
bash scripts/cluster.sh start "$TMP" "$PORT" >/dev/null
eval "$(bash scripts/cluster.sh env "$TMP")"
export PGOPTIONS='-c client_min_messages=warning'
names=()
for arg in "$@"; do
  name=${arg%%=*} dir=${arg#*=}
  names+=("$name")
  history_files "$name" "$dir"
  for way in raw app off; do
    createdb "tpl_${way}_$name"
    psql -X -q -v ON_ERROR_STOP=1 -o /dev/null -d "tpl_${way}_$name" -c "SELECT 1; $(history_prelude "$name")"
  done
  psql -X -q -d "tpl_app_$name" -c "CREATE EXTENSION pg_deploy"
  psql -X -q -d "tpl_off_$name" -c "CREATE EXTENSION pg_deploy" -c "SELECT deploy.disable_lineage()" >/dev/null
done
# The no-op's databases, each with its manifest applied once; 10,000 such
# changes need more locks than the default 64 a transaction.
if [ -n "$NOOP_SIZES" ]; then
  psql -X -q -d postgres -c "ALTER SYSTEM SET max_locks_per_transaction = 512"
  bash scripts/cluster.sh restart "$TMP" >/dev/null
fi
for n in $NOOP_SIZES; do
  python3 bench/ddl_changes.py "$n" "$TMP/noop-$n.json"
  with_checksums "$TMP/noop-$n.json" "$TMP/noop-$n.json"
  chmod 644 "$TMP/noop-$n.json"
  createdb "noop_$n"
  first=$(psql -X -q -At -v ON_ERROR_STOP=1 -d "noop_$n" -c "CREATE EXTENSION pg_deploy" \
    -c "SELECT deploy.apply(pg_read_file('$TMP/noop-$n.json')::jsonb)->>'outcome'")
  [ "$first" = applied ] || { echo "the first apply of $n changes: $first" >&2; exit 1; }
done
[ -z "$NOOP_SIZES" ] || psql -X -q -d postgres -c "ALTER SYSTEM RESET max_locks_per_transaction"
bash scripts/cluster.sh stop "$TMP" >/dev/null
mkdir -p "$TMP/cg" && chown postgres: "$TMP/cg" 2>/dev/null || true
as_pg valgrind --tool=callgrind --collect-atstart=no --toggle-collect=PostgresMain \
  --callgrind-out-file="$TMP/cg/%p" "$PG_BIN/postgres" -D "$TMP/data" -c autovacuum=off >"$TMP/valgrind.log" 2>&1 &
for _ in $(seq 240); do pg_isready -q && break; sleep 0.5; done
pg_isready -q || { tail "$TMP/valgrind.log" >&2; exit 1; }

# session DB [KEEP]: runs psql's stdin as one session after asking for its
# backend's pid (the baseline asks too), prints that backend's Ir from the
# file callgrind writes when it exits, keeps the file as KEEP if given.
session() {
  local pid f
  pid=$( (echo "SELECT pg_backend_pid();"; cat) | psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" | sed -n 1p)
  f=$TMP/cg/$pid
  for _ in $(seq 600); do
    [ ! -d "/proc/$pid" ] && grep -qE '^(summary|totals):' "$f" 2>/dev/null && break
    sleep 0.1
  done
  sed -nE 's/^(summary|totals): *([0-9]+).*/\2/p' "$f" | head -1
  if [ -n "${2:-}" ]; then mv "$f" "$2"; else rm -f "$f"; fi
}
# ir NAME WAY: the instructions of the one statement of WAY, less those of a
# session doing the same without it.
ir() {
  local name=$1 way=$2 db="d_$2_$1" run base
  psql -X -q -d postgres -c "CREATE DATABASE $db TEMPLATE tpl_${way}_$name" -c CHECKPOINT
  # The first session in a database builds its relation cache file: not in the figure.
  psql -X -q -d "$db" -c "SELECT 1" >/dev/null
  if [ "$way" = raw ]; then
    run=$(session "$db" <<SQL
\\set s \`cat $TMP/$name.sql\`
SELECT :'s' \\gexec
SQL
)
    base=$(session "$db" <<SQL
\\set s \`cat $TMP/$name.sql\`
SELECT :'s' \\g /dev/null
SQL
)
  else
    run=$(session "$db" "$TMP/$way-$name.cg" <<SQL
\\set m \`cat $TMP/$name.json\`
SELECT deploy.apply(:'m'::jsonb) IS NOT NULL;
SQL
)
    base=$(session "$db" <<<"SELECT 1;")
  fi
  echo $((run - base))
}
# part FILE FUNCTION: inclusive Ir of a function in a kept callgrind file.
part() {
  callgrind_annotate --inclusive=yes --threshold=100 "$1" 2>/dev/null |
    awk -v f="$2" '{ n = $0; sub(/^ *[0-9,]+ \([^)]*\) +/, "", n); sub(/ \[.*$/, "", n); sub(/^[^:]*:/, "", n)
                     if (n == f && !done) { gsub(/,/, "", $1); print $1; done = 1 } }'
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", 100 * a / b}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }
mi() { awk -v a="$1" 'BEGIN {printf "%.1f", a / 1e6}'; }

rows="" parts=""
for name in "${names[@]}"; do
  changes=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["changes"]))' "$TMP/$name.json")
  raw=$(ir "$name" raw); app=$(ir "$name" app); off=$(ir "$name" off)
  echo "$name: floor $raw, apply $app, lineage off $off instructions" >&2
  rows+="| $name | $changes | $(mi "$raw") | $(mi "$app") | **$(ratio "$app" "$raw")×** | $(mi "$off") | $(ratio "$off" "$raw")× | **$(ratio "$app" "$off")×** |"$'\n'
  cg=$TMP/app-$name.cg
  total=$(sed -nE 's/^(summary|totals): *([0-9]+).*/\2/p' "$cg" | head -1)
  closure=$(part "$cg" 'pg_deploy::apply::deploy::{{closure}}'); trigger=$(part "$cg" pg_deploy_lineage_event)
  seal=$(part "$cg" pg_deploy::lineage::attach); fp=$(part "$cg" pg_deploy::drift::fingerprint)
  rec=$(part "$cg" pg_deploy::record::record); prep=$(part "$cg" pg_deploy::apply::prepare)
  sha=$(part "$cg" sha2::sha256::compress256)
  stmts=$((${closure:-0} - ${trigger:-0}))
  rest=$((total - stmts - ${trigger:-0} - ${seal:-0} - ${fp:-0} - ${rec:-0} - ${prep:-0}))
  parts+="| $name | $(pct "$stmts" "$total") | $(pct "${trigger:-0}" "$total") | $(pct "${seal:-0}" "$total") | $(pct "${fp:-0}" "$total") | $(pct "${rec:-0}" "$total") | $(pct "${prep:-0}" "$total") | $(pct "$rest" "$total") | $(pct "${sha:-0}" "$total") |"$'\n'
done

noops=""
for n in $NOOP_SIZES; do
  psql -X -q -d "noop_$n" -c "SELECT 1" >/dev/null
  run=$(session "noop_$n" <<SQL
\\set m \`cat $TMP/noop-$n.json\`
SELECT deploy.apply(:'m'::jsonb)->>'outcome';
SQL
)
  base=$(session "noop_$n" <<<"SELECT 1;")
  echo "no-op at $n changes: $((run - base)) instructions" >&2
  noops+="| $n | $(mi $((run - base))) |"$'\n'
done
[ -z "${KEEP:-}" ] || { mkdir -p "$KEEP"; cp "$TMP"/*.cg "$KEEP"/; }
out=$ROOT/bench/instructions-results.md
{
  echo "# Instructions: the floor, deploy.apply, and lineage off"
  echo
  echo "Generated by \`bash bench/instructions.sh\` on $(date -u +%Y-%m-%d): $(psql -X -At -d postgres -c 'SELECT version()' | cut -d, -f1),"
  echo "the server under valgrind's callgrind (counting in each backend from PostgresMain on). Each figure: the"
  echo "instructions of a session running the one statement, less those of the same session without it."
  echo "The floor: the manifest's SQL in its order as one Query, no extension (as bench/floor.sh)."
  echo
  echo "| history | changes | floor (M) | apply (M) | apply / floor | lineage off (M) | off / floor | lineage on / off |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$rows"
  echo
  echo "Where the apply's instructions go (inclusive shares of the apply's session; the session's own start is in \"rest\"):"
  echo
  echo "| history | the changes' statements (SPI, subtransactions) | lineage: event trigger | lineage: sealed write | fingerprint | history | reading and analysing the manifest | rest | of which sha256 (portable code under valgrind) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s' "$parts"
  if [ -n "$noops" ]; then
    echo
    echo "A new session's no-op re-apply (bench/noop.sh's manifest with a checksum in every change, sent as a literal):"
    echo
    echo "| changes | instructions (M) |"
    echo "|---:|---:|"
    printf '%s' "$noops"
  fi
} >"$out"
cat "$out"
