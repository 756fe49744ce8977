#!/usr/bin/env bash
# End-to-end tests of pg-deploy over fleets and branches (docs/cli.md#fleets):
# 50 databases on one throwaway cluster (one made to fail halfway), canary,
# continue and stop modes, status outliers, the dry run, bad targets, a
# per-target timeout, discovery, and branch workflows with CREATE DATABASE …
# TEMPLATE. Same cluster setup as cli.sh (pg_test/cli_lib.sh), on port 5561
# (a second cluster for a cold start on 5562).
# The tests run in the order listed at the end: the fleet's state carries over.
# Usage: pg_test/cli_fleet.sh [t_name ...]
# Prints "ok - name" / "not ok - name" and ends with "cli-fleet-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
CLI_PORT=${CLI_FLEET_PORT:-5561}
CLI_COLD_PORT=${CLI_FLEET_COLD_PORT:-5562}
CLI_BOUNCER_PORT=${CLI_FLEET_BOUNCER_PORT:-5565}
# shellcheck source=cli_lib.sh
source "$PWD/pg_test/cli_lib.sh"

N=50
BAD=fleet_07          # gets a row that the v2 check constraint refuses
W=$TMP/w
TCP="postgres://postgres@127.0.0.1:$PORT"

# The migrations: v1 a table; v2 a second table, then a check the bad
# database's data violates (so it fails halfway, after 2_orders ran).
mkdir -p "$W/v1" "$W/v2" "$W/v3" "$W/slow" "$W/extra" "$W/online"
echo 'CREATE SCHEMA shop; CREATE TABLE shop.accounts (id int PRIMARY KEY, balance int NOT NULL);' >"$W/v1/1_schema.sql"
cp "$W/v1/"* "$W/v2/"
echo 'CREATE TABLE shop.orders (id int PRIMARY KEY, account int REFERENCES shop.accounts);' >"$W/v2/2_orders.sql"
echo 'ALTER TABLE shop.accounts ADD CONSTRAINT balance_ok CHECK (balance >= 0);' >"$W/v2/3_check.sql"
cp "$W/v2/"* "$W/v3/"
echo 'CREATE INDEX orders_account_idx ON shop.orders (account);' >"$W/v3/4_orders_idx.sql"
cp "$W/v2/"* "$W/slow/"
echo 'CREATE TABLE shop.slow AS SELECT pg_sleep(5)::text AS x;' >"$W/slow/4_slow.sql"
cp "$W/v2/"* "$W/online/"
echo 'CREATE UNIQUE INDEX CONCURRENTLY accounts_balance_uq ON shop.accounts (balance);' >"$W/online/4_balance_uq.sql"
cp "$W/v2/"* "$W/extra/"
echo 'CREATE TABLE shop.extra (id int);' >"$W/extra/4_extra.sql"

