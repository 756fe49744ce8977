#!/usr/bin/env bash
# End-to-end tests of phases (docs/online.md): online changes and commit
# boundaries run after commit by the background worker, on a real cluster
# (port 5489) with PgBouncer in transaction mode (port 6489), pgbench as
# the application, kill -9 and restarts mid-phase.
# Assumes the extension is installed (scripts/setup.sh).
# Usage: pg_test/phases.sh [t_name ...]   (default: all tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${PORT:-5489}
BOUNCER_PORT=${BOUNCER_PORT:-6489}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

start_cluster phases "$PORT"
chmod 755 "$TMP"
# Crash tests need commits that survive a crash (cluster.sh turns it off for speed).
psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
start_pgbouncer 20
mkdir -p "$TMP/m" "$TMP/out"
DB_PREFIX=ph_

# apply FILE [OPTIONS] [psql args]: the report (compact JSON).
apply() {
  local file=$1 opts=${2:-'{}'}
  shift $(($# < 2 ? $# : 2))
  "${PSQL[@]}" -d "$DB" "$@" -v manifest="$(cat "$file")" -v opts="$opts" <<'SQL'
SELECT deploy.apply(:'manifest'::jsonb, :'opts'::jsonb);
SQL
}

# try SQL [psql args]: "ERROR:  CODE: message" lines (verbose), or the output.
try() {
  local sql=$1
  shift
  "${PSQL[@]}" -d "$DB" -v VERBOSITY=verbose "$@" -c "$sql" 2>&1 || true
}

# try_apply FILE [OPTIONS] [psql args]: like apply, but prints the error.
try_apply() {
  local file=$1 opts=${2:-'{}'}
  shift $(($# < 2 ? $# : 2))
  "${PSQL[@]}" -d "$DB" -v VERBOSITY=verbose "$@" -v manifest="$(cat "$file")" -v opts="$opts" 2>&1 <<'SQL' || true
SELECT deploy.apply(:'manifest'::jsonb, :'opts'::jsonb);
SQL
}

wait_phase() { q "SELECT deploy.wait('$1', '120s')"; }

# The worker's pid, once it shows in pg_stat_activity (empty after 10 s).
worker_pid() {
  local pid
  for _ in $(seq 100); do
    pid=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_deploy phase worker' LIMIT 1")
    if [ -n "$pid" ]; then echo "$pid"; return 0; fi
    sleep 0.1
  done
}

# Waits until the concurrent build of the worker is scanning the table.
wait_for_build() {
  for _ in $(seq 200); do
    [ -n "$(q "SELECT 1 FROM pg_stat_progress_create_index WHERE phase LIKE 'building%'")" ] && return 0
    sleep 0.05
  done
  echo "no concurrent build seen" >&2
  return 1
}

# big_table ROWS: table big (id, v, t) with ROWS rows, analysed.
big_table() {
  q "CREATE TABLE big (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, t text, done boolean NOT NULL DEFAULT false);
     INSERT INTO big SELECT g, 0, md5(g::text) FROM generate_series(1, $1) g; ANALYZE big;"
}

# pgbench_writes SECONDS [HOST PORT]: updates random rows of big for SECONDS
# with 4 clients, logging every transaction; prints the longest latency in ms.
pgbench_writes() {
  local secs=$1 host=${2:-$TMP/sock} port=${3:-$PORT} dir
  dir=$(mktemp -d "$TMP/bench.XXXX")
  chmod 777 "$dir"
  printf '\\set id random(1, 1000000)\nUPDATE big SET v = v + 1 WHERE id = :id;\n' >"$dir/w.sql"
  (cd "$dir" && "$PG_BIN/pgbench" -n -h "$host" -p "$port" -U postgres -c 4 -j 2 -T "$secs" -f w.sql \
    -l --log-prefix=w "$DB" >"$dir/out.txt" 2>&1)
  # Log lines: client tx latency_us script epoch epoch_us
  cat "$dir"/w.[0-9]* | awk 'BEGIN {m = 0} {if ($3 > m) m = $3} END {printf "%d\n", m / 1000}'
}

manifest() { # manifest NAME JSON: writes $TMP/m/NAME.json
  printf '%s' "$2" >"$TMP/m/$1.json"
  echo "$TMP/m/$1.json"
}

# ---------------------------------------------------------------- tests

# The lemmy pattern: a value added in one change, used two changes later, in
# two atomic phases; a failure in the second leaves the first committed and
# recorded, the second not at all; a re-apply after the fix finishes it.
t_enum_value_used_after_commit() {
  newdb
  local m r
  m=$(manifest enum1 '{"project": "forum", "version": "1.0.0", "changes": [
    {"id": "types", "sql": "CREATE TYPE post_state AS ENUM ('\''open'\''); CREATE TABLE posts (id int PRIMARY KEY, s post_state NOT NULL DEFAULT '\''open'\''); INSERT INTO posts VALUES (1), (2);"},
    {"id": "add_value", "sql": "ALTER TYPE post_state ADD VALUE '\''closed'\''"},
    {"id": "other", "sql": "CREATE TABLE tags (id int)"},
    {"id": "use_value", "commit_before": true, "sql": "ALTER TABLE posts ALTER COLUMN s SET DEFAULT '\''closed'\''; UPDATE posts SET s = '\''closed'\'' WHERE id = 1; SELECT 1 / 0;"}]}')
  r=$(apply "$m")
  eq "$(j "$r" 'r["phases"]["steps"]')" '[{"changes": ["use_value"], "kind": "transaction", "step": 1}]' "queued step"
  eq "$(j "$r" '[c["id"] for c in r["applied"]]')" '["types", "add_value", "other"]' "main phase"
  out=$(try "SELECT deploy.wait('forum', '60s')")
  has "$out" 'ERROR: +22012: the phase of project "forum" failed at change "use_value": division by zero' "wait error"
  eq "$(q "SELECT column_default FROM information_schema.columns WHERE table_name = 'posts' AND column_name = 's'")" \
    "'open'::post_state" "second phase left nothing"
  eq "$(q "SELECT s FROM posts WHERE id = 1")" "open" "UPDATE rolled back"
  eq "$(q "SELECT string_agg(change_id, ',' ORDER BY change_id) FROM deploy.changes('forum')")" \
    "add_value,other,types" "first phase recorded"
  eq "$(q "SELECT phase_state || ' ' || phase_steps_done || '/' || phase_steps || ' ' || phase_error FROM deploy.status('forum')")" \
    "failed 0/1 use_value: 22012 division by zero" "status"
  eq "$(q "SELECT string_agg(outcome, ',' ORDER BY id) FROM deploy.history('forum')")" "applied,phase-failed" "chain"
  # The fix: the change never applied, so its SQL may change; it now runs.
  sed -i 's| SELECT 1 / 0;||' "$m"
  r=$(apply "$m")
  eq "$(j "$r" '[c["id"] for c in r["applied"]]')" '["use_value"]' "re-apply runs what was left"
  eq "$(q "SELECT s FROM posts WHERE id = 1")" "closed" "value used"
  eq "$(q "SELECT phase_state FROM deploy.status('forum')")" "superseded" "old phase superseded"
  eq "$(q "SELECT intact FROM deploy.verify_log('forum')")" "t" "chain intact"
}

# "phases": "auto" places the boundary itself and says where.
t_auto_phases_place_the_boundary() {
  newdb
  local m r
  m=$(manifest auto '{"project": "p", "version": "1.0.0", "changes": [
    {"id": "a", "sql": "CREATE TYPE k AS ENUM ('\''x'\''); CREATE TABLE t (k k)"},
    {"id": "b", "sql": "ALTER TYPE k ADD VALUE '\''y'\''"},
    {"id": "c", "sql": "INSERT INTO t VALUES ('\''y'\'')"}]}')
  out=$(try_apply "$m")
  has "$out" 'ERROR: +55P04: project "p": change "c" uses k value .y., added by change "b" in the same transaction' "refused"
  has "$out" 'HINT: +Set "commit_before": true on change "c"' "hint"
  r=$(apply "$m" '{"phases": "auto"}')
  has "$(j "$r" 'r["warnings"]')" 'change \\"c\\" starts a new phase' "said where"
  wait_phase p >/dev/null
  eq "$(q "SELECT k FROM t")" "y" "ran after commit"
}

# Bad input is refused before anything runs, each with a SQLSTATE.
t_bad_online_changes_are_refused() {
  newdb
  q "CREATE TABLE t (id int)"
  local cases=(
    '{"id": "i", "sql": "CREATE INDEX CONCURRENTLY t_i ON t (id)"}|25001|Set "online": true on change "i"'
    '{"id": "i", "sql": "CREATE INDEX CONCURRENTLY ON t (id)", "online": true}|0A000|must name its index'
    '{"id": "i", "sql": "CREATE INDEX CONCURRENTLY a ON t (id); CREATE INDEX CONCURRENTLY b ON t (id)", "online": true}|0A000|exactly one statement'
    '{"id": "i", "sql": "VACUUM t", "online": true, "repeat_until_no_rows": true}|0A000|needs an INSERT, UPDATE, DELETE or MERGE'
  )
  local c m out
  for c in "${cases[@]}"; do
    m=$(manifest bad "{\"project\": \"p\", \"version\": \"1.0.0\", \"changes\": [${c%%|*}]}")
    out=$(try_apply "$m")
    has "$out" "ERROR: +$(cut -d'|' -f2 <<<"$c"):" "${c%%|*}"
    has "$out" "$(cut -d'|' -f3 <<<"$c")" "${c%%|*}"
  done
  # Several bad online changes: one error names them all.
  m=$(manifest several '{"project": "p", "version": "1.0.0", "changes": [
    {"id": "a", "sql": "CREATE INDEX CONCURRENTLY ON t (id)", "online": true},
    {"id": "b", "sql": "CREATE TABLE x (id int); CREATE TABLE y (id int)", "online": true},
    {"id": "c", "sql": "CREATE INDEX CONCURRENTLY ON t (id)", "online": true}]}')
  out=$(try_apply "$m")
  has "$out" 'ERROR: +0A000: change "a" of project "p"' "the first"
  has "$out" 'Also refused, 2 more:' "the count of the others"
  has "$out" 'change "b" of project "p".*exactly one statement' "the second"
  has "$out" 'change "c" of project "p".*must name its index' "the third"
  m=$(manifest dep '{"project": "p", "version": "1.0.0", "changes": [
    {"id": "i", "sql": "CREATE INDEX CONCURRENTLY t_i ON t (id)", "online": true},
    {"id": "u", "sql": "CREATE TABLE u (id int)", "requires": ["i"]}]}')
  out=$(try_apply "$m")
  has "$out" 'ERROR: +23503: project "p": change "u" requires change "i", which is online' "dependency"
  eq "$(q "SELECT count(*) FROM deploy.deployments")" "0" "nothing recorded"
}

