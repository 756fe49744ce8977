#!/usr/bin/env bash
# The lineage suite (issue 16, docs/lineage.md): who changed which object,
# when, from where and through which deployment, against a real cluster (port 5494).
# Assumes the extension is installed (scripts/setup.sh).
# Usage: pg_test/lineage.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "lineage-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${LINEAGE_PORT:-5494}

start_cluster lineage "$PORT"
mkdir -p "$TMP/m" "$TMP/out"

DB_PREFIX=lin_
export PGOPTIONS='-c client_min_messages=warning'

# as ROLE SQL: run SQL in $DB as ROLE through psql (application_name psql); rows, or the error with its SQLSTATE.
as() { PGAPPNAME=psql "${PSQL[@]}" -v VERBOSITY=verbose -U "$1" -d "$DB" -c "$2" 2>&1; }

# deploy VERSION CHANGES_JSON [OPTIONS_JSON]: deploy.apply of project "app"; prints the report.
deploy() {
  q "SELECT deploy.apply('{\"project\": \"app\", \"version\": \"$1\", \"schemas\": [\"app\"], \"changes\": $2}'::jsonb,
                        '${3:-{\}}'::jsonb)"
}

V1='[{"id": "0001-schema", "sql": "CREATE SCHEMA app"},
     {"id": "0002-items", "sql": "CREATE TABLE app.items (id int PRIMARY KEY, name text)"}]'

# A deployment of app, whose table bob owns (so he may alter it, and the
# deployed fingerprints already have him as its owner); V1 gets that change.
setup() {
  newdb
  BOB=bob_$DB
  q "CREATE ROLE $BOB LOGIN"
  V1="${V1%]}"', {"id": "0003-owner", "sql": "GRANT USAGE, CREATE ON SCHEMA app TO '"$BOB"'; ALTER TABLE app.items OWNER TO '"$BOB"'"}]'
  deploy 1.0.0 "$V1" >/dev/null
}

t_outside_alter_is_drift_with_role_application_and_time() {
  setup
  local before
  before=$(q "SELECT clock_timestamp()")
  as "$BOB" "ALTER TABLE app.items ADD COLUMN price numeric" >/dev/null
  eq "$(q "SELECT change || ' ' || kind || ' ' || name || ' by ' || changed_by || ' via ' || application_name
           FROM deploy.drift('app')")" "changed table app.items by $BOB via psql" "drift names role and application"
  eq "$(q "SELECT changed_at > '$before' FROM deploy.drift('app')")" t "drift has the time"
  eq "$(q "SELECT drifted || ' ' || drifted_by FROM deploy.status('app')")" "true $BOB (psql)" "status says who drifted it"
  eq "$(q "SELECT commands -> 0 ->> 'command' FROM deploy.drift('app')")" "ALTER TABLE" "the command"
  eq "$(q "SELECT outside_role || ' ' || outside_application || ' ' || outside_command FROM deploy.lineage('app')
            WHERE name = 'app.items'")" "$BOB psql ALTER TABLE" "lineage: altered outside"
}

t_same_change_by_a_deployment_is_attributed_to_its_change() {
  setup
  local r id
  r=$(deploy 1.1.0 "${V1%]}"', {"id": "0004-price", "sql": "ALTER TABLE app.items ADD COLUMN price numeric"}]')
  id=$(j "$r" 'r["deployment_id"]')
  eq "$(q "SELECT count(*) FROM deploy.drift('app')")" 0 "no drift"
  eq "$(q "SELECT origin || ' ' || created_by_change || ' ' || last_change_id || ' ' || last_deployment_id
            FROM deploy.lineage('app') WHERE kind = 'table' AND name = 'app.items'")" \
     "deployment 0002-items 0004-price $id" "created by 0002, last altered by 0003 in the new deployment"
  eq "$(q "SELECT change_id || '@' || deployment_id FROM deploy.lineage_log('app')
            WHERE command_tag = 'ALTER TABLE' ORDER BY id DESC LIMIT 1")" "0004-price@$id" "the log row carries change and deployment"
}

