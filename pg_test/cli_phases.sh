#!/usr/bin/env bash
# End-to-end tests of the pg-deploy client with phases (docs/online.md,
# docs/cli.md): markers of each layout, waiting, failures, no worker slot.
# Same cluster setup as cli.sh (pg_test/cli_lib.sh).
# Usage: pg_test/cli_phases.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "cli-phases-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=cli_lib.sh
source "$PWD/pg_test/cli_lib.sh"

# ---------------------------------------------------------------- phases
# Files the old tool ran without a transaction become online changes, run by
# the extension's background worker after the deployment commits; apply waits
# for them (docs/cli.md "After commit", docs/online.md).

# users_folder DIR ROWS: golang-migrate migrations: a table of ROWS users, a
# file whose only statement builds a unique index concurrently, and a
# constraint on that index.
users_folder() {
  cat >"$1/1_users.up.sql" <<SQL
CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
INSERT INTO users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, $2) g;
SQL
  echo 'CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email);' >"$1/2_users_email_idx.up.sql"
  echo 'ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_idx;' >"$1/3_users_email_key.up.sql"
}

# golang-migrate has no marker: a file whose only statement is CREATE INDEX
# CONCURRENTLY is online, and the file after it starts a new phase, so the
# constraint finds the index built. apply waits for both steps.
t_phases_golang_migrate_concurrent_index() {
  newdb
  local d; d=$(folder gm)
  users_folder "$d" 20000
  pgd apply "$d" --project shop
  eq "$RC" 0 "exit code"
  has "$ERR" "3 migration\(s\) \(1 online\), layout golang-migrate" "what was read"
  has "$OUT" "^ +after commit:$" "steps announced"
  has "$OUT" "^ +step 1 +online +2_users_email_idx$" "step 1"
  has "$OUT" "^ +step 2 +transaction +3_users_email_key$" "step 2"
  has "$ERR" "^pg-deploy: shop #1: done, 2/2 step\(s\) done$" "progress on stderr"
  has "$OUT" "^ +done +2_users_email_idx +step 1, online$" "summary, step 1"
  has "$OUT" "^ +done +3_users_email_key +step 2, transaction$" "summary, step 2"
  # ADD CONSTRAINT … USING INDEX renames the index after the constraint.
  eq "$(q "SELECT i.indisvalid || ' ' || c.contype::text FROM pg_index i JOIN pg_constraint c ON c.conindid = i.indexrelid
           WHERE c.conname = 'users_email_key'")" "true u" "valid index, used by the constraint"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log")" \
    "1_users 2_users_email_idx 3_users_email_key" "recorded"
  # The same with --json, in a database of its own.
  otherdb
  pgd apply "$d" --project shop --json
  eq "$RC" 0 "--json exit code"
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["1_users"]' "the deployment's own transaction"
  eq "$(j "$OUT" 'r["phases"]["steps"]')" \
    '[{"changes": ["2_users_email_idx"], "kind": "online", "step": 1}, {"changes": ["3_users_email_key"], "kind": "transaction", "step": 2}]' \
    "steps as apply announced them"
  eq "$(j "$OUT" 'r["phases"]["state"] + " " + str(r["phases"]["done"]) + "/" + str(r["phases"]["total"])')" "done 2/2" "final state"
  eq "$(j "$OUT" '[[c["id"], c["step"], c["kind"], c["state"]] for c in r["phases"]["changes"]]')" \
    '[["2_users_email_idx", 1, "online", "done"], ["3_users_email_key", 2, "transaction", "done"]]' "each change"
  eq "$(q "SELECT count(*) FROM pg_index WHERE NOT indisvalid")" 0 "no invalid index"
}

