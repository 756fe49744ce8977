#!/usr/bin/env bash
# The security suite: each finding of the red-team pass (docs/governance.md),
# replayed end to end as the attacking role against a real cluster (port 5490).
# Assumes the extension is installed (scripts/setup.sh).
# Usage: pg_test/security.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "security-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${SECURITY_PORT:-5490}

start_cluster security "$PORT"
mkdir -p "$TMP/m" "$TMP/out"

# ---------------------------------------------------------------- helpers

DB_PREFIX=sec_

# as ROLE SQL: run SQL in $DB as ROLE; prints rows, or the error (verbose, with SQLSTATE).
as() { PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -v VERBOSITY=verbose -U "$1" -d "$DB" -c "$2" 2>&1; }

# apply_as ROLE FILE: deploy.apply of the manifest in FILE as ROLE; prints the outcome or the error.
apply_as() {
  PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -v VERBOSITY=verbose -U "$1" -d "$DB" \
    -v manifest="$(cat "$2")" 2>&1 <<'SQL'
SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';
SQL
}

# deployer ROLE: a role that may deploy and revert, with a schema of its own.
deployer() {
  q "CREATE ROLE $1 LOGIN;
     GRANT CREATE ON DATABASE $DB TO $1;
     GRANT USAGE ON SCHEMA deploy TO $1;
     GRANT EXECUTE ON FUNCTION deploy.apply(jsonb, jsonb), deploy.revert(text, text, jsonb),
                               deploy.status(text) TO $1;"
}

superuser_of() { q "SELECT rolsuper FROM pg_roles WHERE rolname = '$1'"; }

# ---------------------------------------------------------------- finding 1: escalation through stored SQL

# SQL that makes ROLE superuser when it runs as a superuser, and records who ran it.
# As the deployer it only records: that is how it passes review and apply.
trojan() {
  printf '%s' "INSERT INTO sec.who VALUES (current_user, '$2');
DO \$\$ BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE $1 SUPERUSER';
  END IF;
END \$\$;"
}

# trojan_manifests ROLE: v1.0.0 (a table) and v1.1.0 (a change whose revert SQL is a trojan,
# and a repeatable change whose v1.0.0 SQL was one), written to $TMP/m/v1.json, v2.json.
trojan_manifests() {
  python3 - "$TMP/m" "$(trojan "$1" revert)" "$(trojan "$1" restore)" <<'PY'
import json, sys
out, revert_trojan, restore_trojan = sys.argv[1:]
base = [{"id": "schema", "sql": "CREATE SCHEMA sec; CREATE TABLE sec.who (role name, via text);"},
        {"id": "report", "repeatable": True, "sql": "CREATE OR REPLACE VIEW sec.report AS SELECT 1 AS n; " + restore_trojan}]
json.dump({"project": "sec", "version": "1.0.0", "changes": base}, open(out + "/v1.json", "w"))
v2 = [base[0], dict(base[1], sql="CREATE OR REPLACE VIEW sec.report AS SELECT 2 AS n;"),
      {"id": "extra", "sql": "CREATE TABLE sec.extra (id int);",
       "revert": "DROP TABLE sec.extra; " + revert_trojan}]
json.dump({"project": "sec", "version": "1.1.0", "changes": v2}, open(out + "/v2.json", "w"))
PY
}

# A deployer stores SQL that escalates when a superuser runs it; the superuser's
# revert runs it as the deployer, so nothing escalates, and the revert works.
t_revert_runs_stored_sql_as_its_author() {
  newdb
  local dep=${DB}_dep out
  deployer "$dep"
  trojan_manifests "$dep"
  eq "$(apply_as "$dep" "$TMP/m/v1.json")" applied "v1 as the deployer"
  eq "$(apply_as "$dep" "$TMP/m/v2.json")" applied "v2 as the deployer"
  q "DELETE FROM sec.who"
  out=$(as postgres "SELECT deploy.revert('sec', '1.0.0')->>'outcome'") || { echo "$out" >&2; return 1; }
  eq "$out" revert "the superuser's revert"
  eq "$(superuser_of "$dep")" f "the deployer did not become superuser"
  eq "$(q "SELECT string_agg(role || ':' || via, ' ' ORDER BY via) FROM sec.who")" "$dep:restore $dep:revert" \
    "stored SQL ran as its author"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname = 'extra'")" 0 "the revert SQL ran"
  eq "$(q "SELECT n FROM sec.report")" 1 "the earlier view is back"
  eq "$(q "SELECT current_user, current_setting('role')" | tr '\n' ' ')" "postgres|none " "the caller is the caller again"
}

