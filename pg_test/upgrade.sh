#!/usr/bin/env bash
# Upgrades from the previous release, the pgmq/wrappers way: databases created
# at 0.1.0 (sql/pg_deploy--0.1.0.sql, installed by scripts/setup.sh), served by
# the new library, then ALTER EXTENSION pg_deploy UPDATE (port 5488).
# Usage: pg_test/upgrade.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "upgrade-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${UPGRADE_PORT:-5488}

start_cluster upgrade "$PORT"
# The kill test needs commits that survive a crash (cluster.sh turns it off for speed).
psql -X -q -d postgres -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
mkdir -p "$TMP/out"
bookings_examples "$TMP/examples"

DB_PREFIX=up_
export PGOPTIONS='-c client_min_messages=warning'

# olddb: a database whose pg_deploy was created at 0.1.0.
olddb() {
  DB=${DB_PREFIX}${CURRENT#t_}${1:-}
  createdb "$DB"
  q "CREATE EXTENSION pg_deploy VERSION '0.1.0'"
}

apply() { "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$1")" <<<"SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';"; }

# History made at 0.1.0: two deployments and an object changed outside them.
history_at_0_1_0() {
  eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_deploy'")" 0.1.0 "created at 0.1.0"
  eq "$(apply "$EXAMPLES/v1.json")" applied "v1 at 0.1.0, by the new library"
  eq "$(apply "$EXAMPLES/v2.json")" applied "v2 at 0.1.0"
  q "ALTER TABLE bookings.resources ADD COLUMN by_hand int"
}

# What must survive the update unchanged.
snapshot() {
  q "SELECT project, version, changes_applied, deployments, last_outcome, drifted FROM deploy.status()
     UNION ALL SELECT 'log', intact::text, deployments, NULL, NULL, NULL FROM deploy.verify_log()
     UNION ALL SELECT change || ' ' || kind || ' ' || name, NULL, NULL, NULL, NULL, NULL FROM deploy.drift('bookings')
     UNION ALL SELECT 'rows', (SELECT count(*) FROM deploy.deployments)::text, (SELECT count(*) FROM deploy.change_log), NULL, NULL, NULL"
}

t_update_keeps_history_and_everything_works() {
  olddb
  local before after r
  history_at_0_1_0
  before=$(snapshot)
  q "ALTER EXTENSION pg_deploy UPDATE"
  eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_deploy'")" 0.2.0 "updated"
  after=$(snapshot)
  eq "$after" "$before" "status, log, drift and rows after the update"
  has "$before" "changed table bookings.resources" "the drifted object is seen"
  eq "$(q "SELECT owner FROM deploy.projects")" postgres "the owner is the first deployer"
  eq "$(q "SELECT string_agg(digest_version::text, ',' ORDER BY id) FROM deploy.deployments")" "1,1" "old rows keep their digest"
  eq "$(q "SELECT deploy.lineage_recording()")" recorded "the update turns lineage on (run by a superuser)"
  # A new deployment continues the chain, with the new digest and a chain head.
  jq_v3=$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1])); m["version"] = "2.1.0"
m["changes"].append({"id": "9001-after-update", "sql": "CREATE TABLE bookings.after_update (id int)"}); print(json.dumps(m))' "$EXAMPLES/v2.json")
  r=$("${PSQL[@]}" -d "$DB" -v manifest="$jq_v3" <<<"SELECT deploy.apply(:'manifest'::jsonb);")
  eq "$(j "$r" 'r["outcome"]')" applied "apply after the update"
  eq "$(q "SELECT digest_version FROM deploy.deployments ORDER BY id DESC LIMIT 1")" 2 "new rows take digest 2"
  eq "$(q "SELECT intact FROM deploy.verify_log('bookings')")" t "chain intact across the update"
  eq "$(q "SELECT intact FROM deploy.verify_log('bookings', '$(j "$r" 'r["chain_head"]')')")" t "the report's chain head is in the chain"
  # Ownership and its transfer, new in 0.2.0, work on upgraded projects.
  q "CREATE ROLE ${DB}_team"
  eq "$(q "SELECT deploy.transfer_project('bookings', '${DB}_team')->>'owner'")" "${DB}_team" "transfer"
  eq "$(q "SELECT intact FROM deploy.verify_log('bookings')")" t "chain intact after the transfer"
  eq "$(q "SELECT outcome FROM deploy.history('bookings') LIMIT 1")" transfer "the transfer is in the log"
}

# The old library's SQL objects keep working with the new library until
# updated: apply, revert and baseline.
t_new_library_serves_a_0_1_0_database() {
  olddb
  printf '%s' '{"project": "compat", "version": "1.0.0", "changes": [
    {"id": "a", "sql": "CREATE TABLE compat_a (id int)", "revert": "DROP TABLE compat_a"}]}' >"$TMP/out/m1.json"
  printf '%s' '{"project": "compat", "version": "1.1.0", "changes": [
    {"id": "a", "sql": "CREATE TABLE compat_a (id int)", "revert": "DROP TABLE compat_a"},
    {"id": "b", "sql": "CREATE TABLE compat_b (id int)", "revert": "DROP TABLE compat_b"}]}' >"$TMP/out/m2.json"
  eq "$(apply "$TMP/out/m1.json")" applied "apply at 0.1.0"
  eq "$(apply "$TMP/out/m2.json")" applied "apply at 0.1.0"
  eq "$(q "SELECT deploy.revert('compat', '1.0.0')->>'outcome'")" revert "revert at 0.1.0"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname = 'compat_b'")" 0 "reverted"
  eq "$("${PSQL[@]}" -d "$DB" -v manifest="$(cat "$TMP/out/m2.json")" <<<"SELECT deploy.baseline(:'manifest'::jsonb, '{\"through\": \"b\"}')->>'outcome';")" \
    baseline "baseline at 0.1.0"
  eq "$(q "SELECT intact FROM deploy.verify_log()")" t "log intact at 0.1.0"
  eq "$(q "SELECT count(*) FROM pg_attribute WHERE attrelid = 'deploy.projects'::regclass AND attname = 'owner'")" 0 \
    "still 0.1.0's objects"
  q "ALTER EXTENSION pg_deploy UPDATE"
  eq "$(q "SELECT intact FROM deploy.verify_log()")" t "log intact after the update"
}