# Each tool's "no transaction" marker makes its file an online change. The
# marked statement is a plain CREATE INDEX, which the client would not make
# online by itself: only the marker does.
t_phases_markers() {
  newdb
  local d fmt idx
  for fmt in dbmate sqlx flyway atlas; do
    d=$(folder "$fmt")
    case $fmt in
      dbmate)
        printf -- '-- migrate:up\nCREATE TABLE dbmate_t (a int);\n\n-- migrate:down\nDROP TABLE dbmate_t;\n' \
          >"$d/20240101000000_t.sql"
        printf -- '-- migrate:up transaction:false\nCREATE INDEX dbmate_t_a ON dbmate_t (a);\n\n-- migrate:down\nDROP INDEX dbmate_t_a;\n' \
          >"$d/20240102000000_t_a.sql"
        idx=20240102000000_t_a ;;
      sqlx)
        echo 'CREATE TABLE sqlx_t (a int);' >"$d/1_t.sql"
        printf -- '-- no-transaction\nCREATE INDEX sqlx_t_a ON sqlx_t (a);\n' >"$d/2_t_a.sql"
        idx=2_t_a ;;
      flyway)
        echo 'CREATE TABLE flyway_t (a int);' >"$d/V1__t.sql"
        echo 'CREATE INDEX flyway_t_a ON flyway_t (a);' >"$d/V2__t_a.sql"
        printf 'executeInTransaction=false\n' >"$d/V2__t_a.sql.conf"
        idx=V2__t_a ;;
      atlas)
        echo 'CREATE TABLE atlas_t (a int);' >"$d/20240101000000_t.sql"
        printf -- '-- atlas:txmode none\n\n-- Index the column.\nCREATE INDEX atlas_t_a ON atlas_t (a);\n' \
          >"$d/20240102000000_t_a.sql"
        printf 'h1:x=\n20240101000000_t.sql h1:y=\n20240102000000_t_a.sql h1:z=\n' >"$d/atlas.sum"
        idx=20240102000000_t_a ;;
    esac
    pgd manifest "$d" --json
    eq "$(j "$OUT" '[c["id"] for c in r["changes"] if c.get("online")]')" "[\"$idx\"]" "$fmt: online in the manifest"
    pgd apply "$d" --project "$fmt" --json
    eq "$RC" 0 "$fmt: exit code"
    eq "$(j "$OUT" 'r["phases"]["steps"]')" "[{\"changes\": [\"$idx\"], \"kind\": \"online\", \"step\": 1}]" "$fmt: one online step"
    eq "$(j "$OUT" 'r["phases"]["state"]')" done "$fmt: phase done"
    eq "$(q "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('${fmt}_t_a') AND indisvalid")" 1 "$fmt: index built"
  done
}

# A file that cannot be one online change is bad input, refused before connecting.
t_phases_bad_online_files() {
  newdb
  local d nowhere="postgres://postgres@127.0.0.1:1/none?connect_timeout=1"
  # A marked file with several statements.
  d=$(folder dbmate)
  printf -- '-- migrate:up\nCREATE TABLE t (a int, b int);\n' >"$d/20240101000000_t.sql"
  printf -- '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY t_a ON t (a);\nCREATE INDEX CONCURRENTLY t_b ON t (b);\n' \
    >"$d/20240102000000_t_ab.sql"
  pgd apply "$d" --project p
  eq "$RC" 2 "marked file with two statements"
  has "$ERR" "20240102000000_t_ab.sql" "names the file"
  has "$ERR" "migrate:up transaction:false" "names the marker"
  pgd apply "$d" --project p --connect-retry 0 --database-url "$nowhere"
  eq "$RC" 2 "before connecting"
  # golang-migrate: CONCURRENTLY mixed with another statement.
  d=$(folder gm)
  echo 'CREATE TABLE t (a int);' >"$d/1_t.up.sql"
  printf 'CREATE INDEX CONCURRENTLY t_a ON t (a);\nUPDATE t SET a = 0;\n' >"$d/2_t_a.up.sql"
  pgd apply "$d" --project p --json
  eq "$RC" 2 "mixed golang-migrate file"
  eq "$(j "$OUT" 'r["error"]["kind"]')" "bad input" "JSON error kind"
  has "$ERR" "2_t_a.up.sql" "names the file"
  has "$ERR" "CREATE INDEX CONCURRENTLY" "names the statement"
  has "$ERR" "line 1" "and its line"
  pgd apply "$d" --project p --connect-retry 0 --database-url "$nowhere"
  eq "$RC" 2 "before connecting"
  eq "$(q "SELECT count(*) FROM deploy.deployments")" 0 "nothing recorded"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname = 't'")" 0 "nothing ran"
}