# Revert SQL that tries what only a superuser may: refused as the deployer, whoever reverts.
t_revert_sql_cannot_borrow_the_callers_rights() {
  newdb
  local dep=${DB}_dep m=$TMP/m/direct.json out
  deployer "$dep"
  cat >"$m" <<JSON
{"project": "sec", "version": "1.0.0",
 "changes": [{"id": "t", "sql": "CREATE SCHEMA sec; CREATE TABLE sec.t (id int);",
              "revert": "ALTER ROLE $dep SUPERUSER; DROP TABLE sec.t;"}]}
JSON
  eq "$(apply_as "$dep" "$m")" applied "apply as the deployer"
  out=$(as postgres "SELECT deploy.revert('sec', '0.1.0')") && { echo "revert succeeded: $out" >&2; return 1; }
  has "$out" 'ERROR:  42501: change "t" of project "sec" failed at line 1, column 1: (must be superuser|permission denied)' \
    "revert SQL ran with the deployer's rights"
  eq "$(superuser_of "$dep")" f "the deployer did not become superuser"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname = 't'")" 1 "nothing half-reverted"
}

# A deployer who owns the project now but is not a member of the role that
# stored the SQL may not run it;
# a dropped author's SQL runs for nobody.
t_revert_needs_the_authors_privileges() {
  newdb
  local dep=${DB}_dep other=${DB}_other out
  deployer "$dep"; deployer "$other"
  trojan_manifests "$dep"
  apply_as "$dep" "$TMP/m/v1.json" >/dev/null
  apply_as "$dep" "$TMP/m/v2.json" >/dev/null
  # The project goes to another team: it may deploy it, but not run the SQL
  # the first team stored.
  q "GRANT EXECUTE ON FUNCTION deploy.transfer_project(text, text) TO $dep"
  eq "$(as "$dep" "SELECT deploy.transfer_project('sec', '$other')->>'owner'")" "$other" "transfer to the other team"
  out=$(as "$other" "SELECT deploy.revert('sec', '1.0.0')") && { echo "revert succeeded: $out" >&2; return 1; }
  has "$out" "ERROR:  42501: project \"sec\": the stored SQL of change \"extra\" was recorded by role \"$dep\", and current_user \"$other\" does not have its privileges" \
    "a stranger's revert"
  has "$out" "HINT:  .*GRANT \"$dep\" TO \"$other\"" "the hint says how"
  eq "$(q "SELECT count(*) FROM sec.extra")" 0 "nothing ran"
  eq "$(q "SELECT version FROM deploy.projects")" 1.1.0 "nothing recorded"
  # The author's role gone: its SQL runs for nobody, not even a superuser.
  q "REASSIGN OWNED BY $dep TO postgres; DROP OWNED BY $dep; DROP ROLE $dep"
  out=$(as postgres "SELECT deploy.revert('sec', '1.0.0')") && { echo "revert succeeded: $out" >&2; return 1; }
  has "$out" "ERROR:  42704: project \"sec\": the stored SQL of change \"extra\" was recorded by role \"$dep\", which no longer exists" \
    "a dropped author"
}

# A member of the author's role reverts: allowed, and it runs as the author.
t_member_of_the_author_may_revert() {
  newdb
  local dep=${DB}_dep member=${DB}_member out
  deployer "$dep"; deployer "$member"
  q "GRANT $dep TO $member"
  trojan_manifests "$dep"
  apply_as "$dep" "$TMP/m/v1.json" >/dev/null
  apply_as "$dep" "$TMP/m/v2.json" >/dev/null
  out=$(as "$member" "SELECT deploy.revert('sec', '1.0.0')->>'outcome'")
  eq "$out" revert "a member's revert"
  eq "$(q "SELECT count(*) FROM sec.who WHERE role = '$dep' AND via = 'revert'")" 1 "ran as the author"
}

# ---------------------------------------------------------------- finding 2: anyone can block deployments