# A unique index over duplicates fails with its SQLSTATE and leaves no
# INVALID index; after fixing the data, applying again builds it.
t_failed_unique_index_leaves_nothing() {
  newdb
  q "CREATE TABLE accounts (id int, email text); INSERT INTO accounts VALUES (1, 'a'), (2, 'a'), (3, 'b')"
  local m out
  m=$(manifest uq '{"project": "acc", "version": "1.0.0", "changes": [
    {"id": "uq", "sql": "CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email)", "online": true}]}')
  apply "$m" >/dev/null
  out=$(try "SELECT deploy.wait('acc', '60s')")
  has "$out" 'ERROR: +23505: the phase of project "acc" failed at change "uq": could not create unique index' "failed"
  eq "$(q "SELECT count(*) FROM pg_index WHERE indrelid = 'accounts'::regclass")" "0" "no index left"
  eq "$(q "SELECT string_agg(event, ',' ORDER BY id) FROM deploy.phase_events")" "started,failed" "events"
  q "DELETE FROM accounts WHERE id = 2"
  apply "$m" >/dev/null
  wait_phase acc >/dev/null
  eq "$(q "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email_key'::regclass")" "t" "built"
  eq "$(q "SELECT string_agg(outcome, ',' ORDER BY id) FROM deploy.history('acc')")" \
    "applied,phase-failed,applied,phase" "history"
  eq "$(q "SELECT count(*) FROM deploy.drift('acc')")" "0" "no drift"
}

