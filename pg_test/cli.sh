#!/usr/bin/env bash
# End-to-end tests of the pg-deploy command-line client against a real cluster
# (port 5491; the cold-start tests use a second one on 5492, PgBouncer 5493).
# Assumes the extension is installed (scripts/setup.sh); builds the client.
# Usage: pg_test/cli.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "cli-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${CLI_PORT:-5491}
COLD_PORT=${CLI_COLD_PORT:-5492}
BOUNCER_PORT=${CLI_BOUNCER_PORT:-5493}
FIXTURES=$ROOT/pg_test/fixtures

cargo build -q -p pg-deploy-cli
BIN=$ROOT/target/debug/pg-deploy

TMP=$(mktemp -d /tmp/pg_deploy_cli.XXXXXX)
chmod 755 "$TMP"
cleanup() {
  if [ -f "$TMP/pgbouncer.pid" ]; then kill "$(cat "$TMP/pgbouncer.pid")" 2>/dev/null || true; fi
  bash "$ROOT/scripts/cluster.sh" stop "$TMP/cold" >/dev/null 2>&1 || true
  bash "$ROOT/scripts/cluster.sh" stop "$TMP" || true
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

bash scripts/cluster.sh start "$TMP" "$PORT"
eval "$(bash scripts/cluster.sh env "$TMP")"
unset DATABASE_URL PGDATABASE PGPASSWORD
mkdir -p "$TMP/out" "$TMP/w"

# ---------------------------------------------------------------- helpers

DB_PREFIX=cli_

# pgd ARGS...: run the client against $DB; stdout in $OUT, stderr in $ERR, exit code in $RC.
pgd() {
  set +e
  OUT=$(PGDATABASE=$DB "$BIN" "$@" 2>"$TMP/out/stderr")
  RC=$?
  set -e
  ERR=$(cat "$TMP/out/stderr")
  printf '$ pg-deploy %s\n%s\n%s\n[exit %s]\n' "$*" "$OUT" "$ERR" "$RC"
}



# copy FIXTURE: a writable copy of a fixture folder; prints its path.
copy() {
  local dst=$TMP/w/${CURRENT#t_}_$1
  rm -rf "$dst"; cp -r "$FIXTURES/$1" "$dst"; echo "$dst"
}

# folder NAME: a fresh empty folder for the running test; prints its path.
folder() {
  local d=$TMP/w/${CURRENT#t_}_$1
  rm -rf "$d"; mkdir -p "$d"; echo "$d"
}

# otherdb: a second fresh database with the extension for the running test.
otherdb() {
  DB=${DB_PREFIX}${CURRENT#t_}_2
  createdb "$DB"
  q "CREATE EXTENSION pg_deploy;"
}

# stop_pgbouncer: stops the PgBouncer of start_pgbouncer, if any, and waits until it is gone.
stop_pgbouncer() {
  [ -f "$TMP/pgbouncer.pid" ] || return 0
  local pid; pid=$(cat "$TMP/pgbouncer.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$TMP/pgbouncer.pid"
}

# run_sql_of DIR: run every change's SQL from the folder's manifest by hand,
# as if the folder's own tool had applied it.
run_sql_of() {
  "$BIN" manifest "$@" --json | python3 -c 'import json, sys
for c in json.load(sys.stdin)["changes"]: print(c["sql"])' | "${PSQL[@]}" -d "$DB" >/dev/null
}

# apply_fixture NAME N CHECK_SQL EXPECTED: apply the fixture, expect N changes
# applied, CHECK_SQL to print EXPECTED, then a re-apply to be a no-op.
apply_fixture() {
  local name=$1 n=$2 check=$3 expected=$4
  newdb
  pgd apply "$FIXTURES/$name" --json
  eq "$RC" 0 "exit code"
  eq "$(j "$OUT" 'r["outcome"]')" applied "outcome"
  eq "$(j "$OUT" 'len(r["applied"])')" "$n" "changes applied"
  eq "$(q "$check")" "$expected" "$check"
  pgd apply "$FIXTURES/$name" --json
  eq "$RC" 0 "re-apply exit code"
  eq "$(j "$OUT" 'r["outcome"]')" no-op "re-apply outcome"
  eq "$(j "$OUT" 'len(r["skipped"])')" "$n" "re-apply skipped"
  pgd apply "$FIXTURES/$name"
  has "$OUT" "no-op" "human output"
}

# ---------------------------------------------------------------- formats

t_flyway() {
  apply_fixture flyway 4 "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log" \
    "V1__schema V1.2__customers V1.10__orders R__customer_names"
  eq "$(q "SELECT revert_sql IS NOT NULL FROM deploy.change_log WHERE change_id = 'V1.10__orders'")" t "undo kept as revert"
  # Editing the repeatable re-runs only it.
  local d; d=$(copy flyway)
  echo "CREATE OR REPLACE VIEW fly.customer_names AS SELECT name, id FROM fly.customers;" >"$d/R__customer_names.sql"
  pgd apply "$d" --project flyway --json
  eq "$(j "$OUT" '[c["id"] for c in r["rerun"]]')" '["R__customer_names"]' "rerun"
}

t_golang_migrate() {
  apply_fixture golang-migrate 3 "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log" \
    "1_schema 2_users 10_users_email"
}

t_dbmate() {
  apply_fixture dbmate 3 "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'dm'" 2
  eq "$(q "SELECT revert_sql FROM deploy.change_log WHERE change_id = '20240110120000_ledger'")" "DROP TABLE dm.ledger;" "down section kept as revert"
}

t_sqitch() {
  apply_fixture sqitch 3 "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log" "appschema users flips"
  eq "$(q "SELECT project FROM deploy.projects")" flipr "project from %project"
}

t_sqitch_verify_failure_rolls_back() {
  newdb
  local d; d=$(copy sqitch)
  printf 'BEGIN;\nSELECT 1/0 FROM flipr.flips;\nROLLBACK;\n' >"$d/verify/flips.sql"
  pgd apply "$d"
  eq "$RC" 1 "exit code"
  has "$ERR" "ERROR 22012" "verify error with SQLSTATE"
  eq "$(q "SELECT count(*) FROM pg_namespace WHERE nspname = 'flipr'")" 0 "nothing left"
  pgd apply "$d" --no-verify
  eq "$RC" 0 "--no-verify applies"
}

t_prisma() {
  apply_fixture prisma 2 "SELECT count(*) FROM pg_constraint WHERE conname = 'Order_userId_fkey'" 1
}

t_plain() {
  apply_fixture plain 4 "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log" \
    "1_schema 2_items 9_items_label 10_seed"
}

t_plan_then_apply_new_migration() {
  newdb
  local d; d=$(copy golang-migrate)
  pgd apply "$d" --project gm
  eq "$RC" 0 "first apply"
  printf 'ALTER TABLE gm.users ADD COLUMN name text;\n' >"$d/11_users_name.up.sql"
  pgd plan "$d" --project gm
  eq "$RC" 0 "plan exit code"
  has "$OUT" "apply +11_users_name" "plan lists the new migration"
  has "$OUT" "trial run: not executed" "no trial run unless asked"
  pgd plan "$d" --project gm --execute
  has "$OUT" "trial run: ok" "trial run"
  pgd apply "$d" --project gm --json
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["11_users_name"]' "only the new one"
  eq "$(j "$OUT" 'r["version"] + " " + r["previous_version"]')" "0.4.0 0.3.0" "version grows"
}

t_failed_change_exit_1() {
  newdb
  local d=$TMP/w/failing
  mkdir -p "$d"
  printf 'CREATE TABLE ok_one (id int);\n' >"$d/1_ok.sql"
  printf 'CREATE TABLE two (id int);\nSELECT nope FROM two;\n' >"$d/2_bad.sql"
  pgd apply "$d"
  eq "$RC" 1 "exit code"
  has "$ERR" 'apply failed: ERROR 42703: change "2_bad" of project "failing" failed at line 2' "message"
  has "$ERR" '^DETAIL: Statement 2 of 2' "detail"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname = 'ok_one'")" 0 "rolled back"
  pgd apply "$d" --json
  eq "$(j "$OUT" 'r["error"]["sqlstate"]')" 42703 "JSON error"
  pgd plan "$d" --execute
  eq "$RC" 1 "plan exit code"
  has "$OUT" "trial run FAILED" "plan says so"
}

t_status_and_drift() {
  newdb
  pgd apply "$FIXTURES/plain"
  pgd status
  eq "$RC" 0 "status exit code"
  has "$OUT" "^plain +0.4.0 +4 " "status line"
  pgd status --project plain --json
  eq "$(j "$OUT" 'r[0]["version"]')" 0.4.0 "status JSON"
  pgd drift --project plain
  eq "$RC" 0 "drift exit code"
  has "$OUT" "^no drift" "no drift after apply"
  q "CREATE TABLE plain.by_hand (id int)"
  pgd drift --project plain
  eq "$RC" 1 "drift exit code when objects changed by hand"
  has "$OUT" "added +table +plain.by_hand" "lists the object"
  pgd drift --project plain --json
  eq "$(j "$OUT" 'r[0]["change"]')" added "JSON rows"
  pgd apply "$FIXTURES/plain" --drift refuse
  eq "$RC" 1 "apply --drift refuse"
  has "$ERR" "ERROR 55000" "refused with 55000"
  pgd apply "$FIXTURES/plain" --drift warn --json
  eq "$RC" 0 "apply --drift warn"
  has "$(j "$OUT" 'r["warnings"]')" "by_hand" "drift in warnings"
}

t_missing_extension() {
  DB=cli_noext; createdb "$DB"
  pgd status
  eq "$RC" 1 "exit code"
  has "$ERR" "CREATE EXTENSION pg_deploy" "hint"
}

# Through PgBouncer in transaction mode: one statement per command, no session state.
t_through_pgbouncer() {
  newdb
  start_pgbouncer 2
  local url="postgres://postgres@127.0.0.1:$BOUNCER_PORT/$DB?sslmode=disable"
  pgd apply "$FIXTURES/dbmate" --database-url "$url" --json --wait 10
  eq "$RC" 0 "apply through pgbouncer"
  eq "$(j "$OUT" 'r["outcome"]')" applied "outcome"
  pgd plan "$FIXTURES/dbmate" --database-url "$url"
  eq "$RC" 0 "plan through pgbouncer"
  has "$OUT" "no-op" "plan says no-op"
  pgd status --database-url "$url" --json
  eq "$(j "$OUT" 'r[0]["project"]')" dbmate "status through pgbouncer"
  stop_pgbouncer
}

# ---------------------------------------------------------------- cold start

t_cold_start_wait() {
  local c=$TMP/cold
  bash scripts/cluster.sh start "$c" "$COLD_PORT"
  createdb -h 127.0.0.1 -p "$COLD_PORT" cold
  psql -X -q -h 127.0.0.1 -p "$COLD_PORT" -d cold -c 'CREATE EXTENSION pg_deploy'
  bash scripts/cluster.sh stop "$c"
  # The client starts while the server is down; the server comes up 3 s later.
  set +e
  "$BIN" apply "$FIXTURES/plain" --wait 60 --json \
    --database-url "postgres://postgres@127.0.0.1:$COLD_PORT/cold" >"$TMP/out/cold.out" 2>"$TMP/out/cold.err" &
  local pid=$!
  sleep 3
  bash scripts/cluster.sh start "$c" "$COLD_PORT"
  wait "$pid"; RC=$?
  set -e
  cat "$TMP/out/cold.err"
  eq "$RC" 0 "exit code"
  has "$(cat "$TMP/out/cold.err")" "is not ready: connection refused; retrying in" "retries said on stderr"
  eq "$(j "$(cat "$TMP/out/cold.out")" 'r["outcome"]')" applied "applied after the wait"
  # Nothing listening and a short wait: exit 3.
  bash scripts/cluster.sh stop "$c"
  local start=$SECONDS
  set +e
  "$BIN" status --wait 2 --database-url "postgres://postgres@127.0.0.1:$COLD_PORT/cold" 2>"$TMP/out/cold.err"; RC=$?
  set -e
  eq "$RC" 3 "exit code when it never comes up"
  has "$(cat "$TMP/out/cold.err")" "cannot connect: .*still after 2s" "message"
  [ $((SECONDS - start)) -le 6 ] || { echo "waited $((SECONDS - start)) s" >&2; return 1; }
}

# A fake server answers 57P03 "the database system is starting up" for 3 s,
# as PostgreSQL does during startup and crash recovery; then the real one starts.
t_starting_up_57P03() {
  local c=$TMP/cold
  bash scripts/cluster.sh start "$c" "$COLD_PORT"
  createdb -h 127.0.0.1 -p "$COLD_PORT" starting 2>/dev/null || true
  psql -X -q -h 127.0.0.1 -p "$COLD_PORT" -d starting -c 'CREATE EXTENSION IF NOT EXISTS pg_deploy'
  bash scripts/cluster.sh stop "$c"
  python3 - "$COLD_PORT" <<'PY' &
import socket, struct, sys, time
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16); srv.settimeout(0.2)
end = time.time() + 3
while time.time() < end:
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        continue
    conn.settimeout(2)
    try:
        n, code = struct.unpack("!ii", conn.recv(8))
        if code == 80877103:          # SSLRequest: no SSL here
            conn.sendall(b"N"); n, code = struct.unpack("!ii", conn.recv(8))
        conn.recv(max(n - 8, 0))
        fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
        conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
    except Exception:
        pass
    conn.close()
srv.close()
PY
  local fake=$!
  sleep 0.5
  set +e
  "$BIN" status --wait 60 --json \
    --database-url "postgres://postgres@127.0.0.1:$COLD_PORT/starting" >"$TMP/out/start.out" 2>"$TMP/out/start.err" &
  local pid=$!
  wait "$fake"
  bash scripts/cluster.sh start "$c" "$COLD_PORT"
  wait "$pid"; RC=$?
  set -e
  cat "$TMP/out/start.err"
  eq "$RC" 0 "exit code"
  has "$(cat "$TMP/out/start.err")" "is not ready: the database system is starting up \(57P03\); retrying" "57P03 retried"
  eq "$(cat "$TMP/out/start.out")" "[]" "status after the wait"
  bash scripts/cluster.sh stop "$c"
}

# A permanent refusal (unknown role) is not retried: exit 3 at once with the server's reason.
t_connect_refused_by_server_no_retry() {
  local start=$SECONDS
  set +e
  "$BIN" status --wait 30 --database-url "postgres://nobody@127.0.0.1:$PORT/postgres" 2>"$TMP/out/role.err"; RC=$?
  set -e
  cat "$TMP/out/role.err"
  eq "$RC" 3 "exit code"
  has "$(cat "$TMP/out/role.err")" 'ERROR 28000: role "nobody" does not exist' "server's reason"
  [ $((SECONDS - start)) -le 3 ] || { echo "retried a permanent error" >&2; return 1; }
}

# TLS as libpq's sslmode says: require encrypts without checking the
# certificate; verify-full checks it against sslrootcert (or PGSSLROOTCERT).
t_tls() {
  local c=$TMP/tls; mkdir -p "$c"
  ( cd "$c"
    openssl req -new -x509 -days 2 -nodes -subj "/CN=pg_deploy test CA" -keyout ca.key -out ca.crt
    openssl req -new -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out server.crt
  ) 2>/dev/null
  cp "$c/server.crt" "$c/server.key" "$TMP/data/"
  chown postgres: "$TMP/data/server.crt" "$TMP/data/server.key"; chmod 600 "$TMP/data/server.key"
  newdb
  q "ALTER SYSTEM SET ssl = on"; q "SELECT pg_reload_conf()" >/dev/null; sleep 0.5
  local url="postgres://postgres@localhost:$PORT/$DB"
  pgd status --database-url "$url?sslmode=require&application_name=tls-require"
  eq "$RC" 0 "sslmode=require"
  pgd status --database-url "$url?sslmode=verify-full&sslrootcert=$c/ca.crt"
  eq "$RC" 0 "sslmode=verify-full with the CA"
  PGSSLROOTCERT=$c/ca.crt pgd status --database-url "$url?sslmode=verify-ca"
  eq "$RC" 0 "sslmode=verify-ca with PGSSLROOTCERT"
  pgd status --wait 0 --database-url "$url?sslmode=verify-full"
  eq "$RC" 3 "verify-full without the CA"
  has "$ERR" "invalid peer certificate: UnknownIssuer" "message"
  pgd apply "$FIXTURES/plain" --database-url "$url?sslmode=require&application_name=tls-apply" --json
  eq "$(j "$OUT" 'r["outcome"]')" applied "apply over TLS"
  eq "$(q "SELECT count(*) FROM deploy.deployments d WHERE application_name = 'tls-apply'")" 1 "recorded"
  q "ALTER SYSTEM RESET ssl"; q "SELECT pg_reload_conf()" >/dev/null
}

# ---------------------------------------------------------------- adoption

t_adopt_dbmate() {
  newdb
  local d; d=$(copy dbmate)
  # As if dbmate had run the folder: its objects and its history table.
  run_sql_of "$d"
  q "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);
     INSERT INTO schema_migrations VALUES ('20240101120000'), ('20240102120000'), ('20240110120000');"
  pgd adopt "$d" --project dbmate --from dbmate --json
  eq "$RC" 0 "adopt exit code"
  eq "$(j "$OUT" 'r["baselined"]')" '["20240101120000_schema", "20240102120000_accounts", "20240110120000_ledger"]' "baselined"
  eq "$(q "SELECT string_agg(DISTINCT action, ',') FROM deploy.change_log")" baseline "recorded as baseline"
  cat >"$d/20240201120000_audit.sql" <<'SQL'
-- migrate:up
ALTER TABLE dm.accounts ADD COLUMN opened_at timestamptz;

-- migrate:down
ALTER TABLE dm.accounts DROP COLUMN opened_at;
SQL
  pgd apply "$d" --project dbmate --json
  eq "$RC" 0 "apply exit code"
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["20240201120000_audit"]' "only the new migration ran"
  eq "$(j "$OUT" 'len(r["skipped"])')" 3 "adopted ones skipped"
}

t_adopt_flyway() {
  newdb
  local d; d=$(copy flyway)
  run_sql_of "$d"
  q "CREATE TABLE flyway_schema_history (
       installed_rank integer PRIMARY KEY, version varchar(50), description varchar(200) NOT NULL,
       type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum integer,
       installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
       execution_time integer NOT NULL, success boolean NOT NULL);
     INSERT INTO flyway_schema_history VALUES
       (1, '1',    'schema',         'SQL', 'V1__schema.sql',         1, 'flyway', now(), 5, true),
       (2, '1.2',  'customers',      'SQL', 'V1.2__customers.sql',    2, 'flyway', now(), 5, true),
       (3, '1.10', 'orders',         'SQL', 'V1.10__orders.sql',      3, 'flyway', now(), 5, true),
       (4, NULL,   'customer names', 'SQL', 'R__customer_names.sql',  4, 'flyway', now(), 5, true),
       (5, '2',    'failed try',     'SQL', 'V2__failed_try.sql',     5, 'flyway', now(), 5, false);"
  pgd adopt "$d" --project flyway --from flyway --json
  eq "$RC" 0 "adopt exit code"
  eq "$(j "$OUT" 'r["baselined"]')" '["V1__schema", "V1.2__customers", "V1.10__orders", "R__customer_names"]' "baselined"
  printf 'ALTER TABLE fly.orders ADD COLUMN total numeric;\n' >"$d/V2__order_total.sql"
  pgd apply "$d" --project flyway --json
  eq "$RC" 0 "apply exit code"
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["V2__order_total"]' "only the new migration ran"
  # Adopting again changes nothing.
  pgd adopt "$d" --project flyway --from flyway --json
  eq "$(j "$OUT" 'r["baselined"]')" '[]' "second adopt"
}

t_adopt_sqitch() {
  newdb
  local d; d=$(copy sqitch)
  run_sql_of "$d" --no-verify
  q "CREATE SCHEMA sqitch;
     CREATE TABLE sqitch.changes (
       change_id text PRIMARY KEY, script_hash text, change text NOT NULL, project text NOT NULL,
       note text NOT NULL DEFAULT '', committed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
       committer_name text NOT NULL DEFAULT 'm', committer_email text NOT NULL DEFAULT 'm@x',
       planned_at timestamptz NOT NULL DEFAULT now(), planner_name text NOT NULL DEFAULT 'm',
       planner_email text NOT NULL DEFAULT 'm@x');
     INSERT INTO sqitch.changes (change_id, change, project) VALUES
       ('a1', 'appschema', 'flipr'), ('a2', 'users', 'flipr'), ('a3', 'flips', 'flipr'), ('o1', 'other', 'elsewhere');"
  pgd adopt "$d" --from sqitch --json
  eq "$RC" 0 "adopt exit code"
  eq "$(j "$OUT" 'r["baselined"]')" '["appschema", "users", "flips"]' "baselined, other projects ignored"
  pgd apply "$d" --json
  eq "$(j "$OUT" 'r["outcome"]')" no-op "nothing left to run"
}

t_adopt_sqlx() {
  newdb
  local d; d=$(copy plain)
  q "CREATE SCHEMA plain; CREATE TABLE plain.items (id int PRIMARY KEY, label text);
     CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
       installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL,
       checksum bytea NOT NULL, execution_time bigint NOT NULL);
     INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES
       (1, 'schema', true, '\\x00', 1), (2, 'items', true, '\\x00', 1), (9, 'items label', false, '\\x00', 1);"
  pgd adopt "$d" --project plain --from sqlx --json
  eq "$(j "$OUT" 'r["baselined"]')" '["1_schema", "2_items"]' "successful versions only"
  pgd apply "$d" --project plain --json
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["9_items_label", "10_seed"]' "the rest runs"
}

t_adopt_refusals() {
  newdb
  local d; d=$(copy golang-migrate)
  pgd adopt "$d" --project golang-migrate --from golang-migrate
  eq "$RC" 1 "no history table"
  has "$ERR" "there is no table schema_migrations" "message"
  q "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
     INSERT INTO schema_migrations VALUES (2, true);"
  pgd adopt "$d" --project golang-migrate --from golang-migrate
  eq "$RC" 1 "dirty"
  has "$ERR" "dirty at version 2" "message"
  q "UPDATE schema_migrations SET dirty = false"
  run_sql_of "$d"
  q "DROP INDEX gm.users_email"
  pgd adopt "$d" --project golang-migrate --from golang-migrate --json
  eq "$(j "$OUT" 'r["baselined"]')" '["1_schema", "2_users"]' "up to version 2"
  pgd apply "$d" --project golang-migrate --json
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["10_users_email"]' "the rest runs"
  pgd adopt "$d" --from liquibase
  eq "$RC" 2 "unknown tool"
}

t_baseline_through() {
  newdb
  local d; d=$(copy plain)
  q "CREATE SCHEMA plain; CREATE TABLE plain.items (id int PRIMARY KEY, label text);"
  pgd baseline "$d" --project plain --through 2_items
  eq "$RC" 0 "baseline exit code"
  has "$OUT" "recorded 2 change\(s\)" "human output"
  pgd apply "$d" --project plain --json
  eq "$(j "$OUT" '[c["id"] for c in r["applied"]]')" '["9_items_label", "10_seed"]' "the rest runs"
}

# ---------------------------------------------------------------- branch hook

t_branch_hook() {
  DB=cli_branch_main
  createdb "$DB"
  q "CREATE EXTENSION pg_deploy;"
  local d; d=$(copy golang-migrate)
  pgd apply "$d" --project app
  printf 'CREATE TABLE gm.sessions (id bigint PRIMARY KEY, user_id bigint REFERENCES gm.users);\n' >"$d/11_sessions.up.sql"
  set +e
  out=$(MIGRATIONS="$d" PG_DEPLOY="$BIN" PG_DEPLOY_ARGS="--project app" BRANCH=cli_branch_pr7 \
    BRANCH_CREATE_CMD='createdb -T cli_branch_main "$BRANCH"' \
    BRANCH_URL_CMD='echo "host=$PGHOST port=$PGPORT user=postgres dbname=$BRANCH"' \
    BRANCH_DROP_CMD='dropdb "$BRANCH"' \
    TEST_CMD='psql -X -At -d "$DATABASE_URL" -c "SELECT count(*) FROM gm.sessions"' \
    bash "$ROOT/examples/branch-hook.sh" 2>&1)
  RC=$?
  set -e
  echo "$out"
  eq "$RC" 0 "hook exit code"
  has "$out" "applied  11_sessions" "apply on the branch ran only the new change"
  has "$out" "app +0.4.0 +4 " "status on the branch"
  eq "$(psql -X -Atc "SELECT count(*) FROM pg_database WHERE datname = 'cli_branch_pr7'" -d postgres)" 0 "branch dropped"
  eq "$(q "SELECT count(*) FROM pg_class WHERE relname = 'sessions'")" 0 "main untouched"
  # A failing test still drops the branch, and the hook fails.
  set +e
  MIGRATIONS="$d" PG_DEPLOY="$BIN" PG_DEPLOY_ARGS="--project app" BRANCH=cli_branch_pr8 \
    BRANCH_CREATE_CMD='createdb -T cli_branch_main "$BRANCH"' \
    BRANCH_URL_CMD='echo "host=$PGHOST port=$PGPORT user=postgres dbname=$BRANCH"' \
    BRANCH_DROP_CMD='dropdb "$BRANCH"' TEST_CMD='false' \
    bash "$ROOT/examples/branch-hook.sh" >/dev/null 2>&1
  RC=$?
  set -e
  eq "$RC" 1 "hook exit code when tests fail"
  eq "$(psql -X -Atc "SELECT count(*) FROM pg_database WHERE datname = 'cli_branch_pr8'" -d postgres)" 0 "branch dropped after failure"
}

# ---------------------------------------------------------------- bad input

t_bad_input_unknown_layout() {
  DB=postgres
  pgd manifest "$FIXTURES/plain" --layout liquibase
  eq "$RC" 2 "exit code"
  # clap checks the value (layouts are a ValueEnum) and lists the layouts.
  has "$ERR" "invalid value 'liquibase' for '--layout <LAYOUT>'" "message"
  has "$ERR" "possible values: flyway, golang-migrate, dbmate, sqitch, prisma, plain" "hint"
  mkdir -p "$TMP/w/empty"; echo "notes" >"$TMP/w/empty/README.md"
  pgd apply "$TMP/w/empty"
  eq "$RC" 2 "undetectable layout"
  has "$ERR" "cannot tell the layout" "message"
  pgd apply "$TMP/w/does-not-exist"
  eq "$RC" 2 "missing folder"
  has "$ERR" "cannot read folder" "message"
}

t_bad_input_duplicate_versions() {
  DB=postgres
  local d; d=$(copy flyway)
  printf 'SELECT 1;\n' >"$d/V1.2.0__again.sql"
  pgd apply "$d"
  eq "$RC" 2 "flyway exit code"
  has "$ERR" "duplicate version 1.2: .*V1.2(.0)?__.*V1.2(.0)?__" "flyway message"
  d=$(copy golang-migrate)
  printf 'SELECT 1;\n' >"$d/0002_again.up.sql"
  pgd manifest "$d"
  eq "$RC" 2 "golang-migrate exit code"
  has "$ERR" "duplicate version 2" "golang-migrate message"
  d=$(copy dbmate)
  printf -- '-- migrate:up\nSELECT 1;\n' >"$d/20240101120000_again.sql"
  pgd manifest "$d"
  eq "$RC" 2 "dbmate exit code"
}

t_bad_input_unreadable_file() {
  DB=postgres
  local d; d=$(copy flyway)
  ln -s "$TMP/nowhere.sql" "$d/V3__gone.sql"
  pgd apply "$d"
  eq "$RC" 2 "dangling file"
  has "$ERR" "cannot read .*V3__gone.sql: No such file" "message"
  d=$(copy plain)
  printf 'SELECT \xff\xfe;\n' >"$d/11_latin1.sql"
  pgd apply "$d"
  eq "$RC" 2 "non-UTF-8 file"
  has "$ERR" "11_latin1.sql is not valid UTF-8" "message"
  d=$(copy plain)
  chmod 000 "$d/2_items.sql"
  set +e
  out=$(runuser -u postgres -- "$BIN" manifest "$d" 2>&1); RC=$?
  set -e
  chmod 644 "$d/2_items.sql"
  eq "$RC" 2 "unreadable file"
  has "$out" "cannot read .*2_items.sql: Permission denied" "message"
  d=$(copy plain)
  printf 'this is not sql\n' >"$d/3_typo.sql"
  pgd apply "$d" --release not-a-version
  eq "$RC" 2 "bad --release"
  has "$ERR" 'invalid manifest \(22023\): version: "not-a-version" is not a semantic version' "message"
}

# revert goes back with the stored down scripts; verify-log checks the chain.
t_revert_and_verify_log() {
  newdb
  local dir
  dir=$(copy golang-migrate)
  pgd apply "$dir" --release 1.0.0
  eq "$RC" 0 "apply 1.0.0"
  printf 'CREATE TABLE later (id int);\n' >"$dir/900_later.up.sql"
  printf 'DROP TABLE later;\n' >"$dir/900_later.down.sql"
  pgd apply "$dir" --release 1.1.0
  eq "$RC" 0 "apply 1.1.0"
  pgd revert --project "$(basename "$dir")" --to 1.0.0
  eq "$RC" 0 "revert exit code"
  has "$OUT" "reverted from 1.1.0 to 1.0.0" "revert report"
  has "$OUT" "undid 900_later" "undone change"
  eq "$(q "SELECT to_regclass('later') IS NULL")" t "table gone"
  pgd verify-log
  eq "$RC" 0 "verify-log exit code"
  has "$OUT" "log intact" "intact"
  q "UPDATE deploy.deployments SET applied_by = 'mallory' WHERE id = 1"
  pgd verify-log --json
  eq "$RC" 1 "verify-log exit code when broken"
  eq "$(j "$OUT" 'r[0]["first_broken_id"]')" 1 "first broken id"
}

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

# ---------------------------------------------------------------- runner

run_tests cli-e2e "$@"