# A fresh 0.2.0 install and an updated one are the same: pg_dump -s -n deploy
# (which leaves out the extension's own objects, so it shows the schema and
# anything not the extension's), and the catalogs of every object in deploy.
t_fresh_and_updated_schemas_match() {
  local fresh updated
  DB=${DB_PREFIX}fresh; createdb "$DB"; q "CREATE EXTENSION pg_deploy"
  fresh=$DB
  olddb _updated; q "ALTER EXTENSION pg_deploy UPDATE"
  updated=$DB
  for db in "$fresh" "$updated"; do
    pg_dump -s -n deploy "$db" | grep -Ev '^(--|SET |SELECT pg_catalog.set_config|\\(un)?restrict )' | sed '/^$/d' >"$TMP/out/$db.sql"
  done
  if ! diff -u "$TMP/out/$fresh.sql" "$TMP/out/$updated.sql" >&2; then
    echo "fresh and updated deploy schemas differ" >&2; return 1
  fi
  # The catalogs too: functions with their bodies, columns with defaults, constraints.
  for db in "$fresh" "$updated"; do
    psql -X -At -d "$db" -c "
      SELECT 'fn ' || p.oid::regprocedure || ' ' || md5(p.prosrc) || ' ' || coalesce(p.proconfig::text, '') || ' ' || p.prosecdef
        FROM pg_proc p WHERE p.pronamespace = 'deploy'::regnamespace
      UNION ALL
      SELECT 'col ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '
             || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'deploy'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'deploy'::regnamespace
      ORDER BY 1" >"$TMP/out/$db.catalog"
  done
  diff -u "$TMP/out/$fresh.catalog" "$TMP/out/$updated.catalog" >&2
}

# A pg_dump of a 0.1.0 database restores into this release (CREATE EXTENSION
# at 0.2.0, then 0.1.0's rows): the log stays intact and deployments go on.
t_dump_of_0_1_0_restores_into_0_2_0() {
  olddb
  local copy=${DB}_copy r
  history_at_0_1_0
  pg_dump -Fc "$DB" >"$TMP/out/old.dump"
  createdb "$copy"
  pg_restore -d "$copy" "$TMP/out/old.dump"
  DB=$copy
  eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_deploy'")" 0.2.0 "restored at 0.2.0"
  eq "$(q "SELECT intact FROM deploy.verify_log()")" t "log intact after the restore"
  eq "$(apply "$EXAMPLES/v2.json")" no-op "nothing to re-apply"
  eq "$(q "SELECT owner FROM deploy.projects")" postgres "the owner is restored from the log"
  eq "$(q "SELECT intact FROM deploy.verify_log()")" t "log intact after a deployment"
}

# Bad input and interruptions: PostgreSQL's own error for an unknown version,
# a second update does nothing, and an update killed mid-way (kill -9 of its
# backend) leaves the database at 0.1.0, whole, never between.
t_update_is_all_or_nothing() {
  olddb
  local out pid
  history_at_0_1_0
  out=$(psql -X -q -d "$DB" -c "ALTER EXTENSION pg_deploy UPDATE TO '9.9.9'" 2>&1) && { echo "updated to 9.9.9" >&2; return 1; }
  has "$out" 'has no update path from version "0.1.0" to version "9.9.9"' "unknown version"
  # Killed before its commit: the update's transaction never happened.
  PGAPPNAME=updater psql -X -q -d "$DB" >/dev/null 2>&1 <<'SQL' &
BEGIN;
ALTER EXTENSION pg_deploy UPDATE;
SELECT pg_sleep(30);
SQL
  for _ in $(seq 100); do
    pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'updater' AND query LIKE '%pg_sleep%'")
    [ -n "$pid" ] && break; sleep 0.1
  done
  [ -n "$pid" ] || { echo "the update did not start" >&2; return 1; }
  kill -9 "$pid"; wait || true
  wait_for_recovery
  eq "$(q "SELECT extversion FROM pg_extension WHERE extname = 'pg_deploy'")" 0.1.0 "still 0.1.0 after the kill"
  eq "$(q "SELECT count(*) FROM pg_attribute WHERE attrelid = 'deploy.projects'::regclass AND attname = 'owner'")" 0 \
    "none of 0.2.0's objects"
  eq "$(q "SELECT intact FROM deploy.verify_log()")" t "log intact"
  q "ALTER EXTENSION pg_deploy UPDATE"
  out=$(PGOPTIONS= psql -X -q -d "$DB" -c "ALTER EXTENSION pg_deploy UPDATE" 2>&1)
  has "$out" 'version "0.2.0" of extension "pg_deploy" is already installed' "a second update does nothing"
  eq "$(q "SELECT intact FROM deploy.verify_log()")" t "log intact after the update"
}

run_tests upgrade-e2e "$@"