# An enum value added by one migration and used by a later one: under the
# old tools each file committed on its own. --phases auto (the default) puts
# a commit between them and says where; --phases declared refuses (55P04).
t_phases_enum_value_split() {
  newdb
  local d; d=$(folder enum)
  echo "CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE people (name text, m mood);" >"$d/1_mood.sql"
  echo "ALTER TYPE mood ADD VALUE 'happy';" >"$d/2_happy.sql"
  echo "INSERT INTO people VALUES ('ann', 'happy');" >"$d/3_ann.sql"
  pgd apply "$d" --phases declared
  eq "$RC" 1 "--phases declared exit code"
  has "$ERR" 'ERROR 55P04: .*change "3_ann" uses mood value .happy., added by change "2_happy"' "refused"
  has "$ERR" '"commit_before": true' "hint"
  eq "$(q "SELECT count(*) FROM deploy.deployments")" 0 "nothing recorded"
  pgd apply "$d"
  eq "$RC" 0 "default exit code"
  has "$OUT" 'warning: .*change "3_ann" starts a new phase' "the split is said"
  has "$OUT" "^ +step 1 +transaction +3_ann$" "a transactional step"
  eq "$(q "SELECT m FROM people")" happy "value used after the commit"
  # --json says where on stderr too.
  otherdb
  pgd apply "$d" --json
  eq "$RC" 0 "--json exit code"
  has "$ERR" 'pg-deploy: warning: .*change "3_ann" starts a new phase' "warning on stderr"
  eq "$(j "$OUT" 'r["phases"]["state"]')" done "phase done"
}

# --through ID: up to ID, waiting for its online step; the next apply runs the rest.
t_phases_through() {
  newdb
  local d; d=$(folder thr)
  echo 'CREATE TABLE t (a int);' >"$d/1_t.sql"
  echo 'CREATE INDEX CONCURRENTLY t_a ON t (a);' >"$d/2_t_a.sql"
  echo 'ALTER TABLE t ADD COLUMN b int;' >"$d/3_t_b.sql"
  pgd apply "$d" --through 9_nope
  eq "$RC" 2 "unknown id"
  has "$ERR" '--through 9_nope: the folder has no change "9_nope"' "message"
  pgd apply "$d" --through 2_t_a --json
  eq "$RC" 0 "exit code"
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["1_t"]' "main phase"
  eq "$(j "$OUT" '[[c["id"], c["state"]] for c in r["phases"]["changes"]]')" '[["2_t_a", "done"]]' "online step"
  eq "$(q "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'b'")" 0 "3_t_b not yet"
  eq "$(q "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass")" t "index built"
  pgd apply "$d" --json
  eq "$RC" 0 "second apply"
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["3_t_b"]' "the rest"
  eq "$(j "$OUT" 'r.get("phases")')" null "nothing after commit"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log")" \
    "1_t 2_t_a 3_t_b" "recorded in order"
}

# A failing online step: exit 1 naming the change and its SQLSTATE, and no
# INVALID index left; wait says so again; after the fix, apply finishes it.
t_phases_failed_online_step() {
  newdb
  local d; d=$(folder acc)
  cat >"$d/1_accounts.up.sql" <<'SQL'
CREATE TABLE accounts (id int PRIMARY KEY, email text);
INSERT INTO accounts SELECT g, 'a' || g FROM generate_series(1, 20000) g;
INSERT INTO accounts VALUES (0, 'a1');
SQL
  echo 'CREATE UNIQUE INDEX CONCURRENTLY accounts_email_key ON accounts (email);' >"$d/2_accounts_email_key.up.sql"
  pgd apply "$d" --project acc
  eq "$RC" 1 "exit code"
  has "$ERR" 'phase of acc #1 failed: ERROR 23505: change "2_accounts_email_key" \(step 1, online\)' "error"
  has "$OUT" "^ +failed +2_accounts_email_key +step 1, online" "summary"
  eq "$(q "SELECT count(*) FROM pg_index WHERE indrelid = 'accounts'::regclass AND NOT indisvalid")" 0 "no INVALID index"
  eq "$(q "SELECT to_regclass('accounts_email_key')")" "" "no index at all"
  pgd wait acc
  eq "$RC" 1 "wait exit code"
  has "$ERR" 'phase of acc #1 failed: ERROR 23505: change "2_accounts_email_key"' "wait error"
  pgd wait acc --json
  eq "$RC" 1 "wait --json exit code"
  eq "$(j "$OUT" 'r["state"]')" failed "wait --json state"
  # Applying again supersedes the failed phase and runs the step again: same failure.
  pgd apply "$d" --project acc --json
  eq "$RC" 1 "re-apply exit code"
  eq "$(j "$OUT" 'r["phases"]["state"]')" failed "--json phase state"
  eq "$(j "$OUT" '[[c["id"], c["state"], c["sqlstate"]] for c in r["phases"]["changes"]]')" \
    '[["2_accounts_email_key", "failed", "23505"]]' "--json change"
  has "$ERR" "ERROR 23505" "error on stderr"
  eq "$(q "SELECT count(*) FROM pg_index WHERE indrelid = 'accounts'::regclass AND NOT indisvalid")" 0 "still no INVALID index"
  q "DELETE FROM accounts WHERE id = 0"
  pgd apply "$d" --project acc
  eq "$RC" 0 "after the fix"
  eq "$(q "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email_key'::regclass")" t "built"
}