# The fleet: fleet_01 … fleet_50 from a template that has the extension,
# listed half as URLs over TCP, half as key=value over the socket.
DB=postgres
createdb fleet_tpl
"${PSQL[@]}" -d fleet_tpl -c "CREATE EXTENSION pg_deploy;"
q "ALTER DATABASE fleet_tpl IS_TEMPLATE true;"
: >"$W/targets"
echo "# the fleet" >>"$W/targets"
for i in $(seq -w 1 $N); do
  createdb -T fleet_tpl "fleet_$i"
  if [ $((10#$i % 2)) = 0 ]; then echo "$TCP/fleet_$i" >>"$W/targets"
  else printf '\nhost=%s port=%s user=postgres dbname=fleet_%s\n' "$TMP/sock" "$PORT" "$i" >>"$W/targets"; fi
done
"$BIN" -q apply "$W/v1" --project shop --targets "$W/targets" --parallel 8 --json >"$TMP/out/setup.json"
"${PSQL[@]}" -d $BAD -c "INSERT INTO shop.accounts VALUES (1, -5);"
# The bad one first, for the canary.
{ grep -F "/$BAD" "$W/targets" || grep -F "dbname=$BAD" "$W/targets"; grep -vF "$BAD" "$W/targets"; } >"$W/bad_first"

# For a wrong password: a role that must give one over TCP.
q "CREATE ROLE fleet_pw LOGIN PASSWORD 'right-secret';"
runuser -u postgres -- sed -i "1i host all fleet_pw 127.0.0.1/32 scram-sha-256" "$TMP/data/pg_hba.conf"
q "SELECT pg_reload_conf();" >/dev/null

# fleet ARGS...: the client with stdout in $OUT, stderr in $ERR, exit code in $RC.
fleet() {
  set +e
  OUT=$("$BIN" "$@" 2>"$TMP/out/stderr")
  RC=$?
  set -e
  ERR=$(cat "$TMP/out/stderr")
  printf '$ pg-deploy %s\n%s\n%s\n[exit %s]\n' "$*" "$OUT" "$ERR" "$RC"
}

# versions: "VERSION COUNT" lines of project shop over the fleet.
versions() {
  for i in $(seq -w 1 $N); do "${PSQL[@]}" -d "fleet_$i" -c "SELECT version FROM deploy.projects WHERE project = 'shop'"; done |
    sort | uniq -c | awk '{print $2 " " $1}' | paste -sd ' '
}

no_panic() { if grep -q panicked <<<"$ERR$OUT"; then echo "the client panicked" >&2; return 1; fi; }

# ---------------------------------------------------------------- fleet

t_setup_applied_v1_everywhere() {
  local out; out=$(cat "$TMP/out/setup.json")
  eq "$(j "$out" 'r["summary"]')" '{"failed": 0, "skipped": 0, "succeeded": 50, "targets": 50}' "summary"
  eq "$(j "$out" 'sorted({x["outcome"] for x in r["rows"]})')" '["applied"]' "every one applied"
  eq "$(versions)" "0.1.0 50" "all at v1"
}

# The canary (the bad database, listed first) fails: nothing else starts.
t_canary_stops_the_rollout() {
  fleet apply "$W/v2" --project shop --targets "$W/bad_first" --canary 1 --parallel 8 --json
  eq "$RC" 1 "exit code"
  no_panic
  eq "$(j "$OUT" 'r["rows"][0]["stage"] + " " + r["rows"][0]["outcome"] + " " + r["rows"][0]["sqlstate"]')" "canary failed 23514" "canary row"
  eq "$(j "$OUT" 'r["summary"]')" '{"failed": 1, "skipped": 49, "succeeded": 0, "targets": 50}' "summary"
  eq "$(j "$OUT" 'r["rows"][1]["error"]')" "not run: the canary failed" "why skipped"
  eq "$(versions)" "0.1.0 50" "nothing changed anywhere"
  eq "$("${PSQL[@]}" -d $BAD -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'shop'")" 1 "no partial v2 on the canary"
  has "$ERR" "canary: 1 target\(s\)" "stage line"
}

# Stop mode, no canary, one at a time: the first (bad) fails, no other starts.
t_stop_mode_starts_nothing_after_a_failure() {
  fleet apply "$W/v2" --project shop --targets "$W/bad_first" --parallel 1 --on-failure stop --json
  eq "$RC" 1 "exit code"
  eq "$(j "$OUT" 'r["summary"]')" '{"failed": 1, "skipped": 49, "succeeded": 0, "targets": 50}' "summary"
  eq "$(versions)" "0.1.0 50" "nothing changed"
}

# The dry run: what would change where; nothing changes; --execute finds the bad one.
t_plan_over_the_fleet() {
  fleet plan "$W/v2" --project shop --targets "$W/targets" --parallel 8 --json
  eq "$RC" 0 "exit code"
  eq "$(j "$OUT" 'sorted({x["outcome"] + " " + str(x["changes"]) for x in r["rows"]})')" '["would-apply 2"]' "every one would apply 2"
  fleet plan "$W/v2" --project shop --targets "$W/targets" --parallel 8 --execute
  eq "$RC" 1 "exit code with the trial run"
  has "$OUT" "fleet_07 +rollout +FAILED +0.1.0 -> 0.3.0 +2 +[0-9]+ +23514 +trial run failed: change 3_check" "the bad one's line"
  has "$OUT" "plan: 50 target\(s\): 49 succeeded, 1 failed, 0 skipped" "counts"
  eq "$(versions)" "0.1.0 50" "nothing changed"
}

# Continue mode (the default): the canary passes, the other 49 are applied,
# the bad one is reported with its SQLSTATE and left at v1, whole.
t_continue_applies_the_other_49() {
  fleet apply "$W/v2" --project shop --targets "$W/targets" --canary 2 --parallel 8
  eq "$RC" 1 "exit code"
  no_panic
  has "$OUT" "apply: 50 target\(s\): 49 succeeded, 1 failed, 0 skipped" "counts"
  has "$OUT" "fleet_07 +rollout +FAILED +0.1.0 +- +[0-9]+ +23514 +apply failed: ERROR 23514: " "the failure with its SQLSTATE"
  has "$OUT" "fleet_01 +canary +applied +0.1.0 -> 0.3.0 +2 " "a canary line"
  has "$ERR" "rollout \[[0-9]+/48\] .*fleet_07: FAILED" "plain progress lines"
  eq "$(versions)" "0.1.0 1 0.3.0 49" "49 at v2"
  eq "$("${PSQL[@]}" -d $BAD -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'shop'")" 1 "no orders table on the bad one"
  eq "$("${PSQL[@]}" -d fleet_08 -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'shop'")" 2 "v2 on another"
  # Again: the 49 are no-ops, the bad one fails the same way.
  fleet apply "$W/v2" --project shop --targets "$W/targets" --parallel 8 --json
  eq "$(j "$OUT" 'sorted(x["outcome"] for x in r["rows"]).count("no-op")')" 49 "no-ops"
}

