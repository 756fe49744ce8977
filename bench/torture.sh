#!/usr/bin/env bash
# Torture test: no partial deployment, whatever happens mid-apply.
#
# Against its own throwaway PostgreSQL 15 cluster (127.0.0.1:$PORT and a unix
# socket; PgBouncer in transaction mode on 127.0.0.1:$BOUNCER_PORT for the
# concurrency rounds), a deployment of $CHANGES changes (tables, rows, columns,
# functions, a repeatable view; every 10th change sleeps, so interruptions
# land mid-flight) on top of version 1.0.0 of project "torture" is:
#   kill9       the applying backend is killed with SIGKILL at a random point
#               (pid found via application_name in pg_stat_activity); the
#               postmaster then restarts every backend and recovers;
#   immediate   the cluster is stopped with pg_ctl stop -m immediate at a
#               random point, then started again (crash recovery);
#   race        $APPLIERS sessions apply the same manifest at once, directly and
#               through PgBouncer: exactly one must apply, the rest wait and
#               find nothing pending (no-op);
#   cancel      pg_cancel_backend() of the applying backend at a random point;
#   disconnect  the psql client is killed with SIGKILL at a random point, half
#               the trials with the per-change NOTICEs on, half with
#               client_min_messages = warning (nothing is sent to the client
#               until the result).
# After every trial the database must hold either the whole deployment (every
# object and history row, deploy.verify_log() intact, deploy.status() at
# 2.0.0) or none of it (no object of 2.0.0, no history row of it, status still
# 1.0.0); anything else is a partial state. Then the manifest is applied again,
# which must succeed and leave the whole deployment.
#
# Usage: bash bench/torture.sh   (after scripts/setup.sh; runs as root, the cluster as postgres)
# Settings (environment): KILLS=100 STOPS=30 RACES=5 (rounds per mode) APPLIERS=16
#   CANCELS=30 DISCONNECTS=30 CHANGES=200 SLEEP_EVERY=10 SLEEP_S=0.02 SEED=<pid>
#   STRATEGY=file_copy PORT=5486 BOUNCER_PORT=6486 KEEP=0 (1: keep the cluster directory)
# Exits 1 if a partial state (or a failed re-apply, or a race that did not end
# with exactly one apply) is found.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
require_release_build
# shellcheck source=../scripts/cluster.sh
source "$ROOT/scripts/cluster.sh"
# start_pgbouncer (the e2e suites' own); this script's q and newdb replace lib.sh's.
# shellcheck source=../pg_test/lib.sh
source "$ROOT/pg_test/lib.sh"

PORT=${PORT:-5486}
BOUNCER_PORT=${BOUNCER_PORT:-6486}
KILLS=${KILLS:-100}
STOPS=${STOPS:-30}
RACES=${RACES:-5}
APPLIERS=${APPLIERS:-16}
CANCELS=${CANCELS:-30}
DISCONNECTS=${DISCONNECTS:-30}
CHANGES=${CHANGES:-200}
SLEEP_EVERY=${SLEEP_EVERY:-10}
SLEEP_S=${SLEEP_S:-0.02}
SEED=${SEED:-$$}
RANDOM=$SEED
# How each trial's database is copied from the template (CREATE DATABASE … STRATEGY).
# wal_log, PostgreSQL 15's default, copies the template's sequence pages with
# their cached values, so the copy's first nextval() is not WAL-logged and a
# crash rewinds the sequence: after an immediate shutdown that follows a
# committed deployment, the next apply fails with 23505 on deploy.deployments'
# id (a PostgreSQL bug, see docs/reliability.md). file_copy checkpoints around
# the copy and is not affected.
STRATEGY=${STRATEGY:-file_copy}