# slow_folder DIR SECONDS: a table, then an online step that takes SECONDS.
slow_folder() {
  echo 'CREATE TABLE t (a int);' >"$1/1_t.sql"
  printf -- '-- no-transaction\nSELECT pg_sleep(%s);\n' "$2" >"$1/2_slow.sql"
}

# --no-wait returns at commit; `pg-deploy wait` follows the step to the end.
t_phases_no_wait_then_wait() {
  newdb
  local d start ms; d=$(folder slow)
  slow_folder "$d" 2
  start=$(date +%s%N)
  pgd apply "$d" --project slow --no-wait
  ms=$((($(date +%s%N) - start) / 1000000))
  eq "$RC" 0 "exit code"
  [ "$ms" -lt 1500 ] || { echo "apply --no-wait took $ms ms" >&2; return 1; }
  has "$OUT" "^ +after commit, in the background:$" "announced"
  has "$OUT" '`pg-deploy wait slow` follows them' "says how to follow"
  has "$(q "SELECT deploy.phase_status('slow')->>'state'")" "^(pending|running)$" "still going"
  pgd wait slow
  eq "$RC" 0 "wait exit code"
  has "$ERR" "slow #1: done, 1/1 step\(s\) done" "progress"
  has "$OUT" "^ +done +2_slow +step 1, online" "summary"
  pgd wait slow --json
  eq "$RC" 0 "wait again"
  eq "$(j "$OUT" 'r["state"] + " " + str(r["deployment_id"])')" "done 1" "--json"
  # --no-wait --json: apply's own "phases".
  otherdb
  pgd apply "$d" --project slow --no-wait --json
  eq "$(j "$OUT" '[r["phases"]["steps"], "state" in r["phases"]]')" \
    '[[{"changes": ["2_slow"], "kind": "online", "step": 1}], false]' "steps only"
  # A project whose last deployment runs nothing after commit.
  pgd apply "$FIXTURES/plain"
  pgd wait plain
  eq "$RC" 0 "nothing to wait for"
  has "$OUT" "nothing runs after commit" "says so"
}

# --phase-timeout: apply gives up waiting (exit 1), the step goes on.
t_phases_timeout() {
  newdb
  local d; d=$(folder slow)
  slow_folder "$d" 3
  pgd apply "$d" --project slow --phase-timeout 1s
  eq "$RC" 1 "exit code"
  has "$ERR" "gave up waiting after 1s \(--phase-timeout\)" "message"
  has "$ERR" '`pg-deploy wait slow`' "hint"
  pgd wait slow --phase-timeout 30s
  eq "$RC" 0 "wait exit code"
}

# The server ends the client's session while apply waits: the client
# connects again and follows the step to its end.
t_phases_wait_reconnects() {
  newdb
  local d pid; d=$(folder slow)
  slow_folder "$d" 2
  PGDATABASE=$DB "$BIN" apply "$d" --project slow >"$TMP/out/reconnect.out" 2>"$TMP/out/reconnect.err" &
  pid=$!
  for _ in $(seq 50); do grep -q "running 2_slow" "$TMP/out/reconnect.err" && break; sleep 0.1; done
  eq "$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'pg-deploy' AND backend_type = 'client backend'")" \
    1 "the client's session ended"
  set +e; wait "$pid"; RC=$?; set -e
  ERR=$(cat "$TMP/out/reconnect.err")
  cat "$TMP/out/reconnect.out"; echo "$ERR"
  eq "$RC" 0 "exit code"
  has "$ERR" "the connection ended while waiting .*; connecting again" "said so"
  has "$ERR" "slow #1: done, 1/1 step\(s\) done" "followed to the end"
}

