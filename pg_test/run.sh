#!/usr/bin/env bash
# End-to-end tests of pg_deploy against a real cluster (port 5498) with
# pgbouncer in transaction mode in front of it (port 6498).
# Assumes the extension is installed (scripts/setup.sh).
# Usage: pg_test/run.sh [t_name ...]   (default: all tests)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${PORT:-5498}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
BOUNCER_PORT=${BOUNCER_PORT:-6498}

start_cluster e2e "$PORT"

start_pgbouncer 20

mkdir -p "$TMP/m" "$TMP/out"
bookings_examples "$TMP/examples"

# ---------------------------------------------------------------- helpers

DB_PREFIX=e2e_

# apply FILE [OPTIONS] [extra psql args]: print the report (compact JSON).
apply() {
  local file=$1 opts=${2:-'{}'}
  shift $(( $# < 2 ? $# : 2 ))
  "${PSQL[@]}" -d "$DB" "$@" -v manifest="$(cat "$file")" -v opts="$opts" <<'SQL'
SELECT deploy.apply(:'manifest'::jsonb, :'opts'::jsonb);
SQL
}

# apply_err SQLSTATE FILE [OPTIONS]: the apply must fail with SQLSTATE; prints the error.
apply_err() {
  local state=$1 file=$2 opts=${3:-'{}'} out
  if out=$("${PSQL[@]}" -d "$DB" -v manifest="$(cat "$file")" -v opts="$opts" 2>&1 <<'SQL'
\set VERBOSITY verbose
SELECT deploy.apply(:'manifest'::jsonb, :'opts'::jsonb);
SQL
  ); then
    echo "expected SQLSTATE $state, but apply succeeded: $out" >&2; return 1
  fi
  if ! grep -q "^ERROR:  $state:" <<<"$out"; then
    echo "expected SQLSTATE $state, got: $out" >&2; return 1
  fi
  printf '%s\n' "$out"
}


# jedit IN OUT STMT: write manifest IN to OUT after running a python statement on `m`.
jedit() {
  python3 -c 'import json, sys
m = json.load(open(sys.argv[1])); exec(sys.argv[3]); json.dump(m, open(sys.argv[2], "w"))' "$@"
}


# sql_sum FILE ID: "sha256:<hex>" of a change's sql.
sql_sum() {
  python3 -c 'import hashlib, json, sys
c = next(c for c in json.load(open(sys.argv[1]))["changes"] if c["id"] == sys.argv[2])
print("sha256:" + hashlib.sha256(c["sql"].encode()).hexdigest())' "$1" "$2"
}

n_changes() { python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["changes"]))' "$1"; }

# A few small versioned changes; the sleep widens the race between appliers.
write_race_manifest() {
  cat >"$1" <<'JSON'
{"project": "race", "version": "1.0.0",
 "changes": [
   {"id": "r1", "sql": "CREATE TABLE race_a (id int PRIMARY KEY);"},
   {"id": "r2", "sql": "SELECT pg_sleep(0.5); CREATE TABLE race_b (id int REFERENCES race_a);", "requires": ["r1"]},
   {"id": "r3", "sql": "CREATE INDEX race_b_id ON race_b (id);", "requires": ["r2"]},
   {"id": "r4", "sql": "INSERT INTO race_a VALUES (1), (2), (3);", "requires": ["r1"]}
 ]}
JSON
}

# race HOST PORT: 8 appliers at once; exactly one applies, seven see a no-op.
race() {
  local host=$1 port=$2 m=$TMP/m/race.json i pids=() fails=0
  write_race_manifest "$m"
  for i in 1 2 3 4 5 6 7 8; do
    apply "$m" '{}' -h "$host" -p "$port" >"$TMP/out/$DB.$i" 2>"$TMP/out/$DB.$i.err" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      fails=$((fails + 1)); cat "$TMP/out/$DB.$((i + 1)).err" >&2
    fi
  done
  eq "$fails" 0 "appliers that failed"
  local outcomes
  outcomes=$(for i in 1 2 3 4 5 6 7 8; do j "$(cat "$TMP/out/$DB.$i")" 'r["outcome"]'; done | sort | uniq -c | awk '{print $2 "=" $1}' | paste -sd' ')
  eq "$outcomes" "applied=1 no-op=7" "outcomes"
  eq "$(q "SELECT string_agg(change_id || '=' || n, ' ' ORDER BY change_id)
           FROM (SELECT change_id, count(*) n FROM deploy.change_log WHERE project = 'race' GROUP BY 1) s")" \
     "r1=1 r2=1 r3=1 r4=1" "change_log rows per change"
  eq "$(q "SELECT count(*) FROM race_a")" 3 "rows inserted once"
}

# ---------------------------------------------------------------- tests

t_reapply_is_noop() {
  newdb
  local r n
  r=$(apply "$EXAMPLES/v1.json")
  eq "$(j "$r" 'r["outcome"]')" applied "first outcome"
  n=$(n_changes "$EXAMPLES/v1.json")
  eq "$(j "$r" 'len(r["applied"])')" "$n" "first: applied count"
  r=$(apply "$EXAMPLES/v1.json")
  eq "$(j "$r" 'r["outcome"]')" no-op "second outcome"
  eq "$(j "$r" 'r["applied"]')" "[]" "second: applied"
  eq "$(j "$r" 'r["rerun"]')" "[]" "second: rerun"
  eq "$(j "$r" 'len(r["skipped"])')" "$n" "second: skipped count"
}

t_checksum_mismatch() {
  newdb
  local m=$TMP/m/changed.json err r
  apply "$EXAMPLES/v1.json" >/dev/null
  jedit "$EXAMPLES/v1.json" "$m" '
c = next(c for c in m["changes"] if c["id"] == "0004-customers")
c["sql"] = c["sql"].replace("full_name  text", "full_name text")'
  err=$(apply_err 23000 "$m")
  has "$err" "$(sql_sum "$EXAMPLES/v1.json" 0004-customers)" "applied checksum in message"
  has "$err" "$(sql_sum "$m" 0004-customers)" "manifest checksum in message"
  has "$err" '0004-customers' "change id in message"
  r=$(apply "$m" '{"accept_changed": ["0004-customers"], "reason": "typo fix"}')
  eq "$(j "$r" 'r["accepted"]')" '["0004-customers"]' "accepted"
  eq "$(j "$r" 'r["applied"]')" "[]" "nothing re-run"
  eq "$(q "SELECT count(*) FROM deploy.change_log WHERE change_id = '0004-customers' AND action = 'accepted'")" 1 "accepted logged"
  # Once accepted, the new text is the applied one.
  r=$(apply "$m")
  eq "$(j "$r" 'r["outcome"]')" no-op "after accept"
}

t_failure_leaves_nothing() {
  newdb
  local m=$TMP/m/fail.json err
  cat >"$m" <<'JSON'
{"project": "failing", "version": "1.0.0",
 "changes": [
   {"id": "f1", "sql": "CREATE TABLE f1 (id int);"},
   {"id": "f2", "sql": "CREATE TABLE f2 (id int);"},
   {"id": "f3-divide", "sql": "CREATE TABLE f3 (id int);\nSELECT 1/0;"}
 ]}
JSON
  err=$(apply_err 22012 "$m")
  has "$err" 'f3-divide' "change id in message"
  has "$err" 'failing' "project in message"
  has "$err" 'line 2, column [0-9]+' "line/column in message"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname IN ('f1', 'f2', 'f3')")" 0 "objects left"
  eq "$(q "SELECT count(*) FROM deploy.status('failing')")" 0 "status rows"
  eq "$(q "SELECT count(*) FROM deploy.deployments")" 0 "deployments rows"
}

t_rollback_leaves_nothing() {
  newdb
  "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$EXAMPLES/v1.json")" >/dev/null <<'SQL'
BEGIN;
SELECT deploy.apply(:'manifest'::jsonb);
ROLLBACK;
SQL
  eq "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'bookings'")" 0 "schema bookings"
  eq "$(q "SELECT count(*) FROM deploy.deployments")" 0 "deployments rows"
  eq "$(q "SELECT count(*) FROM deploy.change_log")" 0 "change_log rows"
  eq "$(q "SELECT count(*) FROM deploy.status()")" 0 "status rows"
}