TMPBASE=${TORTURE_TMPDIR:-$( [ -d /dev/shm ] && echo /dev/shm || echo /tmp )}
TMP=$(mktemp -d "$TMPBASE/pg_deploy_torture.XXXXXX")
KEEP=${KEEP:-0}
cleanup() {
  if [ -f "$TMP/pgbouncer.pid" ]; then kill "$(cat "$TMP/pgbouncer.pid")" 2>/dev/null || true; fi
  cluster_stop "$TMP" 2>/dev/null || _as_pg "$PG_BIN/pg_ctl" stop -m immediate -D "$TMP/data" >/dev/null 2>&1 || true
  if [ "$KEEP" = 1 ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# stats FILE: "n=…, median …, max …" of the numbers in FILE, one a line.
stats() {
  sort -g "$1" | awk '{v[NR] = $1} END {
    if (NR == 0) { print "n=0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "n=%d, min %s, median %s, max %s", NR, v[1], m, v[NR] }'
}
# rand_ms SPAN: a uniform random integer in [0, SPAN).
rand_ms() { echo $(( (RANDOM * 32768 + RANDOM) % $1 )); }
sleep_ms() { sleep "$(printf '%d.%03d' $(( $1 / 1000 )) $(( $1 % 1000 )))"; }

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -At)
q() { "${PSQL[@]}" -d "$1" -c "$2"; }

# ------------------------------------------------------------------ cluster

cluster_start "$TMP" "$PORT"
eval "$(cluster_env "$TMP")"
# cluster.sh turns synchronous_commit off for speed; a crash may then lose a
# commit the client saw. Durability is not what is tested here, so turn it on:
# an acknowledged deployment must survive kill -9 and immediate shutdown.
q postgres "ALTER SYSTEM SET synchronous_commit = on" >/dev/null
q postgres "SELECT pg_reload_conf()" >/dev/null

# wait_ready: until the cluster accepts connections again (at most 120 s).
wait_ready() {
  local _
  for _ in $(seq 1200); do
    psql -X -At -d postgres -c 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "cluster did not come back" >&2; tail -20 "$TMP/postgres.log" >&2; return 1
}

stop_pgbouncer() {
  if [ -f "$TMP/pgbouncer.pid" ]; then
    local pid _
    pid=$(cat "$TMP/pgbouncer.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$TMP/pgbouncer.pid"
  fi
}

# ------------------------------------------------------------------ manifests

python3 - "$CHANGES" "$SLEEP_EVERY" "$SLEEP_S" "$TMP" <<'PY'
import json, sys
n, every, sleep_s, tmp = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
v1 = {"project": "torture", "version": "1.0.0", "changes": [
    {"id": "v1-schema", "sql": "CREATE SCHEMA torture;"},
    {"id": "v1-base", "sql": "CREATE TABLE torture.base (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, source text NOT NULL, n int);"},
    {"id": "v1-rows", "sql": "INSERT INTO torture.base (source, n) SELECT 'v1', g FROM generate_series(1, 100) g;"},
]}
# 2.0.0 carries 1.0.0's changes first, as a manifest does.
changes, rel, fun, col, rows = list(v1["changes"]), 0, 0, 0, 0
for i in range(1, n):
    k = i % 4
    if k == 1:
        sql = f"CREATE TABLE torture.v2_t_{i} (id bigint PRIMARY KEY, note text);"; rel += 2  # table + its key
    elif k == 2:
        sql = f"INSERT INTO torture.base (source, n) VALUES ('v2', {i});"; rows += 1
    elif k == 3:
        sql = f"ALTER TABLE torture.base ADD COLUMN v2_c_{i} int;"; col += 1
    else:
        sql = f"CREATE FUNCTION torture.v2_f_{i}() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT {i}';"; fun += 1
    if i % every == 0:
        sql = f"SELECT pg_sleep({sleep_s});\n" + sql
    changes.append({"id": f"v2-{i:04d}", "sql": sql})
changes.append({"id": "v2-view", "repeatable": True,
                "sql": "CREATE OR REPLACE VIEW torture.v2_view AS SELECT source, count(*) AS n FROM torture.base GROUP BY source;"})
rel += 1
v2 = {"project": "torture", "version": "2.0.0", "changes": changes}
json.dump(v1, open(f"{tmp}/v1.json", "w"))
json.dump(v2, open(f"{tmp}/v2.json", "w"))
open(f"{tmp}/expect.sh", "w").write(f"EXP_REL={rel} EXP_FUN={fun} EXP_COL={col} EXP_ROWS={rows}\n")
PY
# shellcheck disable=SC1091
source "$TMP/expect.sh"

# The apply as a psql script: \set reads the manifest in psql (too large for an argument).
for v in v1 v2; do
  printf '\\set manifest `cat %s/%s.json`\nSELECT deploy.apply(:'"'"'manifest'"'"'::jsonb)->>'"'"'outcome'"'"';\n' "$TMP" "$v" >"$TMP/apply_$v.sql"
  { echo "SET client_min_messages = warning;"; cat "$TMP/apply_$v.sql"; } >"$TMP/apply_${v}_quiet.sql"
done

# ------------------------------------------------------------------ state

# signature DB: one line describing what of 2.0.0 is in DB.
SIG_SQL="SELECT concat_ws('|',
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'torture' AND c.relname LIKE 'v2\_%'),
  (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'torture' AND p.proname LIKE 'v2\_%'),
  (SELECT count(*) FROM pg_attribute WHERE attrelid = 'torture.base'::regclass AND attname LIKE 'v2\_%' AND NOT attisdropped),
  (SELECT count(*) FROM torture.base WHERE source = 'v2'),
  (SELECT count(*) FROM torture.base WHERE source = 'v1'),
  (SELECT count(*) FROM deploy.change_log WHERE project = 'torture' AND change_id LIKE 'v2-%'),
  (SELECT count(DISTINCT change_id) FROM deploy.change_log WHERE project = 'torture' AND change_id LIKE 'v2-%'),
  (SELECT count(*) FROM deploy.deployments WHERE project = 'torture' AND version = '2.0.0' AND outcome = 'applied'),
  (SELECT count(*) FROM deploy.deployments WHERE project = 'torture' AND version = '1.0.0' AND outcome = 'applied'),
  (SELECT count(*) FROM deploy.manifests m WHERE m.manifest->>'version' = '2.0.0'),
  (SELECT count(*) FROM deploy.fingerprints WHERE project = 'torture' AND name LIKE '%v2\_%'),
  (SELECT version FROM deploy.status('torture')),
  (SELECT bool_and(intact) FROM deploy.verify_log('torture')),
  (SELECT drifted FROM deploy.status('torture')),
  (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
      AND backend_type = 'client backend' AND state <> 'idle'),
  (SELECT count(*) FROM pg_prepared_xacts))"
SIG_FIELDS="v2_relations|v2_functions|v2_columns|v2_rows|v1_rows|v2_change_log_rows|v2_change_ids|v2_applied_deployments|v1_applied_deployments|v2_manifests|v2_fingerprints|status_version|verify_log_intact|drifted|other_busy_sessions|prepared_xacts"
signature() { q "$1" "$SIG_SQL"; }
# Filled in from the first clean apply (the fingerprint count is whatever it records).
SIG_NONE="0|0|0|0|100|0|0|0|1|0|0|1.0.0|t|f|0|0"
SIG_COMPLETE=""

PARTIAL=0
FAILURES=0
declare -A TRIALS COMPLETE NONE
# classify DB KIND LABEL: prints complete/none/partial; counts; keeps a partial DB.
classify() {
  local sig
  sig=$(signature "$1" 2>&1) || sig="error: $sig"
  TRIALS[$2]=$(( ${TRIALS[$2]:-0} + 1 ))
  if [ "$sig" = "$SIG_COMPLETE" ]; then
    COMPLETE[$2]=$(( ${COMPLETE[$2]:-0} + 1 )); STATE=complete
  elif [ "$sig" = "$SIG_NONE" ]; then
    NONE[$2]=$(( ${NONE[$2]:-0} + 1 )); STATE=none
  else
    PARTIAL=$((PARTIAL + 1)); STATE=partial; KEEP=1
    {
      echo "PARTIAL STATE in database $1 ($3)"
      echo "  fields:   $SIG_FIELDS"
      echo "  found:    $sig"
      echo "  complete: $SIG_COMPLETE"
      echo "  none:     $SIG_NONE"
    } | tee -a "$TMP/partial.txt" >&2
  fi
}

# reapply DB KIND: apply 2.0.0 again; it must succeed and end complete. Records the time.
reapply() {
  local t0 t1 out sig
  t0=$(now_ms)
  if ! out=$("${PSQL[@]}" -d "$1" -f "$TMP/apply_v2_quiet.sql" 2>&1); then
    echo "re-apply failed in $1: $out" >&2; FAILURES=$((FAILURES + 1)); KEEP=1; STATE=partial; return 0
  fi
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$TMP/reapply_$2.ms"
  echo "$out" >>"$TMP/reapply_$2.outcomes"
  sig=$(signature "$1")
  if [ "$sig" != "$SIG_COMPLETE" ]; then
    echo "after re-apply, $1 is not complete: $sig" >&2; FAILURES=$((FAILURES + 1)); KEEP=1; STATE=partial
  fi
}

# The installed extension must not change under the run (a rebuild reinstalls it).
ext_stamp() { stat -c '%Y %s' "$("$PG_BIN/pg_config" --pkglibdir)/pg_deploy.so" "$("$PG_BIN/pg_config" --sharedir)"/extension/pg_deploy--*.sql | paste -sd' '; }
EXT_STAMP=$(ext_stamp)
TRIAL=0
newdb() {
  if [ "$(ext_stamp)" != "$EXT_STAMP" ]; then
    echo "pg_deploy was reinstalled during the run (before trial $((TRIAL + 1))): its figures would mix two builds; run again" >&2; exit 3
  fi
  TRIAL=$((TRIAL + 1)); DB=t_$TRIAL; createdb -S "$STRATEGY" -T tmpl "$DB"; }
# --force: PgBouncer keeps server connections to the database open.
dropdb_ok() { [ "$STATE" = partial ] || dropdb --force "$1"; }

# start_apply DB APPNAME OUT [psql args]: apply 2.0.0 in the background; CLIENT = psql's pid.
start_apply() {
  local db=$1 app=$2 out=$3
  shift 3
  PGAPPNAME=$app psql -X -q -At -d "$db" "$@" >"$out" 2>"$out.err" &
  CLIENT=$!
}
# backend_of DB APPNAME: the backend's pid once it runs the apply (polls at most 20 s).
backend_of() {
  local pid _
  for _ in $(seq 1000); do
    pid=$(psql -X -At -d postgres -c "SELECT pid FROM pg_stat_activity WHERE datname = '$1' AND application_name = '$2'
                                        AND state = 'active' AND query LIKE '%deploy.apply%'" 2>/dev/null || true)
    [ -n "$pid" ] && { echo "$pid"; return 0; }
    sleep 0.02
  done
  echo "no backend for $2 in $1" >&2; return 1
}
# changes_done FILE: NOTICEs of changes applied before the interruption.
changes_done() { grep -c 'pg_deploy: torture: applied' "$1" || true; }
# wait_client PID: sets RC to the client's exit status (wait must run in this shell).
wait_client() { RC=0; wait "$1" 2>/dev/null || RC=$?; }

# ------------------------------------------------------------------ setup

T_START=$(now_ms)
createdb tmpl
q tmpl "CREATE EXTENSION pg_deploy;"
"${PSQL[@]}" -d tmpl -f "$TMP/apply_v1_quiet.sql" >/dev/null
echo "# PostgreSQL $(q postgres 'SHOW server_version'), pg_deploy $(q tmpl "SELECT extversion FROM pg_extension WHERE extname = 'pg_deploy'"), $(nproc) cores, cluster in $TMP, seed $SEED, databases copied with strategy $STRATEGY"
echo "# manifest 2.0.0: $CHANGES changes ($((EXP_REL / 2)) tables, $EXP_ROWS inserts, $EXP_COL added columns, $EXP_FUN functions, 1 repeatable view), pg_sleep($SLEEP_S) in every ${SLEEP_EVERY}th"
[ "$(signature tmpl)" = "$SIG_NONE" ] || { echo "template not as expected: $(signature tmpl)" >&2; exit 1; }

# Clean applies: the expected complete signature and the apply's duration.
: >"$TMP/clean.ms"
for i in 1 2 3; do
  newdb
  start_apply "$DB" "clean_$i" "$TMP/clean_$i" -v ON_ERROR_STOP=1 -f "$TMP/apply_v2.sql"
  backend_of "$DB" "clean_$i" >/dev/null
  t0=$(now_ms)
  wait_client "$CLIENT"
  t1=$(now_ms)
  [ "$RC" = 0 ] && [ "$(cat "$TMP/clean_$i")" = applied ] || { echo "clean apply failed: $(cat "$TMP/clean_$i.err")" >&2; exit 1; }
  echo $((t1 - t0)) >>"$TMP/clean.ms"
  sig=$(signature "$DB")
  if [ -z "$SIG_COMPLETE" ]; then SIG_COMPLETE=$sig; fi
  [ "$sig" = "$SIG_COMPLETE" ] || { echo "clean applies differ: $sig vs $SIG_COMPLETE" >&2; exit 1; }
  dropdb --force "$DB"
done
# Expected: every object, every history row once, one 2.0.0 deployment, log intact, no drift.
exp="$EXP_REL|$EXP_FUN|$EXP_COL|$EXP_ROWS|100|$CHANGES|$CHANGES|1|1|1|"
case "$SIG_COMPLETE" in
  "$exp"*"|2.0.0|t|f|0|0") ;;
  *) echo "clean apply left an unexpected state: $SIG_COMPLETE (expected $exp…|2.0.0|t|f|0|0)" >&2; exit 1 ;;