# Through PgBouncer in transaction mode: apply waits by polling one
# statement at a time; the worker runs in the server.
t_phases_through_pgbouncer() {
  newdb
  trap stop_pgbouncer EXIT
  start_pgbouncer 2
  local url="postgres://postgres@127.0.0.1:$BOUNCER_PORT/$DB?sslmode=disable"
  local d; d=$(folder gm)
  users_folder "$d" 200000
  pgd apply "$d" --project shop --database-url "$url" --json
  eq "$RC" 0 "apply through pgbouncer"
  eq "$(j "$OUT" 'r["phases"]["state"] + " " + str(r["phases"]["done"])')" "done 2" "phase done"
  eq "$(q "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_key'::regclass")" t "index valid"
  echo 'CREATE INDEX CONCURRENTLY users_id_email ON users (id, email);' >"$d/4_users_id_email.up.sql"
  pgd apply "$d" --project shop --database-url "$url" --no-wait --json
  eq "$RC" 0 "apply --no-wait through pgbouncer"
  local id; id=$(j "$OUT" 'r["deployment_id"]')
  pgd wait shop --database-url "$url" --json
  eq "$RC" 0 "wait through pgbouncer"
  eq "$(j "$OUT" 'r["state"] + " " + str(r["deployment_id"])')" "done $id" "second phase done"
  eq "$(q "SELECT count(*) FROM pg_index WHERE indrelid = 'users'::regclass AND indisvalid")" 3 "three valid indexes"
}

# worker_slots ONE|DEFAULT: the cluster with a single background worker slot
# (nothing else takes one), or back to the defaults; ALTER SYSTEM one
# statement at a time, then a restart.
worker_slots() {
  local s
  for s in "max_worker_processes = 1" "max_logical_replication_workers = 0" "max_parallel_workers = 0"; do
    if [ "$1" = ONE ]; then
      "${PSQL[@]}" -d postgres -c "ALTER SYSTEM SET $s"
    else
      "${PSQL[@]}" -d postgres -c "ALTER SYSTEM RESET ${s%% =*}"
    fi
  done
  bash "$ROOT/scripts/cluster.sh" restart "$TMP"
}

# phase_workers: how many pg_deploy phase workers run now.
phase_workers() {
  q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_deploy phase worker'"
}

# hog_the_slot SECONDS: project hog, in database ${DB}_hog, whose online step
# sleeps SECONDS in a worker; returns once the worker runs.
hog_the_slot() {
  local main=$DB hog
  hog=$(folder hog)
  slow_folder "$hog" "$1"
  DB=${main}_hog
  createdb "$DB"
  q "CREATE EXTENSION pg_deploy;"
  pgd apply "$hog" --project hog --no-wait
  DB=$main
  eq "$RC" 0 "the slow project"
  for _ in $(seq 100); do [ "$(phase_workers)" = 1 ] && break; sleep 0.1; done
  eq "$(phase_workers)" 1 "its worker holds the only slot"
}