t_guc_restore() {
  newdb
  local m=$TMP/m/guc.json out
  cat >"$m" <<'JSON'
{"project": "guc", "version": "1.0.0",
 "defaults": {"statement_timeout": "45s", "lock_timeout": "3s"},
 "changes": [
   {"id": "g1", "sql": "SET search_path = elsewhere; SET lock_timeout = '1s'; CREATE TABLE t (x int);"}
 ]}
JSON
  q "CREATE SCHEMA elsewhere;"
  out=$("${PSQL[@]}" -d "$DB" -v manifest="$(cat "$m")" 2>"$TMP/out/guc.err" <<'SQL'
SET search_path = public;
SET lock_timeout = '7s';
SELECT deploy.apply(:'manifest'::jsonb) IS NOT NULL;
SHOW search_path;
SHOW lock_timeout;
SHOW statement_timeout;
SQL
  ) || { cat "$TMP/out/guc.err" >&2; return 1; }
  eq "$(paste -sd' ' <<<"$out")" "t public 7s 0" "session GUCs after apply"
  eq "$(q "SELECT to_regclass('elsewhere.t') IS NOT NULL")" t "table created in elsewhere"
}

t_concurrent_8() {
  newdb
  race "$PGHOST" "$PGPORT"
}

t_concurrent_8_pgbouncer() {
  newdb
  race 127.0.0.1 "$BOUNCER_PORT"
}