esac
SPAN=$(sort -g "$TMP/clean.ms" | sed -n 2p)  # the median of the three
echo "clean apply of 2.0.0 (backend seen active -> client done), ms: $(stats "$TMP/clean.ms")"
echo "complete signature: $SIG_COMPLETE"
echo "none signature:     $SIG_NONE"
echo "  ($SIG_FIELDS)"
echo "interruptions land $SPAN ms x uniform [0, 1) after the backend is seen running the apply, or (one in four) x [0.85, 1.1)"
echo

# interrupted KIND HOW: one trial; HOW is run with $BACKEND and $CLIENT set, after a random delay.
interrupted() {
  local kind=$1 how=$2 script=${3:-$TMP/apply_v2.sql} delay rc done_ t0 t1 t_int
  newdb
  start_apply "$DB" "${kind}_$TRIAL" "$TMP/$DB" -v ON_ERROR_STOP=1 -f "$script"
  BACKEND=$(backend_of "$DB" "${kind}_$TRIAL")
  t0=$(now_ms)
  # Three trials in four land anywhere in [0, SPAN); one in four near the end,
  # in [0.85 SPAN, 1.1 SPAN), where the last changes run and the deployment is recorded and committed.
  if (( RANDOM % 4 )); then delay=$(rand_ms "$SPAN")
  else delay=$(( SPAN * 85 / 100 + $(rand_ms $(( SPAN / 4 ))) )); fi
  sleep_ms "$delay"
  # after_end: the client already had the apply's result when interrupted.
  if [ -s "$TMP/$DB" ]; then LANDED=after_end; else LANDED=before_end; fi
  t_int=$(now_ms)
  "$how"
  wait_client "$CLIENT"; rc=$RC
  wait_ready
  t1=$(now_ms)
  echo $((t1 - t_int)) >>"$TMP/back_$kind.ms"
  # the backend may outlive its client (disconnect): wait until it is gone (at most 120 s)
  local _
  for _ in $(seq 1200); do
    [ "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE application_name = '${kind}_$TRIAL'" 2>/dev/null || echo 1)" = 0 ] && break
    sleep 0.1
  done
  echo $(( $(now_ms) - t_int )) >>"$TMP/gone_$kind.ms"
  done_=$(changes_done "$TMP/$DB.err")
  classify "$DB" "$kind" "$kind trial $TRIAL, delay ${delay} ms"
  printf '%-10s %3d: delay %5d ms  landed %-10s  changes done %3s/%d  client rc %s  %-30s -> %s\n' \
    "$kind" "$TRIAL" "$delay" "$LANDED" "$done_" "$CHANGES" "$rc" \
    "$( { grep -v -e NOTICE -e WARNING "$TMP/$DB.err" || true; cat "$TMP/$DB"; } | head -1 | sed 's/^psql:[^ ]*: //' | cut -c1-60)" "$STATE"
  echo "$kind $STATE $LANDED $done_ $rc" >>"$TMP/trials.txt"
  if [ "$STATE" != partial ]; then reapply "$DB" "$kind"; fi
  dropdb_ok "$DB"
}