t_dropped_and_recreated_object_keeps_its_history() {
  setup
  as "$BOB" "DROP TABLE app.items" >/dev/null
  as "$BOB" "CREATE TABLE app.items (id bigint)" >/dev/null
  eq "$(q "SELECT string_agg(event || ':' || coalesce(change_id, current_user_name), ' ' ORDER BY id)
            FROM deploy.lineage_log('app') WHERE object_type = 'table' AND object_names = '{app,items}'
              AND command_tag IN ('CREATE TABLE', 'DROP TABLE')")" \
     "ddl:0002-items drop:$BOB ddl:$BOB" "created by the deployment, dropped and created again by bob"
  eq "$(q "SELECT origin || ' ' || dropped || ' ' || outside_role FROM deploy.lineage('app') WHERE name = 'app.items'")" \
     "outside false $BOB" "now an unmanaged object bob made"
}

t_publication_column_drop_warns_and_refuses() {
  setup
  q "CREATE PUBLICATION items_pub FOR TABLE app.items (id, name)"
  local m='[{"id": "0009-drop-name", "sql": "ALTER TABLE app.items DROP COLUMN name", "allow": ["data_loss"]}]'
  has "$(q "SELECT deploy.plan('{\"project\": \"app\", \"version\": \"2.0.0\", \"schemas\": [\"app\"], \"changes\": ${V1%]}, ${m#[}}'::jsonb)")" \
      'items_pub' "plan names the publication"
  has "$("${PSQL[@]}" -v VERBOSITY=verbose -d "$DB" 2>&1 -c "SELECT deploy.apply('{\"project\": \"app\", \"version\": \"2.0.0\",
        \"schemas\": [\"app\"], \"changes\": ${V1%]}, ${m#[}}'::jsonb, '{\"downstream\": \"refuse\"}')" || true)" \
      '2BP01.*items_pub' "refused with its SQLSTATE, naming the publication"
  has "$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -d "$DB" 2>&1 -c "SELECT deploy.apply('{\"project\": \"app\", \"version\": \"2.0.0\",
        \"schemas\": [\"app\"], \"changes\": ${V1%]}, ${m#[}}'::jsonb) -> 'warnings'")" \
      'items_pub' "apply warns, naming the publication"
}

# Inside a deployment the rows are written when it is recorded; a failure
# there is a gap per command, with its change, and the deployment goes on.
t_failed_recording_in_a_deployment_is_a_gap() {
  setup
  q "ALTER DATABASE $DB SET pg_deploy.lineage_fail = on"
  eq "$(j "$(deploy 1.1.0 "${V1%]}"', {"id": "0004-more", "sql": "CREATE TABLE app.more (id int)"}]')" 'r["outcome"]')" \
     applied "the deployment went through"
  eq "$(q "SELECT string_agg(event || ' ' || command_tag || ' ' || change_id, ',') FROM deploy.lineage
            WHERE change_id = '0004-more'")" "gap CREATE TABLE 0004-more" "a gap with its change"
}