t_nowait_lock() {
  newdb
  local m=$TMP/m/nowait.json a_pid t0 t1 err
  cat >"$m" <<'JSON'
{"project": "nowait", "version": "1.0.0",
 "changes": [{"id": "n1", "sql": "CREATE TABLE n1 (id int);"}]}
JSON
  PGAPPNAME=nowait_a "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$m")" >"$TMP/out/nowait_a" 2>&1 <<'SQL' &
BEGIN;
SELECT deploy.apply(:'manifest'::jsonb) IS NOT NULL;
SELECT pg_sleep(3);
COMMIT;
SQL
  a_pid=$!
  # Wait until session A sleeps, i.e. holds the project lock inside its transaction.
  for _ in $(seq 100); do
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'nowait_a' AND query LIKE '%pg_sleep(3)%'")" = 1 ] && break
    sleep 0.05
  done
  t0=$(date +%s%N)
  err=$(apply_err 55P03 "$m" '{"wait": false}')
  t1=$(date +%s%N)
  if (( (t1 - t0) / 1000000 > 2000 )); then
    echo "wait=false took $(( (t1 - t0) / 1000000 )) ms: it waited for the lock" >&2; return 1
  fi
  # A's first deployment is creating the project: its row is not visible yet.
  has "$err" 'DETAIL:  Held by a session that is creating the project' "the holder is described"
  wait "$a_pid" || { cat "$TMP/out/nowait_a" >&2; return 1; }
  eq "$(q "SELECT count(*) FROM deploy.deployments WHERE project = 'nowait'")" 1 "deployments"
}