# After a backend dies by a signal the postmaster ends every backend and
# reinitializes; wait for its log line so the next connection is not made before.
do_kill9() {
  local before _
  before=$(grep -c 'reinitializing' "$TMP/postgres.log" || true)
  if kill -9 "$BACKEND" 2>/dev/null; then
    for _ in $(seq 600); do
      (( $(grep -c 'reinitializing' "$TMP/postgres.log" || true) > before )) && break
      sleep 0.05
    done
  fi
}
do_immediate() {
  _as_pg "$PG_BIN/pg_ctl" stop -w -m immediate -D "$TMP/data" >/dev/null
  _as_pg "$PG_BIN/pg_ctl" start -w -D "$TMP/data" -l "$TMP/postgres.log" >/dev/null
}
do_cancel() { q postgres "SELECT pg_cancel_backend($BACKEND)" >/dev/null; }
do_disconnect() { kill -9 "$CLIENT" 2>/dev/null || true; }

phase() { # phase NAME: prints the phase's wall time when the next starts
  if [ -n "${PHASE:-}" ]; then echo "$PHASE: $(( $(now_ms) - PHASE_T0 )) ms" >>"$TMP/phases.txt"; fi
  PHASE=$1; PHASE_T0=$(now_ms)
}

# ------------------------------------------------------------------ 1. kill -9