# CREATE INDEX CONCURRENTLY on 1M rows while pgbench writes to the table:
# no write waits anywhere near lock_timeout; the index ends valid. Then the
# same through PgBouncer in transaction mode.
t_concurrent_index_under_writes() {
  newdb
  big_table 1000000
  local m r worst via
  for via in direct bouncer; do
    m=$(manifest cic '{"project": "shop", "version": "1.0.'"$([ $via = direct ] && echo 0 || echo 1)"'", "defaults": {"lock_timeout": "1s"}, "changes": [
      {"id": "idx_t", "sql": "CREATE INDEX CONCURRENTLY big_t_idx ON big (t)", "online": true}'"$([ $via = bouncer ] && echo ', {"id": "idx_v", "sql": "CREATE INDEX CONCURRENTLY big_v_idx ON big (v)", "online": true}')"']}')
    pgbench_writes 8 >"$TMP/worst.$via" &
    sleep 1
    if [ $via = direct ]; then
      apply "$m" >/dev/null
      r=$(wait_phase shop)
    else
      apply "$m" '{}' -h 127.0.0.1 -p "$BOUNCER_PORT" >/dev/null
      r=$("${PSQL[@]}" -h 127.0.0.1 -p "$BOUNCER_PORT" -d "$DB" -c "SELECT deploy.wait('shop', '120s')")
    fi
    wait
    worst=$(cat "$TMP/worst.$via")
    echo "# $via: longest write ${worst} ms during the build"
    eq "$(j "$r" 'r["state"]')" "done" "$via: phase done"
    [ "$worst" -lt 1000 ] || { echo "$via: a write waited ${worst} ms (lock_timeout 1s)" >&2; return 1; }
  done
  eq "$(q "SELECT string_agg(indexrelid::regclass || ':' || indisvalid, ',' ORDER BY 1) FROM pg_index WHERE indrelid = 'big'::regclass")" \
    "big_pkey:true,big_t_idx:true,big_v_idx:true" "valid indexes"
  eq "$(q "SELECT phase_state FROM deploy.status('shop')")" "done" "status"
}