# The project lock is the project's row, which only pg_deploy can lock: a role
# holding the advisory lock 0.1.0 used does not block a deployment, nor can it
# lock the row. A real deployment in the way is waited for, within a bound,
# and named.
t_nobody_else_can_block_a_deployment() {
  newdb
  local nobody=${DB}_nobody out m=$TMP/m/lock.json holder_pid
  q "CREATE ROLE $nobody LOGIN"
  printf '{"project": "shop", "version": "1.0.0", "changes": [{"id": "a", "sql": "CREATE TABLE lock_a (id int)"}]}' >"$m"
  # 0.1.0's key for "shop": class 1346651472, then the first 32 bits of sha256("shop").
  key=$(python3 -c 'import hashlib, struct; print(struct.unpack(">i", hashlib.sha256(b"shop").digest()[:4])[0])')
  PGAPPNAME=squatter psql -X -q -U "$nobody" -d "$DB" -c "SELECT pg_advisory_lock(1346651472, $key), pg_sleep(20)" >/dev/null 2>&1 &
  holder_pid=$!
  for _ in $(seq 100); do
    [ "$(q "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")" = 1 ] && break; sleep 0.05
  done
  out=$(timeout 10 "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$m")" <<<"SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';") ||
    { echo "apply blocked or failed behind the squatter: $out" >&2; kill "$holder_pid"; return 1; }
  eq "$out" applied "apply goes through beside a squatted advisory lock"
  kill "$holder_pid" 2>/dev/null || true; wait "$holder_pid" 2>/dev/null || true
  has "$(as "$nobody" "SELECT * FROM deploy.projects FOR UPDATE")" "permission denied for schema deploy" "the row cannot be locked by others"
  # A deployment in progress: the next one waits at most wait_timeout, and is told who is in the way.
  PGAPPNAME=long_deploy "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$m")" >/dev/null 2>&1 <<'SQL' &
BEGIN;
SELECT deploy.apply(:'manifest'::jsonb);
SELECT pg_sleep(5);
COMMIT;
SQL
  holder_pid=$!
  for _ in $(seq 100); do
    [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'long_deploy' AND query LIKE '%pg_sleep(5)%'")" = 1 ] && break; sleep 0.05
  done
  out=$(as postgres "SELECT deploy.apply('$(cat "$m")', '{\"wait_timeout\": \"300ms\"}')") && { echo "did not wait: $out" >&2; return 1; }
  has "$out" 'ERROR:  55P03: project "shop" is being deployed by another session' "bounded wait"
  has "$out" 'DETAIL:  Waited 300ms \(options.wait_timeout\). Held by pid [0-9]+ \(role postgres, application "long_deploy"' "the holder is named"
  wait "$holder_pid"
}

# ---------------------------------------------------------------- finding 3: per-project authorization

# A second team's deployer can neither move another team's project nor accept
# its changed SQL, baseline or revert it; a transfer hands it over, in the log.
t_projects_belong_to_their_first_deployer() {
  newdb
  local a=${DB}_a b=${DB}_b out
  deployer "$a"; deployer "$b"
  q "GRANT EXECUTE ON FUNCTION deploy.baseline(jsonb, jsonb), deploy.transfer_project(text, text),
                               deploy.verify_log(text) TO $a, $b"
  printf '{"project": "shop", "version": "1.0.0", "changes": [{"id": "a", "sql": "CREATE SCHEMA %s_shop"}]}' "$a" >"$TMP/m/a.json"
  eq "$(apply_as "$a" "$TMP/m/a.json")" applied "team a deploys shop"
  printf '{"project": "shop", "version": "99.0.0", "changes": [{"id": "a", "sql": "SELECT 1"}]}' >"$TMP/m/b.json"
  out=$(apply_as "$b" "$TMP/m/b.json") && { echo "team b moved shop: $out" >&2; return 1; }
  has "$out" "ERROR:  42501: project \"shop\" is owned by role \"$a\", and current_user \"$b\" does not have its privileges" "team b's apply"
  has "$out" "HINT:  .*transfer_project" "the hint names the way"
  out=$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -v VERBOSITY=verbose -U "$b" -d "$DB" -v manifest="$(cat "$TMP/m/b.json")" 2>&1 <<'SQL'
SELECT deploy.apply(:'manifest'::jsonb, '{"accept_changed": ["a"], "allow_downgrade": true}');
SQL
  ) && { echo "team b accepted: $out" >&2; return 1; }
  has "$out" "42501: project \"shop\" is owned by" "team b's accept_changed"
  has "$(as "$b" "SELECT deploy.baseline('{\"project\": \"shop\", \"version\": \"2.0.0\", \"changes\": [{\"id\": \"x\", \"sql\": \"SELECT 1\"}]}', '{\"through\": \"x\"}')")" \
    "42501: project \"shop\" is owned by" "team b's baseline"
  has "$(as "$b" "SELECT deploy.revert('shop', '0.1.0')")" "42501: project \"shop\" is owned by" "team b's revert"
  has "$(as "$b" "SELECT deploy.transfer_project('shop', '$b')")" "42501: project \"shop\" is owned by" "team b takes shop"
  eq "$(q "SELECT version || ' ' || owner FROM deploy.projects")" "1.0.0 $a" "shop untouched"
  # Team a hands shop to team b: now b deploys and a does not.
  eq "$(as "$a" "SELECT deploy.transfer_project('shop', '$b')->>'owner'")" "$b" "transfer"
  printf '{"project": "shop", "version": "1.1.0", "changes": [{"id": "a", "sql": "CREATE SCHEMA %s_shop"}, {"id": "b", "sql": "SELECT 1"}]}' "$a" >"$TMP/m/b2.json"
  eq "$(apply_as "$b" "$TMP/m/b2.json")" applied "team b deploys after the transfer"
  has "$(apply_as "$a" "$TMP/m/b2.json")" "42501: project \"shop\" is owned by role \"$b\"" "team a no longer"
  eq "$(q "SELECT string_agg(outcome || ':' || applied_by, ' ' ORDER BY id) FROM deploy.deployments")" \
    "applied:$a transfer:$a applied:$b" "the log says who"
  eq "$(q "SELECT intact FROM deploy.verify_log('shop')")" t "log intact"
  # The owner cannot be moved by editing the row: the log disagrees.
  q "UPDATE deploy.projects SET owner = '$a'"
  has "$(q "SELECT problem FROM deploy.verify_log('shop')")" "owner is $a, which no deployment or transfer recorded" "edited owner found"
}

