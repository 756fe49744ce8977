#!/usr/bin/env bash
# Where deploy.apply's time goes: perf samples of the backend running one
# apply of N (default 1000) generated changes (the bench/run.sh manifest),
# printed as the top symbols (self and with children). Needs perf and a
# release build installed (scripts/setup.sh). Usage: bash bench/profile.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
PORT=${PORT:-5480}
N=${N:-1000}
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 2; }
TMP=$(mktemp -d "${BENCH_TMPDIR:-/dev/shm}/pg_deploy_profile.XXXXXX")
chown postgres: "$TMP"
trap 'bash "$ROOT/scripts/cluster.sh" stop "$TMP/c" || true; [ "${KEEP:-0}" = 1 ] || rm -rf "$TMP"' EXIT
# Room for big N (5 locks a change: table, TOAST table and index, two indexes).
start_cluster "$TMP/c" "$PORT" "${MAX_LOCKS:-512}"
python3 bench/ddl_changes.py "$N" "$TMP/manifest.json"
chmod o+r "$TMP/manifest.json"
psql -X -q -d postgres -c "CREATE EXTENSION pg_deploy"
# One session: learn its pid, start perf on it, then apply.
coproc PSQLS { psql -X -q -At -d postgres 2>&1; }
echo "SELECT pg_backend_pid();" >&"${PSQLS[1]}"
read -r pid <&"${PSQLS[0]}"
perf record -F ${FREQ:-2000} ${CALLGRAPH:--g} -p "$pid" -o "$TMP/perf.data" >"$TMP/perf.log" 2>&1 &
perf_pid=$!
sleep 1
echo "\\timing on
SET client_min_messages = warning;
SELECT deploy.apply(pg_read_file('$TMP/manifest.json')::jsonb)->>'outcome';
\\q" >&"${PSQLS[1]}"
cat <&"${PSQLS[0]}"
sleep 0.5
kill -INT "$perf_pid" 2>/dev/null || cat "$TMP/perf.log" >&2; wait "$perf_pid" || true
perf report -i "$TMP/perf.data" --no-children --sort symbol --stdio -G 2>/dev/null >"$TMP/callers.txt" || true
# awk reads to the end: `head` would stop early and fail the pipe (SIGPIPE under pipefail).
echo "== self"
perf report -i "$TMP/perf.data" --no-children --sort symbol --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ && ++n <= 25'
echo "== with children"
perf report -i "$TMP/perf.data" --children --sort symbol --stdio 2>/dev/null | awk '/^ +[0-9.]+%/ && ++n <= 45'