# kill -9 of the worker mid-build (the postmaster restarts every backend):
# the next deploy.wait starts a worker, which drops the INVALID index and
# builds it again; exactly one valid index; the history says what happened.
t_killed_worker_is_resumed() {
  newdb
  big_table 2000000
  local m pid r
  m=$(manifest kill '{"project": "k", "version": "1.0.0", "changes": [
    {"id": "idx", "sql": "CREATE INDEX CONCURRENTLY big_t_idx ON big (t, id)", "online": true}]}')
  apply "$m" >/dev/null
  pid=$(worker_pid)
  wait_for_build
  kill -9 "$pid"
  wait_for_recovery
  eq "$(q "SELECT state FROM deploy.phase_queue")" "running" "left running"
  r=$(wait_phase k)
  eq "$(j "$r" 'r["state"]')" "done" "finished"
  eq "$(q "SELECT count(*) || ':' || bool_and(indisvalid) FROM pg_index WHERE indexrelid::regclass::text LIKE 'big_t_idx%'")" \
    "1:true" "one valid index"
  has "$(q "SELECT string_agg(event || coalesce(' ' || message, ''), ',' ORDER BY id) FROM deploy.phase_events")" \
    '^started,started,reconciled resumed after an interruption: DropInvalidThenRun,(retry [^,]*,)*done$' "events"
  # The hash chain keeps them: the step's record carries its events. A lock
  # timeout retry is allowed (autovacuum may visit the big table after recovery).
  has "$(q "SELECT string_agg(e ->> 'event', ',') FROM deploy.deployments d, jsonb_array_elements(d.options -> 'events') e
           WHERE d.outcome = 'phase'")" '^started,started,reconciled,(retry,)*done$' "events in the chain"
  eq "$(q "SELECT intact FROM deploy.verify_log('k')")" "t" "chain intact"
}