# ---------------------------------------------------------------- finding 4: the dry run acts

# deploy.plan runs nothing by default; asked for a trial run, it leaves out
# what a rollback cannot undo: no sequence consumed, no session lock left,
# no other session killed, no notification sent.
t_plan_has_no_effect() {
  newdb
  local dep=${DB}_dep victim out
  deployer "$dep"
  q "GRANT EXECUTE ON FUNCTION deploy.plan(jsonb, jsonb) TO $dep; GRANT pg_signal_backend TO $dep;
     CREATE SEQUENCE s; GRANT USAGE ON SEQUENCE s TO $dep"
  # A session to kill: plan must not.
  psql -X -q -d "$DB" -c "SELECT pg_sleep(30)" >/dev/null 2>&1 & victim=$!
  sleep 0.5
  cat >"$TMP/m/acts.json" <<JSON
{"project": "p", "version": "1.0.0", "changes": [
  {"id": "a", "sql": "SELECT nextval('public.s')"},
  {"id": "b", "sql": "SELECT pg_advisory_lock(42); SELECT pg_notify('ch', 'x')"},
  {"id": "c", "sql": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"}]}
JSON
  out=$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -U "$dep" -d "$DB" -v manifest="$(cat "$TMP/m/acts.json")" 2>&1 <<'SQL'
SELECT deploy.plan(:'manifest'::jsonb)->'execution'->>'executed';
SELECT deploy.plan(:'manifest'::jsonb, '{"execute": true}')->'execution'->>'message';
SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SQL
  )
  eq "$(sed -n 1p <<<"$out")" false "no trial run by default"
  has "$(sed -n 2p <<<"$out")" 'change "b" of project "p" cannot run in a trial run at line 1, column 1: pg_advisory_lock\(\) acts outside the transaction' \
    "the trial run is refused, naming the change"
  eq "$(sed -n 3p <<<"$out")" 0 "no session lock left"
  eq "$(q "SELECT is_called FROM s")" f "no sequence value consumed"
  kill -0 "$victim" 2>/dev/null || { echo "plan killed another session" >&2; return 1; }
  kill "$victim" 2>/dev/null || true; wait "$victim" 2>/dev/null || true
}

# ---------------------------------------------------------------- finding 5: the owner and the hash chain

# What the database owner edits beside the chain is found; a rewrite of the
# chain itself is found against a head kept outside (the apply report's).
t_edits_beside_the_chain_are_found() {
  newdb
  local r head
  printf '{"project": "p", "version": "1.0.0", "changes": [{"id": "a", "sql": "CREATE SCHEMA p; CREATE TABLE p.t (id int)"}]}' >"$TMP/m/p1.json"
  printf '{"project": "p", "version": "1.1.0", "changes": [{"id": "a", "sql": "CREATE SCHEMA p; CREATE TABLE p.t (id int)"}, {"id": "b", "sql": "CREATE TABLE p.u (id int)"}]}' >"$TMP/m/p2.json"
  apply_as postgres "$TMP/m/p1.json" >/dev/null
  r=$("${PSQL[@]}" -d "$DB" -v manifest="$(cat "$TMP/m/p2.json")" <<<"SELECT deploy.apply(:'manifest'::jsonb);")
  head=$(j "$r" 'r["chain_head"]')
  has "$head" '^sha256:[0-9a-f]{64}$' "the report carries the chain head"
  eq "$(q "SELECT intact FROM deploy.verify_log('p', '$head')")" t "intact against the head"
  # The stored manifest names each change's SQL in deploy.change_sql: point change b at a's.
  local b_sql a_sql
  b_sql=$(q "SELECT manifest #>> '{changes,1,sql_sha256}' FROM deploy.manifests WHERE manifest -> 'changes' -> 1 IS NOT NULL")
  a_sql=$(q "SELECT manifest #>> '{changes,0,sql_sha256}' FROM deploy.manifests WHERE manifest -> 'changes' -> 1 IS NOT NULL")
  q "UPDATE deploy.manifests SET manifest = jsonb_set(manifest, '{changes,1,sql_sha256}', to_jsonb('$a_sql'::text)) WHERE manifest -> 'changes' -> 1 IS NOT NULL"
  has "$(q "SELECT problem FROM deploy.verify_log('p')")" "its manifest no longer match" "edited manifest found"
  q "UPDATE deploy.manifests SET manifest = jsonb_set(manifest, '{changes,1,sql_sha256}', to_jsonb('$b_sql'::text)) WHERE manifest -> 'changes' -> 1 IS NOT NULL"
  eq "$(q "SELECT intact FROM deploy.verify_log('p')")" t "mended"
  q "UPDATE deploy.change_sql SET sql = 'DROP TABLE p.t' WHERE sha256 = '$b_sql'"
  has "$(q "SELECT problem FROM deploy.verify_log('p')")" "deploy.change_sql no longer holds" "edited SQL found"
  q "UPDATE deploy.change_sql SET sql = 'CREATE TABLE p.u (id int)' WHERE sha256 = '$b_sql'"
  eq "$(q "SELECT intact FROM deploy.verify_log('p')")" t "mended again"
  q "UPDATE deploy.projects SET version = '9.9.9'"
  has "$(q "SELECT problem FROM deploy.verify_log('p')")" "deploy.projects says version 9.9.9" "edited version found"
  q "UPDATE deploy.projects SET version = '1.1.0'; UPDATE deploy.fingerprints SET sha256 = md5(sha256) WHERE name = 'p.u'"
  has "$(q "SELECT problem FROM deploy.verify_log('p')")" "deploy.fingerprints no longer match" "edited fingerprint found"
  q "DELETE FROM deploy.fingerprints WHERE name = 'p.u'"
  has "$(q "SELECT problem FROM deploy.verify_log('p')")" "deploy.fingerprints no longer match" "deleted fingerprint found"
  # Rewriting the last deployment and its hash: consistent inside the database,
  # found against the head the CI log kept.
  q "INSERT INTO deploy.fingerprints (project, kind, name, sha256) SELECT 'p', kind, name, sha256 FROM deploy.object_fingerprints('{p}') WHERE name = 'p.u'"
  q "UPDATE deploy.deployments d SET applied_by = 'mallory' WHERE id = (SELECT max(id) FROM deploy.deployments);
     UPDATE deploy.deployments d SET row_hash = deploy.deployment_digest(d) WHERE id = (SELECT max(id) FROM deploy.deployments)"
  eq "$(q "SELECT intact FROM deploy.verify_log('p')")" t "a rewritten head is consistent inside the database"
  eq "$(q "SELECT intact FROM deploy.verify_log('p', '$head')")" f "but not with the head kept outside"
  has "$(q "SELECT problem FROM deploy.verify_log('p', '$head')")" "the expected head $head is not in the chain" "and it says so"
}

# ---------------------------------------------------------------- finding 6: state left in the session

# Through dynamic SQL a change tries to leave a prepared statement, a temp
# table, a temp function and a session advisory lock: each is refused (0A000)
# and the session, checked right after in the same connection, holds none of it.
# A temp table made and dropped in one change (lemmy's comment_ltrees) is fine.
t_nothing_is_left_in_the_session() {
  newdb
  local dep=${DB}_dep sql out
  deployer "$dep"
  for sql in "DO \$\$ BEGIN EXECUTE 'PREPARE p AS SELECT 1'; END \$\$" \
             "DO \$\$ BEGIN EXECUTE 'CREATE TEMP TABLE t (a int)'; END \$\$" \
             "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'" \
             "CREATE TEMP VIEW v AS SELECT 1" "CREATE SEQUENCE pg_temp.s" "CREATE TYPE pg_temp.e AS ENUM ('a')" \
             "CREATE TABLE pg_temp.t2 (a int); CREATE INDEX ON pg_temp.t2 (a)" \
             "DO \$\$ BEGIN PERFORM pg_advisory_lock(1); END \$\$; SELECT 1/0"; do
    printf '%s' "$sql" | python3 -c 'import json, sys; print(json.dumps({"project": "p", "version": "1.0.0", "changes": [{"id": "c", "sql": sys.stdin.read()}]}))' >"$TMP/m/s.json"
    out=$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -v VERBOSITY=verbose -U "$dep" -d "$DB" \
            -v manifest="$(cat "$TMP/m/s.json")" 2>&1 <<'SQL'
\set ON_ERROR_STOP 0
SELECT deploy.apply(:'manifest'::jsonb);
SELECT 'left: ' || (SELECT count(*) FROM pg_prepared_statements)
       || ' ' || (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema())
       || ' ' || (SELECT count(*) FROM pg_proc WHERE pronamespace = pg_my_temp_schema())
                 + (SELECT count(*) FROM pg_type WHERE typnamespace = pg_my_temp_schema() AND typtype = 'e')
       || ' ' || (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid());
SQL
    )
    has "$out" "ERROR:  (0A000: change \"c\" of project \"p\" failed: it left|0A000: the deployment left a session-level|22012)" "refused: $sql"
    has "$out" "^left: 0 0 0 0$" "nothing left after: $sql"
  done
  printf '{"project": "p", "version": "1.0.0", "changes": [{"id": "c", "sql": "CREATE TEMP TABLE s (a int); INSERT INTO s VALUES (1); DROP TABLE s"}]}' >"$TMP/m/ok.json"
  eq "$(apply_as "$dep" "$TMP/m/ok.json")" applied "a temp table made and dropped in one change"
}

# ---------------------------------------------------------------- finding 7: panic text

# Manifests and options nested 200 and 5,000 levels deep, in apply and plan:
# 54000 from pg_deploy, no Rust panic or backtrace anywhere.
t_deep_arguments_are_refused_cleanly() {
  newdb
  local dep=${DB}_dep n fn out ok='{"project": "p", "version": "1.0.0", "changes": []}'
  deployer "$dep"
  q "GRANT EXECUTE ON FUNCTION deploy.plan(jsonb, jsonb) TO $dep"
  for n in 200 5000; do
    python3 -c "import sys; n = int(sys.argv[1]); print('[' * n + ']' * n)" "$n" >"$TMP/m/deep.json"
    for fn in apply plan; do
      out=$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -v VERBOSITY=verbose -U "$dep" -d "$DB" \
              -v deep="$(cat "$TMP/m/deep.json")" -v ok="$ok" 2>&1 <<SQL
SELECT deploy.$fn(:'deep'::jsonb);
SELECT deploy.$fn(:'ok'::jsonb, :'deep'::jsonb);
SQL
      ) && { echo "deploy.$fn accepted $n levels: $out" >&2; return 1; }
      has "$out" "ERROR:  54000: invalid manifest: \\\$: the nesting depth of arrays and objects is $n, over the limit of 64" "$fn manifest $n"
      if grep -Eiq 'panick|backtrace|XX000' <<<"$out"; then echo "panic text: $out" >&2; return 1; fi
      out=$("${PSQL[@]}" -v VERBOSITY=verbose -U "$dep" -d "$DB" -v deep="$(cat "$TMP/m/deep.json")" -v ok="$ok" 2>&1 <<SQL
SELECT deploy.$fn(:'ok'::jsonb, :'deep'::jsonb);
SQL
      ) && { echo "deploy.$fn accepted $n levels of options" >&2; return 1; }
      has "$out" "ERROR:  54000: invalid options: options: the nesting depth of arrays and objects is $n" "$fn options $n"
      if grep -Eiq 'panick|backtrace|XX000' <<<"$out"; then echo "panic text: $out" >&2; return 1; fi
    done
  done
}

