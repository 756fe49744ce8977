#!/usr/bin/env bash
# End-to-end tests of the pg-deploy command-line client against a real cluster
# (port 5491; the cold-start tests use a second one on 5492, PgBouncer 5493).
# Assumes the extension is installed (scripts/setup.sh); builds the client.
# Usage: pg_test/cli.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "cli-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=cli_lib.sh
source "$PWD/pg_test/cli_lib.sh"

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
  grep -q -- "--with-\(openssl\|ssl\)" <<<"$("${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_config" --configure)" \
    || skip "this server, $("${PG_BIN:-/usr/lib/postgresql/15/bin}/pg_config" --version) is built without SSL"
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
  pgd adopt "$d" --from atlas
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
  pgd manifest "$FIXTURES/plain" --layout atlas
  eq "$RC" 2 "exit code"
  # clap checks the value (layouts are a ValueEnum) and lists the layouts.
  has "$ERR" "invalid value 'atlas' for '--layout <LAYOUT>'" "message"
  has "$ERR" "possible values: flyway, golang-migrate, dbmate, sqitch, prisma, diesel, goose, pop, liquibase, sqlx, versioned, plain" "hint"
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

# ---------------------------------------------------------------- runner

run_tests cli-e2e "$@"