# No background worker slot is free (another project's slow online step
# holds the only one): apply runs the steps from its own session through
# deploy.phase_client, a concurrent index build and a later transactional
# file, with the same bookkeeping. --no-run-here leaves the phase pending
# until the slot is free, then a worker runs it. The slow project is in
# another database: a statement running in the same one holds a snapshot,
# which a concurrent index build waits for, whoever runs it.
t_phases_client_runs_them_without_a_worker_slot() {
  newdb
  trap 'worker_slots DEFAULT' EXIT
  worker_slots ONE
  local main=$DB d pid hog_done
  hog_the_slot 8
  d=$(folder gm)
  users_folder "$d" 20000
  pgd apply "$d" --project shop
  eq "$RC" 0 "exit code"
  has "$ERR" "worker not started: no background worker slot is free" "the server said why"
  has "$ERR" "^pg-deploy: shop #1: no background worker slot is free: this client runs the phase itself$" "said"
  has "$ERR" "^pg-deploy: shop #1: running 2_users_email_idx \(step 1, online\) from this client$" "online step"
  has "$ERR" "^pg-deploy: shop #1: 2_users_email_idx done from this client \(" "online step done"
  has "$ERR" "^pg-deploy: shop #1: running step 2 \(transaction: 3_users_email_key\) from this client$" "step 2"
  has "$ERR" "^pg-deploy: shop #1: done, 2/2 step\(s\) done$" "progress"
  has "$OUT" "^ +done +2_users_email_idx +step 1, online$" "summary, step 1"
  has "$OUT" "^ +done +3_users_email_key +step 2, transaction$" "summary, step 2"
  eq "$(phase_workers)" 1 "the slow project's worker still runs: the client ran it"
  eq "$(q "SELECT i.indisvalid || ' ' || c.contype::text FROM pg_index i JOIN pg_constraint c ON c.conindid = i.indexrelid
           WHERE c.conname = 'users_email_key'")" "true u" "valid index, used by the constraint"
  eq "$(q "SELECT count(*) FROM pg_index WHERE NOT indisvalid")" 0 "no invalid index"
  eq "$(q "SELECT phase_state || ' ' || phase_steps_done || '/' || phase_steps FROM deploy.status('shop')")" \
    "done 2/2" "deploy.status"
  eq "$(q "SELECT string_agg(outcome, ',' ORDER BY id) FROM deploy.history('shop')")" "applied,phase,phase" "history"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log WHERE project = 'shop'")" \
    "1_users 2_users_email_idx 3_users_email_key" "recorded"
  eq "$(q "SELECT count(*) FROM deploy.phase_runners WHERE project = 'shop'")" 0 "claim given back"
  # --no-run-here: the next step waits for the slot, and ends after the slow one.
  echo 'CREATE INDEX CONCURRENTLY users_id_email ON users (id, email);' >"$d/4_users_id_email.up.sql"
  PGDATABASE=$DB "$BIN" apply "$d" --project shop --no-run-here >"$TMP/out/norun.out" 2>"$TMP/out/norun.err" &
  pid=$!
  sleep 1.5
  eq "$(q "SELECT state FROM deploy.phase_queue WHERE change_id = '4_users_id_email'")" pending "left pending"
  eq "$(phase_workers)" 1 "the slot is still taken"
  set +e; wait "$pid"; RC=$?; set -e
  OUT=$(cat "$TMP/out/norun.out"); ERR=$(cat "$TMP/out/norun.err")
  printf '%s\n%s\n' "$OUT" "$ERR"
  eq "$RC" 0 "--no-run-here exit code"
  has "$ERR" "worker not started: no background worker slot is free" "waited for a slot"
  if grep -q "from this client" <<<"$ERR"; then echo "--no-run-here ran a step from the client" >&2; return 1; fi
  has "$ERR" "^pg-deploy: shop #[0-9]+: done, 1/1 step\(s\) done$" "done"
  hog_done=$("${PSQL[@]}" -d "${main}_hog" -c "SELECT max(at) FROM deploy.phase_events WHERE event = 'done'")
  eq "$(q "SELECT '$hog_done'::timestamptz
                < (SELECT min(at) FROM deploy.phase_events WHERE change_id = '4_users_id_email' AND event = 'started')")" t \
    "started once the slow step ended"
  eq "$(q "SELECT (SELECT max(at) FROM deploy.phase_events WHERE change_id = '3_users_email_key' AND event = 'done')
                < '$hog_done'::timestamptz")" t "the client's run ended before it"
  eq "$(q "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_id_email'::regclass")" t "index built"
}

# The server ends the client's session while the client builds an index
# itself (no worker slot): the client connects again and claims again; the
# extension finds the INVALID index, the client drops it and builds it again.
t_phases_client_run_reconnects() {
  newdb
  trap 'worker_slots DEFAULT' EXIT
  worker_slots ONE
  hog_the_slot 20
  local d pid
  d=$(folder big)
  echo "CREATE TABLE big (id int, t text); INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1500000) g;" \
    >"$d/1_big.sql"
  echo 'CREATE INDEX CONCURRENTLY big_t_idx ON big (t, id);' >"$d/2_big_t_idx.sql"
  PGDATABASE=$DB "$BIN" apply "$d" --project big >"$TMP/out/rerun.out" 2>"$TMP/out/rerun.err" &
  pid=$!
  for _ in $(seq 300); do
    [ -n "$(q "SELECT 1 FROM pg_stat_progress_create_index WHERE phase LIKE 'building%'")" ] && break
    sleep 0.05
  done
  eq "$(q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE datname = current_database() AND application_name = 'pg-deploy' AND backend_type = 'client backend'")" \
    1 "the client's session ended mid-build"
  set +e; wait "$pid"; RC=$?; set -e
  OUT=$(cat "$TMP/out/rerun.out"); ERR=$(cat "$TMP/out/rerun.err")
  printf '%s\n%s\n' "$OUT" "$ERR"
  eq "$RC" 0 "exit code"
  has "$ERR" "the connection ended while this client ran the phase .*; connecting again" "said so"
  eq "$(grep -c "running 2_big_t_idx (step 1, online) from this client" <<<"$ERR")" 2 "built again from the client"
  has "$ERR" "^pg-deploy: big #1: done, 1/1 step\(s\) done$" "done"
  eq "$(phase_workers)" 1 "no worker ran it"
  eq "$(q "SELECT count(*) || ':' || bool_and(indisvalid) FROM pg_index WHERE indrelid = 'big'::regclass")" \
    "1:true" "one valid index"
  has "$(q "SELECT string_agg(event, ',' ORDER BY id) FROM deploy.phase_events")" \
    "^started,started,reconciled,done$" "events"
}