# A change retried after a lock timeout: what its rolled-back attempt did is
# not in the lineage, only what the attempt that committed did.
t_a_retried_attempt_leaves_no_rows() {
  setup
  "${PSQL[@]}" -d "$DB" -c "BEGIN; LOCK TABLE app.items IN ACCESS SHARE MODE; SELECT pg_sleep(1.5); COMMIT;" >/dev/null &
  local holder=$!
  for _ in $(seq 50); do
    [ "$(q "SELECT count(*) FROM pg_locks WHERE relation = 'app.items'::regclass AND pid <> pg_backend_pid()")" -gt 0 ] && break
    sleep 0.05
  done
  local r
  r=$(q "SELECT deploy.apply('{\"project\": \"app\", \"version\": \"1.1.0\", \"schemas\": [\"app\"],
           \"defaults\": {\"lock_timeout\": \"100ms\", \"lock_retries\": 20},
           \"changes\": ${V1%]}, {\"id\": \"0004-side\",
             \"sql\": \"CREATE TABLE app.side (id int); ALTER TABLE app.items ADD COLUMN flag boolean\"}]}'::jsonb)")
  wait "$holder"
  eq "$(j "$r" 'r["outcome"]')" applied "applied once the holder left"
  [ "$(j "$r" 'r["applied"][0]["lock_retries"]')" -gt 0 ] || { echo "no retry happened: $r" >&2; return 1; }
  eq "$(q "SELECT count(*) FROM deploy.lineage WHERE change_id = '0004-side' AND command_tag = 'CREATE TABLE'")" 1 \
     "one CREATE TABLE app.side, from the attempt that committed"
  eq "$(q "SELECT count(*) FROM deploy.lineage WHERE change_id = '0004-side' AND command_tag = 'ALTER TABLE'")" 1 \
     "one ALTER TABLE"
}

t_branch_copy_carries_the_lineage() {
  setup
  as "$BOB" "ALTER TABLE app.items ADD COLUMN note text" >/dev/null
  q "SELECT deploy.seal_lineage()" >/dev/null
  local rows copy=${DB}_branch
  rows=$(q "SELECT count(*) FROM deploy.lineage")
  createdb -T "$DB" "$copy"
  eq "$(DB=$copy q "SELECT count(*) FROM deploy.lineage")" "$rows" "the copy has every row"
  eq "$(DB=$copy q "SELECT intact FROM deploy.verify_lineage()")" t "and its chain verifies"
  eq "$(DB=$copy q "SELECT changed_by FROM deploy.drift('app')")" "$BOB" "drift in the copy is attributed"
  eq "$(DB=$copy q "SELECT deploy.lineage_recording()")" recorded "and the copy records"
}

t_non_superuser_cannot_touch_lineage_or_its_triggers() {
  setup
  has "$(as "$BOB" "INSERT INTO deploy.lineage (event, session_user_name, current_user_name, backend_pid) VALUES ('gap', 'x', 'x', 1)")" \
      '42501' "no insert"
  q "GRANT USAGE ON SCHEMA deploy TO $BOB"
  has "$(as "$BOB" "INSERT INTO deploy.lineage (event, session_user_name, current_user_name, backend_pid) VALUES ('gap', 'x', 'x', 1)")" \
      '42501' "no insert with USAGE"
  has "$(as "$BOB" "UPDATE deploy.lineage SET current_user_name = 'x'")" '42501' "no update"
  has "$(as "$BOB" "DELETE FROM deploy.lineage")" '42501' "no delete"
  has "$(as "$BOB" "ALTER EVENT TRIGGER deploy_lineage_ddl DISABLE")" '42501' "cannot disable a trigger"
  has "$(as "$BOB" "DROP EVENT TRIGGER deploy_lineage_drop")" '42501|2BP01' "cannot drop a trigger"
  has "$(as "$BOB" "SET session_replication_role = replica")" '42501' "cannot switch triggers off by replica mode"
  has "$(as "$BOB" "SELECT deploy.lineage_event()")" 'ERROR' "the trigger function cannot be called"
  # A setting bob sets cannot make the trigger fail (pg_deploy.lineage_fail is superuser-only).
  as "$BOB" "SET pg_deploy.lineage_fail = on; CREATE TABLE app.b1 (id int)" >/dev/null || true
  eq "$(q "SELECT event FROM deploy.lineage WHERE object_identity = 'app.b1'")" ddl "bob's setting is ignored"
  # A failing trigger records a gap and never blocks the command.
  q "ALTER ROLE $BOB SET pg_deploy.lineage_fail = on"
  eq "$(as "$BOB" "CREATE TABLE app.b2 (id int); SELECT 'created'")" created "the DDL went through"
  eq "$(q "SELECT event || ' ' || command_tag || ' ' || current_user_name || ' ' || (error LIKE '%lineage_fail%')
            FROM deploy.lineage ORDER BY id DESC LIMIT 1")" "gap CREATE TABLE $BOB true" "recorded as a gap"
  q "ALTER ROLE $BOB RESET pg_deploy.lineage_fail"
  # Tampering, even by a superuser, shows in the chain.
  q "SELECT deploy.seal_lineage()" >/dev/null
  eq "$(q "SELECT intact FROM deploy.verify_lineage()")" t "intact"
  q "UPDATE deploy.lineage SET current_user_name = 'someone_else' WHERE object_identity = 'app.b1'"
  eq "$(q "SELECT intact FROM deploy.verify_lineage()")" f "a rewritten row is found"
}