t_restart_between_applies() {
  newdb
  local r
  r=$(apply "$EXAMPLES/v1.json")
  eq "$(j "$r" 'r["outcome"]')" applied "v1 outcome"
  bash "$ROOT/scripts/cluster.sh" restart "$TMP"
  r=$(apply "$EXAMPLES/v2.json")
  eq "$(j "$r" 'r["outcome"]')" applied "v2 outcome"
  eq "$(j "$r" 'r["previous_version"]')" 1.0.0 "previous_version"
  eq "$(j "$r" 'sorted(c["id"] for c in r["applied"])')" \
     '["0007-customer-phone", "0008-booking-notes", "0009-payments"]' "v2 applied"
  eq "$(j "$r" '[c["id"] for c in r["rerun"]]')" '["view-upcoming"]' "v2 rerun"
  eq "$(q "SELECT version FROM deploy.status('bookings')")" 1.1.0 "status version"
  eq "$(q "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'bookings' AND table_name = 'upcoming' AND column_name = 'paid'")" 1 "view updated"
}

t_duplicate_id() {
  newdb
  local m=$TMP/m/dup.json err
  cat >"$m" <<'JSON'
{"project": "dup", "version": "1.0.0",
 "changes": [{"id": "a", "sql": "SELECT 1;"}, {"id": "a", "sql": "SELECT 2;"}]}
JSON
  err=$(apply_err 23505 "$m")
  has "$err" 'changes\[1\]\.id' "path in message"
}

t_unknown_key() {
  newdb
  local m=$TMP/m/unknown.json err
  cat >"$m" <<'JSON'
{"project": "unk", "version": "1.0.0",
 "changes": [{"id": "a", "sql": "SELECT 1;", "repeatible": true}]}
JSON
  err=$(apply_err 22023 "$m")
  has "$err" 'repeatible' "key named in message"
}