# ---------------------------------------------------------------- finding 8: memory

# A deployer cannot make pg_deploy hold an unbounded manifest: past 20,000
# changes it is refused (54000) before anything runs; and a next version of a
# big manifest stores only its new SQL, not the whole document again.
t_big_manifests_are_bounded() {
  newdb
  local dep=${DB}_dep out
  deployer "$dep"
  python3 - "$TMP/m/many.sql" <<'PY2'
import json, sys
m = {"project": "big", "version": "1.0.0", "changes": [{"id": f"c{i}", "sql": "SELECT 1"} for i in range(20001)]}
open(sys.argv[1], "w").write("SELECT deploy.apply($j$" + json.dumps(m) + "$j$::jsonb);\n")
PY2
  out=$(PGOPTIONS='-c client_min_messages=warning' psql -X -q -v ON_ERROR_STOP=1 -v VERBOSITY=verbose -U "$dep" -d "$DB" -f "$TMP/m/many.sql" 2>&1) &&
    { echo "20,001 changes accepted" >&2; return 1; }
  has "$out" "ERROR:  54000: invalid manifest: changes: .* over the limit of 20000" "too many changes"
  python3 - "$TMP/m/v1.sql" "$TMP/m/v2.sql" <<'PY2'
import json, sys
changes = [{"id": "schema", "sql": "CREATE SCHEMA bigs"}] + [
    {"id": f"c{i:04d}", "sql": f"CREATE TABLE bigs.big_{i} (id int); -- {'x' * 200}"} for i in range(300)]
for path, version, extra in ((sys.argv[1], "1.0.0", []), (sys.argv[2], "1.1.0", [{"id": "new", "sql": "SELECT 2"}])):
    m = {"project": "big", "version": version, "changes": changes + extra}
    open(path, "w").write("SELECT deploy.apply($j$" + json.dumps(m) + "$j$::jsonb)->>'outcome';\n")
PY2
  eq "$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -U "$dep" -d "$DB" -f "$TMP/m/v1.sql")" applied "v1"
  eq "$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -U "$dep" -d "$DB" -f "$TMP/m/v2.sql")" applied "v2"
  eq "$(q "SELECT count(*) FROM deploy.change_sql")" 302 "each change's SQL stored once"
  eq "$(q "SELECT bool_and(pg_column_size(manifest) < 40000) FROM deploy.manifests")" t "manifests hold references, not SQL"
  eq "$(q "SELECT intact FROM deploy.verify_log('big')")" t "log intact"
}