# Under REPEATABLE READ, a seal committed after the deployment's snapshot
# makes sealing fail (serialization failure on the chain's head): the rows
# go in unsealed, with a warning, and the next seal chains them.
t_refused_seal_leaves_the_rows_unsealed() {
  setup
  local snapshot out
  coproc A { "${PSQL[@]}" -d "$DB" 2>&1; }
  echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 'snapshot';" >&"${A[1]}"
  read -r snapshot <&"${A[0]}"
  eq "$snapshot" snapshot "the deployment's snapshot is taken"
  q "CREATE TABLE public.outside_the_deployment (x int)" >/dev/null
  q "SELECT deploy.seal_lineage()" >/dev/null
  echo "SELECT deploy.apply('{\"project\": \"app\", \"version\": \"1.1.0\", \"schemas\": [\"app\"],
          \"changes\": ${V1%]}, {\"id\": \"0004-t\", \"sql\": \"CREATE TABLE app.t (x int)\"}]}'::jsonb)->>'outcome';
        COMMIT;" >&"${A[1]}"
  exec {A[1]}>&-
  out=$(cat <&"${A[0]}")
  has "$out" '^applied$' "the deployment applied"
  has "$out" 'left unsealed' "a warning says so"
  eq "$(q "SELECT count(*) > 0 AND bool_and(seq IS NULL) FROM deploy.lineage WHERE change_id = '0004-t'")" t "its rows are unsealed"
  eq "$(q "SELECT intact FROM deploy.verify_lineage()")" t "the chain is intact"
  q "SELECT deploy.seal_lineage()" >/dev/null
  eq "$(q "SELECT unsealed || ' ' || intact FROM deploy.verify_lineage()")" "0 true" "the next seal chains them"
}

t_deleted_rows_break_the_chain() {
  setup
  q "SELECT deploy.seal_lineage()" >/dev/null
  local head
  head=$(q "SELECT head_hash FROM deploy.lineage_chain")
  q "DELETE FROM deploy.lineage WHERE seq = (SELECT head_seq FROM deploy.lineage_chain)"
  has "$(q "SELECT problem FROM deploy.verify_lineage('$head')")" 'head' "the last row deleted"
  q "DELETE FROM deploy.lineage WHERE seq = (SELECT min(seq) + 1 FROM deploy.lineage)"
  has "$(q "SELECT problem FROM deploy.verify_lineage()")" 'link to the previous row is broken' "a row in the middle deleted"
}

t_trim_keeps_the_chain_verifiable() {
  setup
  as "$BOB" "ALTER TABLE app.items ADD COLUMN note text" >/dev/null
  local n
  n=$(q "SELECT count(*) FROM deploy.lineage")
  eq "$(q "SELECT deploy.trim_lineage('0 seconds')")" "$n" "everything older than now goes"
  eq "$(q "SELECT intact FROM deploy.verify_lineage()")" t "an empty trimmed chain verifies"
  as "$BOB" "ALTER TABLE app.items ADD COLUMN more text" >/dev/null
  q "SELECT deploy.seal_lineage()" >/dev/null
  eq "$(q "SELECT intact || ' ' || sealed FROM deploy.verify_lineage()")" "true 1" "new rows chain to the anchor"
  has "$(as "$BOB" "SELECT deploy.trim_lineage()")" '42501' "bob cannot trim"
}