t_given_checksum_wrong() {
  newdb
  local m=$TMP/m/sum.json
  cat >"$m" <<'JSON'
{"project": "sum", "version": "1.0.0",
 "changes": [{"id": "a", "sql": "SELECT 1;",
              "checksum": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}
JSON
  apply_err 22000 "$m" >/dev/null
}

t_requires_later_id() {
  newdb
  local m=$TMP/m/req.json
  cat >"$m" <<'JSON'
{"project": "req", "version": "1.0.0",
 "changes": [{"id": "a", "sql": "SELECT 1;", "requires": ["b"]},
             {"id": "b", "sql": "SELECT 2;"}]}
JSON
  apply_err 23503 "$m" >/dev/null
}

# hold_access_share SECONDS: a reader that holds ACCESS SHARE on table hot, in the background.
hold_access_share() {
  PGAPPNAME=reader "${PSQL[@]}" -d "$DB" >"$TMP/out/$DB.reader" 2>&1 <<SQL &
BEGIN;
SELECT count(*) FROM hot;
SELECT pg_sleep($1);
COMMIT;
SQL
  READER=$!
  for _ in $(seq 100); do
    [ "$(q "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'reader' AND l.relation = 'hot'::regclass AND l.granted")" = 1 ] && return 0
    sleep 0.05
  done
  echo "reader never took its lock" >&2; return 1
}

# A deployment needing ACCESS EXCLUSIVE behind a long reader waits outside the
# lock queue (it takes the lock only when free): a third session's SELECT,
# started while apply waits, is not held up, and apply succeeds once the reader is gone.
t_lock_safe_retry() {
  newdb
  local m=$TMP/m/lock.json r apply_pid t0 t1 waited=0
  q "CREATE TABLE hot (id int); INSERT INTO hot SELECT generate_series(1, 1000);"
  cat >"$m" <<'JSON'
{"project": "lock", "version": "1.0.0",
 "defaults": {"lock_timeout": "200ms", "lock_retries": 30},
 "changes": [{"id": "l1", "sql": "ALTER TABLE hot ADD COLUMN note text;"}]}
JSON
  hold_access_share 3
  sleep 0.3 # the reader's transaction is now older than lock_timeout: a long holder
  PGAPPNAME=deployer apply "$m" >"$TMP/out/lock_apply" 2>"$TMP/out/lock_apply.err" &
  apply_pid=$!
  # Until apply has found the table busy (its first NOTICE), then a read by a third session.
  for _ in $(seq 200); do
    grep -q 'table is busy' "$TMP/out/lock_apply.err" && { waited=1; break; }
    sleep 0.01
  done
  eq "$waited" 1 "apply found the table busy"
  eq "$(q "SELECT count(*) FROM pg_locks WHERE relation = 'hot'::regclass AND NOT granted")" 0 "apply is not in the lock queue"
  # The read's own round trip (psql's \timing, the connection not counted): one
  # queued behind the deployment's lock request would wait out its 200 ms timeout.
  local read ms
  read=$("${PSQL[@]}" -d "$DB" -c '\timing on' -c "SELECT count(*) FROM hot")
  eq "$(head -1 <<<"$read")" 1000 "third session's read"
  ms=$(sed -n 's/^Time: \([0-9]*\).*/\1/p' <<<"$read")
  echo "third session's SELECT took ${ms} ms"
  if (( ms >= 150 )); then
    echo "the SELECT waited ${ms} ms behind the deployment" >&2; return 1
  fi
  wait "$READER"
  wait "$apply_pid" || { cat "$TMP/out/lock_apply.err" >&2; return 1; }
  r=$(cat "$TMP/out/lock_apply")
  eq "$(j "$r" 'r["outcome"]')" applied "outcome"
  if (( $(j "$r" 'r["applied"][0]["lock_retries"]') < 1 )); then echo "no retries reported: $r" >&2; return 1; fi
  has "$(cat "$TMP/out/lock_apply.err")" 'change "l1": table is busy: pid [0-9]+ \(AccessShareLock\) on hot conflicts with AccessExclusiveLock, in a long-running transaction; retry 1 of 30 when it is free' "retry NOTICE"
  eq "$(q "SELECT lock_retries > 0 FROM deploy.change_log WHERE change_id = 'l1'")" t "retries recorded"
  eq "$(q "SELECT count(*) FROM information_schema.columns WHERE table_name = 'hot' AND column_name = 'note'")" 1 "column added"
}

# Behind a long holder, apply waits outside the lock queue between attempts
# (polling pg_locks), so the application's queries queue behind it only while
# it actually asks for the lock: about two lock_timeouts, not one per retry.
t_waits_outside_the_lock_queue() {
  newdb
  local m=$TMP/m/outside.json queued=0 samples=0 apply_pid
  q "CREATE TABLE hot (id int); INSERT INTO hot SELECT generate_series(1, 1000);"
  cat >"$m" <<'JSON'
{"project": "outside", "version": "1.0.0",
 "defaults": {"lock_timeout": "300ms", "lock_retries": 20},
 "changes": [{"id": "o1", "sql": "ALTER TABLE hot ADD COLUMN note text;"}]}
JSON
  hold_access_share 4
  apply "$m" >"$TMP/out/outside" 2>"$TMP/out/outside.err" &
  apply_pid=$!
  while kill -0 "$apply_pid" 2>/dev/null; do
    samples=$((samples + 1))
    [ "$(q "SELECT count(*) FROM pg_locks WHERE relation = 'hot'::regclass AND NOT granted")" = 1 ] && queued=$((queued + 1))
    sleep 0.05
  done
  wait "$apply_pid" || { cat "$TMP/out/outside.err" >&2; return 1; }
  wait "$READER"
  echo "# in the lock queue in $queued of $samples samples (50 ms apart) over a 4 s hold"
  eq "$(j "$(cat "$TMP/out/outside")" 'r["outcome"]')" applied "applied after the holder left"
  (( queued * 50 <= 1000 )) || { echo "queued about $((queued * 50)) ms" >&2; return 1; }
}

# With its retries used up, apply fails naming the change, the lock, the table and who holds it.
t_lock_retries_exhausted() {
  newdb
  local m=$TMP/m/lock2.json err
  q "CREATE TABLE hot (id int);"
  cat >"$m" <<'JSON'
{"project": "lock2", "version": "1.0.0",
 "changes": [{"id": "l2-widen", "sql": "SELECT 1;\nALTER TABLE hot ADD COLUMN note text;",
              "lock_timeout": "100ms", "lock_retries": 2}]}
JSON
  hold_access_share 3
  err=$(apply_err 55P03 "$m")
  wait "$READER"
  has "$err" 'change "l2-widen" of project "lock2" failed at line 2, column 1: canceling statement due to lock timeout' "message"
  has "$err" 'Waited for AccessExclusiveLock on hot \(lock_timeout 100ms, 2 retries\); held by: pid [0-9]+ \(AccessShareLock, application "reader"' "detail"
  has "$err" 'HINT:.*lock_retries' "hint"
  eq "$(q "SELECT count(*) FROM deploy.deployments")" 0 "no deployment recorded"
}

# deploy.plan reports and proves, and leaves nothing behind in a committed session.
t_plan_leaves_no_trace() {
  newdb
  local out
  out=$("${PSQL[@]}" -d "$DB" -v manifest="$(cat "$EXAMPLES/v1.json")" <<'SQL'
SET search_path = public;
SELECT deploy.plan(:'manifest'::jsonb, '{"execute": true}')->'execution'->>'ok';
SHOW search_path;
SQL
  )
  eq "$(paste -sd' ' <<<"$out")" "true public" "plan ran the changes; search_path kept"
  eq "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'bookings'")" 0 "objects left by plan"
  eq "$(q "SELECT count(*) FROM deploy.deployments") $(q "SELECT count(*) FROM deploy.projects")" "0 0" "history left by plan"
}

# as ROLE SQL: run SQL in $DB as another role; prints rows, or the error.
as_role() { "${PSQL[@]}" -v VERBOSITY=verbose -U "$1" -d "$DB" -c "$2" 2>&1; }

# A role granted EXECUTE on apply deploys with its own privileges and no more;
# history is written for it but cannot be touched by it; edits by the owner show.
t_least_privilege() {
  newdb
  local dep=dep_$$ nobody=nobody_$$ m=$TMP/m/priv.json out
  q "CREATE ROLE $dep LOGIN; CREATE ROLE $nobody LOGIN;
     GRANT CREATE ON DATABASE $DB TO $dep;
     GRANT USAGE ON SCHEMA deploy TO $dep;
     GRANT EXECUTE ON FUNCTION deploy.apply(jsonb, jsonb), deploy.status(text) TO $dep;
     CREATE TABLE secret (x int);"
  cat >"$m" <<'JSON'
{"project": "priv", "version": "1.0.0",
 "changes": [{"id": "a", "sql": "CREATE SCHEMA app; CREATE TABLE app.t (id int);"}]}
JSON
  out=$("${PSQL[@]}" -U "$dep" -d "$DB" -v manifest="$(cat "$m")" 2>"$TMP/out/priv.err" <<'SQL'
SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';
SELECT version FROM deploy.status('priv');
SQL
  ) || { cat "$TMP/out/priv.err" >&2; return 1; }
  eq "$(paste -sd' ' <<<"$out")" "applied 1.0.0" "apply and status as the deployer"
  eq "$(q "SELECT tableowner FROM pg_tables WHERE schemaname = 'app' AND tablename = 't'")" "$dep" "objects belong to the caller"
  eq "$(q "SELECT applied_by FROM deploy.deployments")" "$dep" "who is recorded"
  has "$(as_role "$dep" "UPDATE deploy.deployments SET applied_by = 'someone'")" 'permission denied for table deployments' "deployer edits history"
  has "$(as_role "$dep" "SELECT * FROM deploy.change_log")" 'permission denied for table change_log' "deployer reads raw history"
  has "$(as_role "$dep" "SELECT deploy.revert('priv', '0.1.0')")" 'permission denied for function revert' "revert not granted"
  has "$(as_role "$nobody" "SELECT deploy.status()")" 'permission denied for schema deploy' "no grants at all"
  # Changes run with the caller's privileges.
  has "$(as_role "$dep" "SELECT deploy.apply('{\"project\": \"priv\", \"version\": \"1.0.0\", \"changes\": [{\"id\": \"b\", \"sql\": \"SELECT * FROM public.secret\"}]}')")" \
      'ERROR:  42501: change "b" of project "priv" failed at line 1, column 1: permission denied for table secret' "change reads a table it may not"
  has "$(as_role "$dep" "SELECT deploy.apply('{\"project\": \"priv\", \"version\": \"1.0.0\", \"changes\": [{\"id\": \"c\", \"sql\": \"ALTER ROLE $dep SUPERUSER\"}]}')")" \
      '42501: change "c" of project "priv" failed at line 1, column 1: (must be superuser|permission denied to alter role)' "change makes itself superuser"
  eq "$(q "SELECT rolsuper FROM pg_roles WHERE rolname = '$dep'")" f "still not superuser"
  eq "$(q "SELECT intact FROM deploy.verify_log('priv')")" t "log intact"
  # The owner can edit history directly; the hash chain shows it.
  q "UPDATE deploy.deployments SET applied_by = 'mallory'"
  eq "$(q "SELECT intact, first_broken_id IS NOT NULL FROM deploy.verify_log('priv')")" "f|t" "owner's edit found"
}

# Project names and change ids with quotes, semicolons, unicode are stored and reported verbatim.
t_hostile_names() {
  newdb
  local m=$TMP/m/names.json err
  python3 - "$m" <<'PY'
import json, sys
json.dump({"project": "o'brien\"; DROP TABLE x; --", "version": "1.0.0",
           "changes": [{"id": "0001 'q' \"dq\" ; $$ ✓ 🚀", "sql": "SELECT 1"},
                       {"id": "0002 ✓", "sql": "SELECT 1/0"}]}, open(sys.argv[1], "w"))
PY
  err=$(apply_err 22012 "$m")
  has "$err" "change \"0002 ✓\" of project \"o'brien\"; DROP TABLE x; --\"" "names in the error"
  jedit "$m" "$m" 'm["changes"] = m["changes"][:1]'
  apply "$m" >/dev/null
  eq "$(q "SELECT change_id FROM deploy.change_log")" "0001 'q' \"dq\" ; \$\$ ✓ 🚀" "id stored verbatim"
  eq "$(q "SELECT project FROM deploy.status()")" "o'brien\"; DROP TABLE x; --" "project stored verbatim"
  jedit "$m" "$TMP/m/ctl.json" 'm["changes"][0]["id"] = "bad\u0007id"'
  # Captured first: grep -q quitting early would fail the pipe (SIGPIPE under pipefail).
  has "$(apply_err 22023 "$TMP/m/ctl.json")" 'control characters' "a control character is refused"
}

# Deterministic interleavings of sessions with PostgreSQL's own isolation tester
# (pg_test/isolation/specs, expected output in pg_test/isolation/expected).
t_isolation() {
  newdb
  local pgxs
  pgxs=$(dirname "$("$PG_BIN/pg_config" --pgxs)")
  mkdir -p "$TMP/isolation"
  "$pgxs/../test/isolation/pg_isolation_regress" --use-existing --host="$PGHOST" --port="$PGPORT" \
    --bindir="$PG_BIN" --inputdir="$ROOT/pg_test/isolation" --outputdir="$TMP/isolation" \
    --dbname="$DB" concurrent_apply catalog_locks \
    || { cat "$TMP/isolation/regression.diffs" >&2 2>/dev/null; return 1; }
}

# History travels with pg_dump: a restored database re-applies nothing and its log is intact.
t_dump_and_restore() {
  newdb
  local r copy=${DB}_copy
  apply "$EXAMPLES/v1.json" >/dev/null
  createdb "$copy"
  pg_dump -Fc "$DB" >"$TMP/out/dump"
  pg_restore -d "$copy" "$TMP/out/dump"
  DB=$copy
  r=$(apply "$EXAMPLES/v1.json")
  eq "$(j "$r" 'r["outcome"]')" no-op "re-apply after restore"
  eq "$(q "SELECT intact FROM deploy.verify_log('bookings')")" t "log intact after restore"
  eq "$(q "SELECT count(*) FROM deploy.drift('bookings')")" 0 "no drift after restore (fingerprints by name)"
  eq "$(q "SELECT drifted FROM deploy.status('bookings')")" f "status: not drifted after restore"
  r=$(apply "$EXAMPLES/v2.json")
  eq "$(j "$r" 'r["outcome"]')" applied "v2 after restore"
}

# ---------------------------------------------------------------- runner

# A small table's write-blocking lock held across a backfill of a big one is
# a hazard when the table is busy: other sessions hold locks on it now, or
# its statistics show traffic; not when it is idle.
t_busy_table_held_across_a_backfill() {
  newdb
  q "CREATE TABLE users (id int PRIMARY KEY, name text);
     INSERT INTO users SELECT g, 'u' FROM generate_series(1, 10) g;
     CREATE TABLE events (id bigint, kind text);
     INSERT INTO events SELECT g, 'x' FROM generate_series(1, 150000) g;
     ANALYZE users, events;" >/dev/null
  local m='{"project": "busy", "version": "1.0.0", "changes": [
    {"id": "add", "sql": "ALTER TABLE users ADD COLUMN plan text"},
    {"id": "fill", "sql": "UPDATE events SET kind = '"'y'"'"}]}'
  held_on_users() {
    "${PSQL[@]}" -d "$DB" -v m="$m" <<'SQL'
SELECT coalesce(string_agg(l->>'busy', '|'), 'none')
  FROM jsonb_array_elements(deploy.plan(:'m'::jsonb, '{"execute": false}')->'locks_held') l
 WHERE l->>'table' = 'public.users' AND l->>'busy' IS NOT NULL;
SQL
  }
  eq "$(held_on_users)" none "an idle small table"
  # Another session in a transaction that read the table.
  "${PSQL[@]}" -d "$DB" -c "BEGIN; SELECT count(*) FROM users; SELECT pg_sleep(30); COMMIT;" >/dev/null 2>&1 &
  local holder=$!
  for _ in $(seq 50); do
    [ "$(q "SELECT count(*) FROM pg_locks WHERE relation = 'users'::regclass AND pid <> pg_backend_pid()")" -gt 0 ] && break
    sleep 0.1
  done
  eq "$(held_on_users)" "1 other session holds a lock on it now" "a table in use now"
  local hazard
  hazard=$("${PSQL[@]}" -d "$DB" -v m="$m" <<'SQL'
SELECT h->>'reason'
  FROM jsonb_path_query(deploy.plan(:'m'::jsonb, '{"execute": false}'),
                        '$.changes[*].statements[*].hazards[*] ? (@.kind == "lock_held_until_commit")') h;
SQL
  )
  has "$hazard" 'taken by change "add".*public.users \(busy: 1 other session holds a lock on it now\).*backfill' "hazard names the busy table"
  q "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()" >/dev/null
  wait "$holder" || true
  # Traffic, averaged since the server started: 5,000 index scans.
  for _ in $(seq 5000); do echo "SELECT name FROM users WHERE id = 1;"; done | "${PSQL[@]}" -d "$DB" >/dev/null
  sleep 0.5
  has "$(held_on_users)" '^~[0-9]+ scans and row writes a second$' "a table with traffic"
}

run_tests e2e "$@"