# ---------------------------------------------------------------- finding 9: system schemas

# "schemas" naming a system schema is refused; so is a schema the deployer may not use.
t_system_and_foreign_schemas_are_not_fingerprinted() {
  newdb
  local dep=${DB}_dep out
  deployer "$dep"
  q "CREATE SCHEMA hidden; REVOKE ALL ON SCHEMA hidden FROM PUBLIC; CREATE TABLE hidden.t (id int);"
  cat >"$TMP/m/sys.json" <<'JSON'
{"project": "p", "version": "1.0.0", "schemas": ["pg_catalog", "deploy"], "changes": [{"id": "a", "sql": "SELECT 1"}]}
JSON
  has "$(apply_as "$dep" "$TMP/m/sys.json")" 'ERROR:  22023: invalid manifest: schemas\[0\]: "pg_catalog" is a system schema' "pg_catalog"
  cat >"$TMP/m/hidden.json" <<'JSON'
{"project": "p", "version": "1.0.0", "schemas": ["hidden"], "changes": [{"id": "a", "sql": "SELECT 1"}]}
JSON
  out=$(apply_as "$dep" "$TMP/m/hidden.json") && { echo "apply succeeded: $out" >&2; return 1; }
  has "$out" 'ERROR:  42501: manifest "schemas": current_user has no USAGE on schema hidden' "a schema the deployer may not use"
  eq "$(q "SELECT count(*) FROM deploy.fingerprints")" 0 "nothing fingerprinted"
}