# A server restart mid-phase: the queue survives; deploy.wait finishes it.
t_restart_mid_phase_is_resumed() {
  newdb
  big_table 2000000
  local m r
  m=$(manifest restart '{"project": "r", "version": "1.0.0", "changes": [
    {"id": "idx", "sql": "CREATE INDEX CONCURRENTLY big_t_idx ON big (t, id)", "online": true},
    {"id": "after", "sql": "CREATE TABLE after_idx (x int)", "commit_before": true}]}')
  apply "$m" >/dev/null
  worker_pid >/dev/null
  wait_for_build
  runuser -u postgres -- "$PG_BIN/pg_ctl" restart -w -m immediate -D "$TMP/data" -l "$TMP/postgres.log" >/dev/null
  wait_for_recovery
  r=$(wait_phase r)
  eq "$(j "$r" '[c["state"] for c in r["changes"]]')" '["done", "done"]' "both steps done"
  eq "$(q "SELECT count(*) || ':' || bool_and(indisvalid) FROM pg_index WHERE indrelid = 'big'::regclass AND indexrelid::regclass::text <> 'big_pkey'")" \
    "1:true" "one valid index"
  eq "$(q "SELECT to_regclass('after_idx') IS NOT NULL")" "t" "next step ran"
}

# 8 concurrent appliers of a manifest with an online phase: one phase, run once.
t_concurrent_appliers_run_the_phase_once() {
  newdb
  q "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100000)"
  local m i
  m=$(manifest race '{"project": "race", "version": "1.0.0", "changes": [
    {"id": "tbl", "sql": "CREATE TABLE r (id int)"},
    {"id": "idx", "sql": "CREATE INDEX CONCURRENTLY t_id_idx ON t (id)", "online": true,
     "verify": "SELECT indisvalid FROM pg_index WHERE indexrelid = '\''t_id_idx'\''::regclass"}]}')
  for i in $(seq 8); do apply "$m" >"$TMP/race.$i" 2>&1 & done
  wait
  eq "$(cat "$TMP"/race.* | grep -c '"outcome": "applied"')" "1" "one deployment applied"
  eq "$(cat "$TMP"/race.* | grep -c '"outcome": "no-op"')" "7" "the others are no-ops"
  wait_phase race >/dev/null
  eq "$(q "SELECT count(*) FROM deploy.phase_events WHERE event = 'started'")" "1" "started once"
  eq "$(q "SELECT count(*) FROM deploy.phase_queue")" "1" "queued once"
  eq "$(q "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_id_idx'::regclass")" "t" "index"
}

# The worker runs as the role that called apply, never as superuser.
t_worker_runs_as_the_deployer() {
  newdb
  q "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ph_deployer') THEN
       CREATE ROLE ph_deployer LOGIN; END IF; END \$\$;
     GRANT USAGE ON SCHEMA deploy TO ph_deployer;
     GRANT EXECUTE ON FUNCTION deploy.apply(jsonb, jsonb), deploy.wait(text, interval) TO ph_deployer;
     GRANT CREATE ON SCHEMA public TO ph_deployer;"
  local m out
  m=$(manifest role '{"project": "role", "version": "1.0.0", "changes": [
    {"id": "tbl", "sql": "CREATE TABLE mine (id int)"},
    {"id": "sys", "sql": "ALTER SYSTEM SET work_mem = '\''8MB'\''", "online": true}]}')
  apply "$m" '{}' -U ph_deployer >/dev/null
  out=$(try "SELECT deploy.wait('role', '60s')" -U ph_deployer)
  has "$out" 'ERROR: +42501: the phase of project "role" failed at change "sys": (permission denied|must be superuser)' "denied"
  eq "$(q "SELECT tableowner FROM pg_tables WHERE tablename = 'mine'")" "ph_deployer" "main phase as the deployer"
  eq "$(q "SELECT run_as FROM deploy.phase_queue")" "ph_deployer" "recorded"
}