phase kill9
for _ in $(seq "$KILLS"); do interrupted kill9 do_kill9; done

# ------------------------------------------------------------------ 2. immediate shutdown

phase immediate
for _ in $(seq "$STOPS"); do interrupted immediate do_immediate; done

# ------------------------------------------------------------------ 3. concurrent appliers

phase race
RACE_BAD=0
NOOP_ROWS=0
race() { # race MODE HOST PORT
  local mode=$1 host=$2 port=$3 i pids=() outcomes noop t0 t1
  newdb
  t0=$(now_ms)
  for i in $(seq "$APPLIERS"); do
    start_apply "$DB" "race_${TRIAL}_$i" "$TMP/$DB.$i" -h "$host" -p "$port" -v ON_ERROR_STOP=1 -f "$TMP/apply_v2.sql"
    pids+=("$CLIENT")
  done
  # How many appliers wait for the project lock, sampled while the first one runs.
  local waiting=0 w _
  for _ in $(seq 10); do
    w=$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'race\_${TRIAL}\_%'
                      AND wait_event_type = 'Lock'")
    (( w > waiting )) && waiting=$w
    sleep 0.03
  done
  echo "$waiting" >>"$TMP/race_$mode.waiting"
  for i in "${!pids[@]}"; do
    wait_client "${pids[$i]}"
    [ "$RC" = 0 ] || { echo "applier $((i + 1)) failed: $(cat "$TMP/$DB.$((i + 1)).err")" >&2; echo failed >"$TMP/$DB.$((i + 1))"; }
  done
  t1=$(now_ms)
  echo $((t1 - t0)) >>"$TMP/race_$mode.ms"
  outcomes=$(for i in $(seq "$APPLIERS"); do cat "$TMP/$DB.$i"; done | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')
  noop=$(q "$DB" "SELECT count(*) FROM deploy.deployments WHERE project = 'torture' AND outcome = 'no-op'")
  NOOP_ROWS=$((NOOP_ROWS + noop))
  echo "$outcomes" >>"$TMP/race_$mode.outcomes"
  classify "$DB" "race_$mode" "race $mode, round $TRIAL"
  # A no-op records no deployment (since pg_deploy 0.2.0's last_checked_at).
  if [ "$outcomes" != "applied=1 no-op=$((APPLIERS - 1))" ] || [ "$noop" != 0 ]; then
    echo "race $mode in $DB: outcomes [$outcomes], no-op rows $noop" >&2; RACE_BAD=$((RACE_BAD + 1)); KEEP=1
  fi
  printf 'race %-9s %3d: %d appliers in %5d ms, at most %2d seen waiting for the project lock: %s, no-op deployment rows %s -> %s\n' \
    "$mode" "$TRIAL" "$APPLIERS" $((t1 - t0)) "$waiting" "$outcomes" "$noop" "$STATE"
  if [ "$STATE" != partial ]; then reapply "$DB" "race_$mode"; fi
  dropdb_ok "$DB"
}
start_pgbouncer $((APPLIERS + 4))
for _ in $(seq "$RACES"); do
  race direct "$PGHOST" "$PGPORT"
  race pgbouncer 127.0.0.1 "$BOUNCER_PORT"
done
stop_pgbouncer

# ------------------------------------------------------------------ 4. cancel and disconnect

phase cancel
for _ in $(seq "$CANCELS"); do interrupted cancel do_cancel; done

phase disconnect
for n in $(seq "$DISCONNECTS"); do
  if (( n % 2 )); then interrupted disconnect do_disconnect
  else interrupted disconnect_quiet do_disconnect "$TMP/apply_v2_quiet.sql"; fi
done
phase end

# ------------------------------------------------------------------ summary

T_END=$(now_ms)
echo
echo "# summary (seed $SEED)"
printf '%-16s %6s %9s %6s %8s   %s\n' kind trials complete none partial "where the interruption landed: before the 1st change ran / mid-changes / after the last change (recording, commit) / after the client had the result"
for kind in kill9 immediate race_direct race_pgbouncer cancel disconnect disconnect_quiet; do
  [ -n "${TRIALS[$kind]:-}" ] || continue
  local_partial=$(awk -v k="$kind" '$1 == k && $2 == "partial"' "$TMP/trials.txt" 2>/dev/null | wc -l)
  extra=""
  if grep -q "^$kind " "$TMP/trials.txt" 2>/dev/null; then
    extra=$(awk -v k="$kind" -v n="$CHANGES" '$1 == k {
        if ($3 == "after_end") d++; else if ($4 == 0) a++; else if ($4 < n) b++; else c++ }
      END { printf "%d / %d / %d / %d", a, b, c, d }' "$TMP/trials.txt")
    [ "$kind" = disconnect_quiet ] && extra="$extra (no NOTICEs: changes done unknown, counted as before the 1st)"
  fi
  printf '%-16s %6d %9d %6d %8d   %s\n' "$kind" "${TRIALS[$kind]}" "${COMPLETE[$kind]:-0}" "${NONE[$kind]:-0}" "$local_partial" "$extra"
done
echo
echo "timings (ms):"
echo "  clean apply of 2.0.0:                    $(stats "$TMP/clean.ms")"
for kind in kill9 immediate cancel disconnect disconnect_quiet; do
  [ -f "$TMP/back_$kind.ms" ] && echo "  $kind: interruption -> client done and cluster answering: $(stats "$TMP/back_$kind.ms")"
  [ -f "$TMP/gone_$kind.ms" ] && echo "  $kind: interruption -> backend gone:     $(stats "$TMP/gone_$kind.ms")"
done
for mode in direct pgbouncer; do
  [ -f "$TMP/race_$mode.ms" ] && echo "  race $mode ($APPLIERS appliers, all done): $(stats "$TMP/race_$mode.ms"); most seen waiting on the lock per round: $(stats "$TMP/race_$mode.waiting")"
done
cat "$TMP"/reapply_*.ms >"$TMP/reapply_all.ms" 2>/dev/null || true
echo "  re-apply after a trial:                  $(stats "$TMP/reapply_all.ms"); outcomes: $(cat "$TMP"/reapply_*.outcomes 2>/dev/null | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')"
sed 's/^/  phase /' "$TMP/phases.txt"
echo "  whole run: $((T_END - T_START)) ms"
echo
echo "no-op applies recorded as deployment rows in the races: $NOOP_ROWS"
echo "races not ending with exactly one apply: $RACE_BAD"
echo "failed or incomplete re-applies: $FAILURES"
echo "partial states found: $PARTIAL"
if (( PARTIAL > 0 || FAILURES > 0 || RACE_BAD > 0 )); then
  echo "FAILED (kept $TMP; see $TMP/partial.txt)"; exit 1
fi
echo "OK: zero partial states"