# ---------------------------------------------------------------- finding 10: spoofing

# Bidi controls and line separators in ids and project names are refused (22023).
t_invisible_characters_are_refused() {
  newdb
  local ch
  for ch in '\u202e' '\u2028' '\u2066' '\u200b'; do
    printf '{"project": "sh%sop", "version": "1.0.0", "changes": [{"id": "a", "sql": "SELECT 1"}]}' "$ch" >"$TMP/m/p.json"
    has "$(apply_as postgres "$TMP/m/p.json")" 'ERROR:  22023: invalid manifest: project: must not contain invisible format characters' "project $ch"
    printf '{"project": "p", "version": "1.0.0", "changes": [{"id": "a%sb", "sql": "SELECT 1"}]}' "$ch" >"$TMP/m/c.json"
    has "$(apply_as postgres "$TMP/m/c.json")" 'ERROR:  22023: invalid manifest: changes\[0\].id: must not contain invisible' "id $ch"
  done
  eq "$(q "SELECT count(*) FROM deploy.projects")" 0 "nothing recorded"
}

# ---------------------------------------------------------------- finding 11: unbounded statements

# The administrator's pg_deploy.max_statement_timeout: a manifest cannot ask for
# more, nor for none; a deployer cannot lower the bar with SET, even before
# the library is loaded (a placeholder set by a non-superuser is not taken).
t_statement_timeout_has_a_server_maximum() {
  newdb
  local dep=${DB}_dep out t
  deployer "$dep"
  q "ALTER DATABASE $DB SET pg_deploy.max_statement_timeout = '1h'"
  for t in '"0"' '"2h"' 7200001; do
    printf '{"project": "p", "version": "1.0.0", "defaults": {"statement_timeout": %s}, "changes": [{"id": "a", "sql": "SELECT 1"}]}' \
      "$t" >"$TMP/m/t.json"
    has "$(apply_as "$dep" "$TMP/m/t.json")" \
      'ERROR:  22023: change "a" of project "p": statement_timeout .* is over the server.s maximum of 3600000 ms' "timeout $t"
  done
  out=$(PGOPTIONS='-c client_min_messages=warning' "${PSQL[@]}" -v VERBOSITY=verbose -U "$dep" -d "$DB" \
          -v manifest="$(cat "$TMP/m/t.json")" 2>&1 <<'SQL'
SET pg_deploy.max_statement_timeout = 0;
SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';
SQL
  ) && { echo "the deployer lifted the maximum: $out" >&2; return 1; }
  has "$out" "ERROR:  (42501: permission denied to set parameter|22023: change \"a\" of project \"p\": statement_timeout)" "SET by the deployer does not lift the maximum"
  printf '{"project": "p", "version": "1.0.0", "defaults": {"statement_timeout": "30min"}, "changes": [{"id": "a", "sql": "SELECT 1"}]}' >"$TMP/m/t.json"
  eq "$(apply_as "$dep" "$TMP/m/t.json")" applied "within the maximum"
}