# The same through PgBouncer in transaction mode (round robin, other clients
# busy): the client's calls may reach other backends. Either they all reach
# one (and the client runs the phase), or the server refuses a call from a
# backend without the claim, the client says why and gives the claim back
# (else the pooled backend that took it would keep every worker away), and a
# worker runs the phase once the slot is free.
t_phases_client_through_pgbouncer_without_a_worker_slot() {
  newdb
  trap 'stop_pgbouncer; worker_slots DEFAULT' EXIT
  worker_slots ONE
  start_pgbouncer 3
  echo "server_round_robin = 1" >>"$TMP/pgbouncer.ini"
  kill -HUP "$(cat "$TMP/pgbouncer.pid")"
  hog_the_slot 5
  local d k url="postgres://postgres@127.0.0.1:$BOUNCER_PORT/$DB?sslmode=disable"
  d=$(folder gm)
  users_folder "$d" 20000
  for k in 1 2 3; do
    ( for _ in $(seq 50); do psql -X -h 127.0.0.1 -p "$BOUNCER_PORT" -d "$DB" -Atc "SELECT pg_sleep(0.02)" >/dev/null; done ) &
  done
  pgd apply "$d" --project shop --database-url "$url" --phase-timeout 60s
  wait
  eq "$RC" 0 "exit code"
  has "$ERR" "2_users_email_idx done from this client|this connection is pooled per transaction" "ran here, or said why not"
  has "$ERR" "^pg-deploy: shop #1: done, 2/2 step\(s\) done$" "done"
  eq "$(q "SELECT count(*) FROM deploy.phase_runners")" 0 "no claim left"
  eq "$(q "SELECT phase_state || ' ' || phase_steps_done || '/' || phase_steps FROM deploy.status('shop')")" \
    "done 2/2" "deploy.status"
  eq "$(q "SELECT count(*) FROM pg_index WHERE NOT indisvalid")" 0 "no invalid index"
}


# The same over a fleet: each target's steps after commit are run from the
# client's connection to it while the only worker slot is taken.
t_fleet_runs_the_phases_without_a_worker_slot() {
  newdb
  trap 'worker_slots DEFAULT' EXIT
  worker_slots ONE
  local main=$DB d
  hog_the_slot 8
  d=$(folder fleetgm)
  users_folder "$d" 2000
  createdb "${main}_b"
  "${PSQL[@]}" -d "${main}_b" -c "CREATE EXTENSION pg_deploy"
  printf 'host=%s port=%s user=postgres dbname=%s\n' "$TMP/sock" "$PORT" "$main" "$TMP/sock" "$PORT" "${main}_b" \
    >"$TMP/w/fleet_targets"
  pgd apply "$d" --project shop --targets "$TMP/w/fleet_targets" --parallel 2 --json
  eq "$RC" 0 "exit code"
  eq "$(j "$OUT" '[x["outcome"] for x in r["rows"]]')" '["applied", "applied"]' "outcomes"
  eq "$(phase_workers)" 1 "the slow project's worker still runs: the client ran them"
  for db in "$main" "${main}_b"; do
    eq "$("${PSQL[@]}" -d "$db" -c "SELECT phase_state || ' ' || phase_steps_done || '/' || phase_steps FROM deploy.status('shop')")" \
      "done 2/2" "deploy.status of $db"
  done
}

run_tests cli-phases-e2e "$@"