# A batched backfill of 1M rows while pgbench writes: no transaction of the
# worker lasts more than a few seconds.
t_batched_backfill_keeps_transactions_short() {
  newdb
  big_table 1000000
  local m longest
  m=$(manifest fill '{"project": "fill", "version": "1.0.0", "changes": [
    {"id": "fill", "sql": "UPDATE big SET done = true WHERE id IN (SELECT id FROM big WHERE NOT done LIMIT 20000)",
     "online": true, "repeat_until_no_rows": true, "repeat_pause": "20ms"}]}')
  ( while true; do
      q "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start) * 1000)::int, 0)
           FROM pg_stat_activity WHERE backend_type = 'pg_deploy phase worker'" || true
      sleep 0.1
    done ) >"$TMP/fill.samples" 2>/dev/null &
  local sampler=$!
  pgbench_writes 10 >/dev/null &
  apply "$m" >/dev/null
  wait_phase fill >/dev/null
  kill "$sampler"
  wait
  longest=$(sort -n "$TMP/fill.samples" | tail -1)
  echo "# longest worker transaction: ${longest} ms; rounds: $(q "SELECT rounds FROM deploy.phase_queue")"
  [ "$longest" -lt 3000 ] || { echo "a worker transaction lasted ${longest} ms" >&2; return 1; }
  eq "$(q "SELECT count(*) FROM big WHERE NOT done")" "0" "all rows"
  eq "$(q "SELECT rows_affected FROM deploy.phase_queue")" "1000000" "rows counted"
}

# While a phase runs, another manifest waits; the same one is a no-op; and
# through stops after a given change.
t_unfinished_phase_and_through() {
  newdb
  local m m2 out r
  m=$(manifest slow '{"project": "s", "version": "1.0.0", "changes": [
    {"id": "sleep", "sql": "SELECT pg_sleep(3)", "online": true}]}')
  apply "$m" >/dev/null
  # At once, before a worker has claimed the phase.
  has "$(q "SELECT deploy.phase_status('s') ->> 'state'")" '^(pending|running)$' "status right after commit"
  sleep 0.5
  r=$(apply "$m")
  eq "$(j "$r" 'r["outcome"]')" "no-op" "same manifest"
  has "$(j "$r" 'r["warnings"]')" "still (pending|running)" "said"
  m2=$(manifest slow2 '{"project": "s", "version": "1.1.0", "changes": [
    {"id": "sleep", "sql": "SELECT pg_sleep(3)", "online": true},
    {"id": "more", "sql": "CREATE TABLE more (id int)"}]}')
  out=$(try_apply "$m2")
  has "$out" 'ERROR: +55006: project "s" has an unfinished phase' "blocked"
  # Told to wait, apply waits for the phase to end, then deploys.
  r=$(apply "$m2" '{"wait_for_phase": true}')
  eq "$(j "$r" '[c["id"] for c in r["applied"]]')" '["more"]' "waited for the phase"
  eq "$(q "SELECT state FROM deploy.phase_queue")" "done" "the phase had ended"
  m2=$(manifest through '{"project": "s", "version": "1.2.0", "changes": [
    {"id": "sleep", "sql": "SELECT pg_sleep(3)", "online": true},
    {"id": "more", "sql": "CREATE TABLE more (id int)"},
    {"id": "most", "sql": "CREATE TABLE most (id int)"},
    {"id": "last", "sql": "CREATE TABLE last (id int)"}]}')
  r=$(apply "$m2" '{"through": "most"}')
  eq "$(j "$r" '[c["id"] for c in r["applied"]]')" '["most"]' "through"
  eq "$(q "SELECT to_regclass('last') IS NULL")" "t" "later change left"
}

# No background worker slot free (max_worker_processes): the phase stays
# pending and says so; deploy.status and deploy.wait start it once one is.
t_no_worker_slot_waits_for_one() {
  newdb
  q "ALTER SYSTEM SET max_worker_processes = 1"
  q "ALTER SYSTEM SET max_logical_replication_workers = 0"
  q "ALTER SYSTEM SET max_parallel_workers = 0"
  runuser -u postgres -- "$PG_BIN/pg_ctl" restart -w -m fast -D "$TMP/data" -l "$TMP/postgres.log" >/dev/null
  q "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"
  local a b r
  a=$(manifest slot_a '{"project": "a", "version": "1.0.0", "changes": [{"id": "sleep", "sql": "SELECT pg_sleep(4)", "online": true}]}')
  b=$(manifest slot_b '{"project": "b", "version": "1.0.0", "changes": [{"id": "idx", "sql": "CREATE INDEX CONCURRENTLY t_id_idx ON t (id)", "online": true}]}')
  apply "$a" >/dev/null
  worker_pid >/dev/null
  apply "$b" >/dev/null
  has "$(q "SELECT deploy.phase_status('b') ->> 'worker'")" "^not started: no background worker slot is free" "said"
  has "$(q "SELECT phase_state || ' ' || phase_worker FROM deploy.status('b')")" "^pending not started: no background worker slot" "status"
  r=$(wait_phase b)
  eq "$(j "$r" 'r["state"]')" "done" "ran once a slot was free"
  q "ALTER SYSTEM RESET max_worker_processes"
  q "ALTER SYSTEM RESET max_logical_replication_workers"
  q "ALTER SYSTEM RESET max_parallel_workers"
  runuser -u postgres -- "$PG_BIN/pg_ctl" restart -w -m fast -D "$TMP/data" -l "$TMP/postgres.log" >/dev/null
}