# ---------------------------------------------------------------- runner

[ -n "${SEC_DEBUG:-}" ] && set -x
# A phase's bookkeeping runs as the extension's owner; a deployer's change
# sets its own search_path (an operator "=" and a function "max" of its own
# before pg_catalog) and the worker must not resolve the owner's queries with it.
t_phase_bookkeeping_ignores_the_change_search_path() {
  newdb
  local dep=ph_evil
  deployer "$dep"
  q "GRANT EXECUTE ON FUNCTION deploy.wait(text, interval) TO $dep"
  as "$dep" "CREATE SCHEMA evil;
    CREATE FUNCTION evil.escalate(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
      \$\$ BEGIN EXECUTE 'ALTER ROLE $dep SUPERUSER'; RETURN \$1 OPERATOR(pg_catalog.=) \$2;
           EXCEPTION WHEN OTHERS THEN RETURN \$1 OPERATOR(pg_catalog.=) \$2; END \$\$;
    CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.escalate);
    CREATE FUNCTION evil.max(bigint) RETURNS bigint LANGUAGE plpgsql AS
      \$\$ BEGIN EXECUTE 'ALTER ROLE $dep SUPERUSER'; RETURN \$1;
           EXCEPTION WHEN OTHERS THEN RETURN \$1; END \$\$;
    CREATE TABLE evil.t (id int);" >/dev/null
  printf '%s' '{"project": "evilph", "version": "1.0.0", "changes": [
    {"id": "a", "sql": "CREATE TABLE evil.u (id int)", "search_path": "evil, pg_catalog, public"},
    {"id": "i", "sql": "CREATE INDEX CONCURRENTLY t_id_idx ON t (id)", "online": true, "search_path": "evil, pg_catalog, public"},
    {"id": "b", "sql": "CREATE TABLE evil.w (id int)", "commit_before": true, "search_path": "evil, pg_catalog, public"}]}' >"$TMP/m/evilph.json"
  eq "$(apply_as "$dep" "$TMP/m/evilph.json")" applied "applied"
  # Waited for on its own (one statement), under the same search_path.
  has "$(PGOPTIONS='-c client_min_messages=warning -c search_path=evil,pg_catalog,public' "${PSQL[@]}" \
           -v VERBOSITY=verbose -U "$dep" -d "$DB" -c "SELECT deploy.wait('evilph', '60s') ->> 'state'" 2>&1)" \
      '^done$' "phase done"
  eq "$(superuser_of "$dep")" f "the deployer is still not a superuser"
}

run_tests security-e2e "$@"