t_status_flags_the_outliers() {
  "${PSQL[@]}" -d fleet_12 -c "CREATE TABLE shop.by_hand (x int);"
  cp "$W/targets" "$W/with_down"
  echo "postgres://postgres@127.0.0.1:5579/nowhere?connect_timeout=2" >>"$W/with_down"
  fleet status --targets "$W/with_down" --connect-retry 0 --parallel 8 --json
  eq "$RC" 1 "exit code"
  eq "$(j "$OUT" 'r["majority"]')" '{"shop": "0.3.0"}' "majority"
  eq "$(j "$OUT" 'sorted((x["target"].split("/")[-1], x["flags"][0].split(" (")[0]) for x in r["rows"] if x["flags"])')" \
    '[["fleet_07", "version skew"], ["fleet_12", "drift"], ["nowhere", "unreachable"]]' "outliers"
  fleet status --targets "$W/with_down" --connect-retry 0
  has "$OUT" "fleet_07 +shop +0.1.0 .*version skew \(majority 0.3.0\)" "skew in the table"
  has "$OUT" "status: 51 target\(s\), 3 with outliers" "count"
  "${PSQL[@]}" -d fleet_12 -c "DROP TABLE shop.by_hand;"
}

# Bad input: the whole run (exit 2) or a clear line per target (the others unaffected).
t_bad_targets() {
  fleet apply "$W/v2" --project shop --targets "$W/no_such_file"
  eq "$RC" 2 "unreadable file"
  has "$ERR" "bad input: cannot read the targets file .*no_such_file" "says which"
  printf '%s/fleet_01\n\n%s/fleet_02\n%s/fleet_01\n' "$TCP" "$TCP" "postgres://postgres@127.0.0.1:$PORT" >"$W/dup"
  fleet apply "$W/v2" --project shop --targets "$W/dup" --json
  eq "$RC" 2 "duplicate"
  has "$ERR" "dup:4: duplicate target 127.0.0.1:$PORT/fleet_01 \(also at .*dup:1\)" "names both lines"
  eq "$(j "$OUT" 'r["exit_code"]')" 2 "JSON error"
  fleet apply "$W/v2" --project shop --canary 1
  eq "$RC" 2 "a fleet option without targets"
  has "$ERR" "bad input: --canary only go\(es\) with --targets FILE or --discover PATTERN" "says so"
  createdb noext_db
  cat >"$W/mixed" <<EOF
$TCP/fleet_02
postgres://postgres@127.0.0.1:5579/down
postgres://fleet_pw:wrong-secret@127.0.0.1:$PORT/fleet_03
$TCP/noext_db
host=$TMP/sock port=$PORT user=postgres dbname=fleet_04
EOF
  fleet apply "$W/v2" --project shop --targets "$W/mixed" --connect-retry 0 --parallel 3 --json
  eq "$RC" 1 "exit code"
  no_panic
  eq "$(j "$OUT" '[x["outcome"].replace("applied", "ok").replace("no-op", "ok") for x in r["rows"]]')" '["ok", "failed", "failed", "failed", "ok"]' "outcomes"
  eq "$(j "$OUT" '[x["sqlstate"] for x in r["rows"]]')" '[null, null, "28P01", "3F000", null]' "SQLSTATEs"
  has "$(j "$OUT" 'r["rows"][1]["error"]')" "^cannot connect: server 127.0.0.1:5579 .*connection refused" "unreachable"
  has "$(j "$OUT" 'r["rows"][2]["error"]')" "password authentication failed for user \"fleet_pw\"" "wrong password"
  has "$(j "$OUT" 'r["rows"][3]["error"]')" "schema \"deploy\" does not exist" "no extension"
  if grep -q "wrong-secret" <<<"$OUT$ERR"; then echo "password echoed" >&2; return 1; fi
  # The right password from PGPASSWORD gets past the login (to a role that
  # may not read the deploy schema: 42501, not 28P01).
  echo "postgres://fleet_pw@127.0.0.1:$PORT/fleet_03" >"$W/pw"
  set +e; PGPASSWORD=right-secret "$BIN" status --targets "$W/pw" --json >"$TMP/out/pw.json"; set -e
  eq "$(j "$(cat "$TMP/out/pw.json")" 'r["rows"][0]["sqlstate"]')" 42501 "PGPASSWORD used"
}

# A target over its time is cancelled and rolled back; the others go on.
t_target_timeout() {
  printf '%s/fleet_09\n%s/fleet_10\n' "$TCP" "$TCP" >"$W/two"
  fleet apply "$W/slow" --project shop --targets "$W/two" --target-timeout 1s --json
  eq "$RC" 1 "exit code"
  eq "$(j "$OUT" '[x["outcome"] + " " + x["sqlstate"] for x in r["rows"]]')" '["timed-out 57014", "timed-out 57014"]' "outcomes"
  has "$(j "$OUT" 'r["rows"][0]["error"]')" "timed out after 1s \(--target-timeout\) during apply" "message"
  eq "$("${PSQL[@]}" -d fleet_09 -c "SELECT version FROM deploy.projects")" 0.3.0 "rolled back"
  eq "$("${PSQL[@]}" -d fleet_09 -c "SELECT count(*) FROM pg_stat_activity WHERE datname = 'fleet_09' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()")" 0 "not left running"
  # A target still refusing connections when its time runs out timed out (it
  # would have been retried for longer): not "cannot connect".
  echo "postgres://postgres@127.0.0.1:5579/down" >"$W/down"
  fleet apply "$W/v2" --project shop --targets "$W/down" --target-timeout 2s --connect-retry 60 --json
  eq "$(j "$OUT" '[x["outcome"] for x in r["rows"]]')" '["timed-out"]' "timed out while connecting"
  has "$(j "$OUT" 'r["rows"][0]["error"]')" "timed out after 2s \(--target-timeout\) while connecting \(cannot connect: .*connection refused" "connect timeout message"
}

# A target whose server is still starting (a sleeping compute) holds up its
# own slot only: the others finish meanwhile, and it is applied once it is up.
t_a_cold_target_does_not_stall_the_rest() {
  local c=$TMP/cold
  bash scripts/cluster.sh start "$c" "$COLD_PORT"
  createdb -h 127.0.0.1 -p "$COLD_PORT" sleepy
  psql -X -q -h 127.0.0.1 -p "$COLD_PORT" -d sleepy -c 'CREATE EXTENSION pg_deploy'
  bash scripts/cluster.sh stop "$c"
  echo "postgres://postgres@127.0.0.1:$COLD_PORT/sleepy" >"$W/cold"
  for i in $(seq 20 29); do echo "$TCP/fleet_$i" >>"$W/cold"; done
  set +e
  "$BIN" apply "$W/v2" --project shop --targets "$W/cold" --parallel 2 --connect-retry 60 --json \
    >"$TMP/out/cold.json" 2>"$TMP/out/cold.err" &
  local pid=$!
  sleep 3
  bash scripts/cluster.sh start "$c" "$COLD_PORT"
  wait "$pid"; RC=$?
  set -e
  cat "$TMP/out/cold.err"
  OUT=$(cat "$TMP/out/cold.json")
  eq "$RC" 0 "exit code"
  has "$(cat "$TMP/out/cold.err")" "sleepy, user postgres\) is not ready: connection refused; retrying in" "its retries said"
  eq "$(j "$OUT" '[x["outcome"] for x in r["rows"]][0]')" applied "applied once up"
  eq "$(j "$OUT" 'r["rows"][0]["duration_ms"] > 2500')" true "it waited"
  eq "$(j "$OUT" 'sorted({x["outcome"] for x in r["rows"][1:]})')" '["no-op"]' "the others done"
  has "$(grep 'rollout \[' "$TMP/out/cold.err" | tail -1)" "\[11/11\] 127.0.0.1:$COLD_PORT/sleepy: applied" "the others did not wait for it"
}

# A step after commit (an online index build) that fails on one target: that
# target's row says so with the SQLSTATE, and status flags its deployment.
t_failed_step_after_commit_reported_and_flagged() {
  "${PSQL[@]}" -d fleet_31 -c "INSERT INTO shop.accounts VALUES (10, 5), (11, 5);"
  printf '%s/fleet_30\n%s/fleet_31\n' "$TCP" "$TCP" >"$W/phase"
  fleet apply "$W/online" --project shop --targets "$W/phase" --phase-timeout 60s --json
  eq "$RC" 1 "exit code"
  eq "$(j "$OUT" '[x["outcome"] for x in r["rows"]]')" '["applied", "failed"]' "outcomes"
  eq "$(j "$OUT" 'r["rows"][1]["sqlstate"]')" 23505 "the step's SQLSTATE"
  has "$(j "$OUT" 'r["rows"][1]["error"]')" "^phase of .*change \"4_balance_uq\" \(step 1, online\)" "names the change"
  eq "$(j "$OUT" 'r["rows"][1]["version_after"]')" 0.4.0 "the deployment itself committed"
  eq "$("${PSQL[@]}" -d fleet_30 -c "SELECT indisvalid FROM pg_index WHERE indexrelid = 'shop.accounts_balance_uq'::regclass")" t "built on the other"
  fleet status --targets "$W/phase" --json
  eq "$RC" 1 "status exit code"
  eq "$(j "$OUT" '[x["flags"] for x in r["rows"]]')" '[[], ["failed deployment (4_balance_uq: 23505 could not create unique index \"accounts_balance_uq\")"]]' "flagged"
}

# Discovery: every database matching the pattern, templates left out.
t_discover_databases() {
  fleet status --discover 'fleet_*' --database-url "$TCP/postgres" --parallel 8 --json
  eq "$(j "$OUT" 'len({x["target"] for x in r["rows"]})')" 50 "50 found, not the template fleet_tpl"
  eq "$(j "$OUT" '[x["target"] for x in r["rows"]][0]')" "127.0.0.1:$PORT/fleet_01" "named"
  fleet apply "$W/v3" --project shop --discover 'fleet_4?' --database-url "$TCP/postgres" --json
  eq "$RC" 0 "exit code"
  eq "$(j "$OUT" 'r["summary"]["succeeded"]')" 10 "fleet_40 … fleet_49"
  eq "$("${PSQL[@]}" -d fleet_45 -c "SELECT version FROM deploy.projects")" 0.4.0 "applied"
}

# ---------------------------------------------------------------- branches

# prod at v1 → branch → v2 on the branch → verify → v2 to prod → the same.
t_branch_then_promote() {
  DB=br_prod; createdb $DB; q "CREATE EXTENSION pg_deploy;"
  PGDATABASE=br_prod "$BIN" -q apply "$W/v1" --project shop >/dev/null
  createdb -T br_prod br_pr1
  PGDATABASE=br_pr1 "$BIN" -q apply "$W/v2" --project shop >/dev/null
  eq "$("${PSQL[@]}" -d br_pr1 -c "SELECT count(*) FROM pg_constraint WHERE conname = 'balance_ok'")" 1 "verified on the branch"
  eq "$("${PSQL[@]}" -d br_pr1 -c "SELECT count(*) FROM deploy.deployments")" 2 "the branch inherited prod's history"
  fleet compare "$TCP/br_prod" "$TCP/br_pr1" --project shop
  eq "$RC" 1 "differ before promotion"
  has "$OUT" "history: 2 difference\(s\)" "history"
  has "$OUT" "only in B +change +2_orders" "which"
  has "$OUT" "only in B +table +shop.orders" "schema"
  PGDATABASE=br_prod "$BIN" -q apply "$W/v2" --project shop >/dev/null
  fleet compare "$TCP/br_prod" "$TCP/br_pr1" --project shop --json
  eq "$RC" 0 "the same after promotion"
  eq "$(j "$OUT" 'r["a"]["schema_fingerprint"] == r["b"]["schema_fingerprint"] and r["a"]["schema_fingerprint"].startswith("sha256:")')" true "same schema fingerprint"
  eq "$(j "$OUT" 'r["a"]["manifest_sha256"] == r["b"]["manifest_sha256"] != None')" true "same manifest hash"
  eq "$(j "$OUT" '[r["history"], r["schema"], r["same"]]')" '[[], [], true]' "no differences"
}

# A branch of a branch carries both histories; its own change stays its own.
t_branch_of_a_branch() {
  createdb -T br_pr1 br_pr1_sub
  PGDATABASE=br_pr1_sub "$BIN" -q apply "$W/v3" --project shop >/dev/null
  eq "$("${PSQL[@]}" -d br_pr1_sub -c "SELECT string_agg(change_id, ' ' ORDER BY change_id) FROM deploy.changes('shop')")" \
    "1_schema 2_orders 3_check 4_orders_idx" "history of both"
  eq "$("${PSQL[@]}" -d br_pr1 -c "SELECT version FROM deploy.projects")" 0.3.0 "the parent branch unchanged"
  fleet compare "$TCP/br_pr1" "$TCP/br_pr1_sub" --project shop --json
  eq "$RC" 1 "differ"
  eq "$(j "$OUT" '[(d["how"], d["name"]) for d in r["history"]]')" '[["only in B", "4_orders_idx"]]' "history"
  eq "$(j "$OUT" '[(d["how"], d["kind"], d["name"]) for d in r["schema"]]')" '[["only in B", "index", "shop.orders_account_idx"]]' "schema"
  PGDATABASE=br_pr1_sub "$BIN" verify-log --project shop >/dev/null
}

# A branch that diverged (a change only there, and an edit by hand) compared with its parent.
t_diverged_branch_compared_with_its_parent() {
  createdb -T br_prod br_div
  PGDATABASE=br_div "$BIN" -q apply "$W/extra" --project shop >/dev/null
  "${PSQL[@]}" -d br_div -c "ALTER TABLE shop.orders ADD COLUMN note text;"
  fleet compare "$TCP/br_prod" "$TCP/br_div" --project shop
  eq "$RC" 1 "exit code"
  has "$OUT" "version +0.3.0 +0.4.0 +DIFFERENT" "versions"
  has "$OUT" "history: 1 difference\(s\)" "history count"
  has "$OUT" "only in B +change +4_extra" "the extra change"
  has "$OUT" "only in B +table +shop.extra" "its table"
  has "$OUT" "changed +table +shop.orders" "the edit by hand"
  fleet compare "$TCP/br_prod" "$TCP/br_div" --project nope
  eq "$RC" 1 "unknown project"
  has "$ERR" "has no project \"nope\"" "says so"
}

# ---------------------------------------------------------------- examples

# examples/branch-per-pr.sh with its local defaults: branch, apply, compare, drop.
t_example_branch_per_pr() {
  DB=ex_prod; createdb $DB; q "CREATE EXTENSION pg_deploy;"
  PGDATABASE=ex_prod "$BIN" -q apply "$W/v1" --project shop >/dev/null
  set +e
  OUT=$(MIGRATIONS=$W/v2 PROJECT=shop PROD_DB=ex_prod PR_NUMBER=7 PG_DEPLOY=$BIN bash examples/branch-per-pr.sh up 2>&1)
  RC=$?
  set -e
  echo "$OUT"
  eq "$RC" 0 "exit code"
  has "$OUT" "creating branch ex_prod_pr_7" "branched"
  has "$OUT" "only in B +change +3_check" "compared"
  eq "$("${PSQL[@]}" -d ex_prod_pr_7 -c "SELECT version FROM deploy.projects")" 0.3.0 "the branch at v2"
  eq "$("${PSQL[@]}" -d ex_prod -c "SELECT version FROM deploy.projects")" 0.1.0 "production untouched"
  MIGRATIONS=$W/v2 PROD_DB=ex_prod PR_NUMBER=7 bash examples/branch-per-pr.sh down
  eq "$("${PSQL[@]}" -d postgres -c "SELECT count(*) FROM pg_database WHERE datname = 'ex_prod_pr_7'")" 0 "dropped"
}

# examples/fleet-rollout.sh over three databases: status, dry run, canary, the rest, report.
t_example_fleet_rollout() {
  : >"$W/ex_targets"
  for i in 1 2 3; do
    createdb -T fleet_tpl "ex_t$i"
    echo "$TCP/ex_t$i" >>"$W/ex_targets"
  done
  "$BIN" -q apply "$W/v1" --project shop --targets "$W/ex_targets" >/dev/null
  set +e
  OUT=$(TARGETS=$W/ex_targets MIGRATIONS=$W/v2 PROJECT=shop REPORT=$TMP/out/ex_report.json PG_DEPLOY=$BIN \
        bash examples/fleet-rollout.sh 2>&1)
  RC=$?
  set -e
  echo "$OUT"
  eq "$RC" 0 "exit code"
  has "$OUT" "canary: 1 target\(s\)" "canary first"
  has "$OUT" "^3 target\(s\): 3 succeeded, 0 failed, 0 skipped$" "the report read with psql"
  eq "$(j "$(cat "$TMP/out/ex_report.json")" 'r["summary"]["succeeded"]')" 3 "JSON kept"
}

TESTS=(t_setup_applied_v1_everywhere t_canary_stops_the_rollout t_stop_mode_starts_nothing_after_a_failure
  t_plan_over_the_fleet t_continue_applies_the_other_49 t_status_flags_the_outliers t_bad_targets
  t_target_timeout t_a_cold_target_does_not_stall_the_rest
  t_failed_step_after_commit_reported_and_flagged t_discover_databases t_branch_then_promote t_branch_of_a_branch
  t_diverged_branch_compared_with_its_parent t_example_branch_per_pr t_example_fleet_rollout)
if [ $# -gt 0 ]; then run_tests cli-fleet-e2e "$@"; else run_tests cli-fleet-e2e "${TESTS[@]}"; fi