# Without a worker slot, a client session runs the phase itself through
# deploy.phase_client, with the same bookkeeping and the one-runner rule.
t_client_runs_the_phase_itself() {
  newdb
  q "ALTER SYSTEM SET max_worker_processes = 1"
  q "ALTER SYSTEM SET max_logical_replication_workers = 0"
  q "ALTER SYSTEM SET max_parallel_workers = 0"
  runuser -u postgres -- "$PG_BIN/pg_ctl" restart -w -m fast -D "$TMP/data" -l "$TMP/postgres.log" >/dev/null
  q "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)"
  local a b out
  a=$(manifest cl_a '{"project": "a", "version": "1.0.0", "changes": [{"id": "sleep", "sql": "SELECT pg_sleep(6)", "online": true}]}')
  b=$(manifest cl_b '{"project": "b", "version": "1.0.0", "changes": [
    {"id": "idx", "sql": "CREATE INDEX CONCURRENTLY t_id_idx ON t (id)", "online": true},
    {"id": "after", "sql": "CREATE TABLE after_idx (id int)", "commit_before": true}]}')
  apply "$a" >/dev/null
  worker_pid >/dev/null
  apply "$b" >/dev/null
  # One session: claim, take the online step, run it, report, run the next step.
  out=$("${PSQL[@]}" -d "$DB" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"claim\"}') ->> 'claimed'" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"next\"}') ->> 'sql'" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"claim\"}') ->> 'claimed'" \
    -c "CREATE INDEX CONCURRENTLY t_id_idx ON t (id)" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"done\", \"rounds\": 1}') ->> 'recorded'" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"next\"}') ->> 'kind'" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"run\"}') ->> 'done'" \
    -c "SELECT deploy.phase_client('b', '{\"do\": \"next\"}') ->> 'state'")
  eq "$out" "$(printf 'true\nCREATE INDEX CONCURRENTLY t_id_idx ON t (id)\ntrue\ndone\ntransaction\ntrue\ndone')" "protocol"
  eq "$(q "SELECT phase_state || ' ' || phase_steps_done || '/' || phase_steps FROM deploy.status('b')")" "done 2/2" "status"
  eq "$(q "SELECT string_agg(outcome, ',' ORDER BY id) FROM deploy.history('b')")" "applied,phase,phase" "recorded"
  # Another session cannot take over a phase a live session runs.
  apply "$(manifest cl_c '{"project": "b", "version": "1.1.0", "changes": [
    {"id": "idx2", "sql": "CREATE INDEX CONCURRENTLY t_id2_idx ON t (id)", "online": true}]}')" >/dev/null
  ( "${PSQL[@]}" -d "$DB" -c "SELECT deploy.phase_client('b', '{\"do\": \"claim\"}')" -c "SELECT pg_sleep(3)" >/dev/null ) &
  sleep 1
  eq "$(q "SELECT deploy.phase_client('b', '{\"do\": \"claim\"}') ->> 'claimed'")" "false" "one runner"
  out=$(try "SELECT deploy.phase_client('b', '{\"do\": \"next\"}')")
  has "$out" 'ERROR: +55000: this session does not run the phase of project "b"' "not the runner"
  wait
  q "ALTER SYSTEM RESET max_worker_processes"
  q "ALTER SYSTEM RESET max_logical_replication_workers"
  q "ALTER SYSTEM RESET max_parallel_workers"
  runuser -u postgres -- "$PG_BIN/pg_ctl" restart -w -m fast -D "$TMP/data" -l "$TMP/postgres.log" >/dev/null
}

run_tests phases-e2e "$@"