t_not_recorded_then_enable_lineage() {
  # The extension needs a superuser to be created (pg_deploy.control: superuser = true).
  DB=${DB_PREFIX}nosuper; createdb "$DB"
  q "CREATE ROLE carol LOGIN CREATEDB"
  has "$(as carol "CREATE EXTENSION pg_deploy")" '42501' "a non-superuser cannot create the extension"
  # A provider without event triggers: simulated by taking them away.
  q "CREATE EXTENSION pg_deploy"
  q "ALTER EXTENSION pg_deploy DROP EVENT TRIGGER deploy_lineage_ddl; DROP EVENT TRIGGER deploy_lineage_ddl;
     ALTER EXTENSION pg_deploy DROP EVENT TRIGGER deploy_lineage_drop; DROP EVENT TRIGGER deploy_lineage_drop"
  has "$(q "SELECT deploy.lineage_recording()")" '^not recorded' "reported as not recorded"
  deploy 1.0.0 "$V1" >/dev/null
  eq "$(q "SELECT count(*) FROM deploy.lineage WHERE project = 'app'")" 0 "nothing recorded"
  eq "$(q "SELECT string_agg(DISTINCT origin, ',') FROM deploy.lineage('app')")" "not recorded" "lineage says not recorded"
  q "GRANT USAGE ON SCHEMA deploy TO carol; GRANT EXECUTE ON FUNCTION deploy.enable_lineage() TO carol"
  has "$(as carol "SELECT deploy.enable_lineage()")" '42501.*may not create or enable event triggers' "enable_lineage needs a superuser"
  eq "$(q "SELECT deploy.enable_lineage()")" recorded "a superuser turns it on"
  q "ALTER TABLE app.items ADD COLUMN later int"
  eq "$(q "SELECT changed_by FROM deploy.drift('app')")" postgres "recorded from then on"
  eq "$(q "SELECT count(*) FROM pg_depend d JOIN pg_event_trigger e ON e.oid = d.objid
            WHERE e.evtname LIKE 'deploy_lineage_%' AND d.deptype = 'e'")" 2 "the triggers belong to the extension"
  q "SELECT deploy.disable_lineage()" >/dev/null
  has "$(q "SELECT deploy.lineage_recording()")" '^not recorded' "disabled"
  eq "$(q "SELECT string_agg(event, ',' ORDER BY id) FROM deploy.lineage WHERE event IN ('enabled', 'disabled')")" \
     "enabled,enabled,disabled" "switches are in the log (created, enabled again, disabled)"
}

# The client shows the same, as a table and as JSON.
t_client_shows_lineage_and_attributed_drift() {
  setup
  as "$BOB" "ALTER TABLE app.items ADD COLUMN note text" >/dev/null
  cargo build -q -p pg-deploy-cli
  local bin=${CARGO_TARGET_DIR:-$ROOT/target}/debug/pg-deploy out
  out=$(PGDATABASE=$DB "$bin" drift --project app || true)
  has "$out" "changed +table +app.items +$BOB \\(psql\\)" "drift table names role and application"
  out=$(PGDATABASE=$DB "$bin" --json drift --project app || true)
  eq "$(j "$out" 'r[0]["changed_by"] + " " + r[0]["application_name"]')" "$BOB psql" "drift --json"
  out=$(PGDATABASE=$DB "$bin" lineage --project app)
  has "$out" '^lineage: recorded' "lineage says it is recorded"
  has "$out" "app.items +deployment +0002-items \\(#1\\) +0003-owner \\(#1\\) +ALTER TABLE by $BOB \\(psql\\)" "lineage table"
  out=$(PGDATABASE=$DB "$bin" --json lineage --project app)
  eq "$(j "$out" '[o["origin"] for o in r["objects"] if o["name"] == "app.items"][0]')" deployment "lineage --json"
}

run_tests lineage-e2e "$@"
