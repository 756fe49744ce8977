#!/usr/bin/env bash
# End-to-end tests of the client's folder layouts added for issue 15 (diesel,
# goose, pop, Liquibase formatted SQL, sqlx, versioned folders) and
# placeholders: for each, detection, order, down/rollback as revert, the
# no-transaction marker, adopt from the tool's history table, and a replay of
# a small fixture written by hand in the tool's shape
# (pg_test/fixtures/layouts/<tool>, see each NOTICE; no third-party content)
# whose pg_dump -s equals psql running the same files in order. Real
# histories were checked by hand during development and are not kept here;
# REAL_HISTORY_<TOOL>=DIR (LIQUIBASE_HISTORY=DIR) replays a local copy the
# same way, skipped when unset (see "real histories" below); then the
# client's guidance: every offending file in one run, dump, hints that name
# grants and flags, no connection settings, a plan whose trial run failed.
# Same cluster setup as cli.sh (pg_test/cli_lib.sh); ports 5566-5568 unless
# CLI_PORT, CLI_COLD_PORT, CLI_BOUNCER_PORT say otherwise.
# Usage: pg_test/cli_layouts.sh [t_name ...]   (default: all tests)
# Prints "ok - name" / "not ok - name" and ends with "cli-layouts-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export CLI_PORT=${CLI_PORT:-5566} CLI_COLD_PORT=${CLI_COLD_PORT:-5567} CLI_BOUNCER_PORT=${CLI_BOUNCER_PORT:-5568}
# shellcheck source=cli_lib.sh
source "$PWD/pg_test/cli_lib.sh"
DB_PREFIX=lay_
L=$FIXTURES/layouts

# ---------------------------------------------------------------- helpers

# dump DB: the schema as pg_dump -s prints it, without pg_deploy's own schema
# (and without pg_dump 18's per-run \restrict keys).
dump() { pg_dump -s -N deploy -d "$1" | grep -Ev '^\\(un)?restrict '; }

# rawdb: a fresh database with the extension (created, never used), for psql replays; prints its name.
rawdb() {
  local raw=${DB}_raw
  createdb "$raw"
  "${PSQL[@]}" -d "$raw" -c "CREATE EXTENSION pg_deploy;"
  echo "$raw"
}

# psql_files DB FILE...: psql runs each file, in the order given, as the tool would.
psql_files() {
  local db=$1 f
  shift
  for f in "$@"; do "${PSQL[@]}" -d "$db" -f "$f" >/dev/null; done
}

# same_schema RAW: $DB's schema equals RAW's.
same_schema() {
  if ! diff <(dump "$1") <(dump "$DB") >"$TMP/out/schema.diff"; then
    head -40 "$TMP/out/schema.diff" >&2
    echo "pg_dump -s differs from the raw replay" >&2
    return 1
  fi
}

# ids: the change ids of the last manifest printed ($OUT), space-separated.
ids() { j "$OUT" '" ".join(c["id"] for c in r["changes"])'; }

# adopt_then_rest DIR TOOL BASELINED REST: adopt from TOOL's history records
# BASELINED (a JSON list), then apply runs REST (ids, space-separated) only.
adopt_then_rest() {
  pgd adopt "$1" --from "$2" --json
  eq "$RC" 0 "adopt"
  eq "$(j "$OUT" 'r["baselined"]')" "$3" "adopted"
  pgd apply "$1" --json
  eq "$RC" 0 "apply the rest"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log WHERE action = 'applied'")" \
    "$4" "the rest runs"
}

# db_named SUFFIX: another fresh database with the extension for the running test.
db_named() {
  DB=${DB_PREFIX}${CURRENT#t_}_$1
  createdb "$DB"
  q "CREATE EXTENSION pg_deploy;"
}

# deep_sql DIR: DIR's .sql files, sub-folders included, in the client's path order.
deep_sql() {
  local LC_ALL=C e
  for e in "$1"/*; do
    if [ -d "$e" ]; then deep_sql "$e"; elif [[ $e == *.sql ]]; then echo "$e"; fi
  done
}

# nothing_applied: bad input left the database as it was.
nothing_applied() { eq "$(q "SELECT count(*) FROM deploy.change_log")" 0 "nothing applied"; }

# ---------------------------------------------------------------- diesel

t_diesel() {
  newdb
  local src=$L/diesel/migrations
  pgd apply "$src" --json
  eq "$RC" 0 "apply"
  has "$ERR" "10 migration\(s\), layout diesel" "detected"
  eq "$(j "$OUT" 'len(r["applied"])')" 10 "applied"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY ordinal) FROM deploy.change_log")" \
    "$(cd "$src" && LC_ALL=C ls -d -- */ | tr -d / | tr '\n' ' ' | sed 's/ $//')" "folder order"
  eq "$(q "SELECT revert_sql FROM deploy.change_log WHERE change_id = '2020-03-14-091500_create_members'")" \
    "$(cat "$src/2020-03-14-091500_create_members/down.sql")" "down.sql as revert"
  eq "$(q "SELECT count(*) FROM pg_trigger WHERE tgname = 'stamp_updated_at'")" 2 "the setup's helper made the triggers"
  local raw; raw=$(rawdb)
  psql_files "$raw" "$src"/*/up.sql
  same_schema "$raw"
  # run_in_transaction = false makes a change online; -0000 names order as strings, after the old ones.
  local d; d=$(folder diesel)
  cp -r "$src"/. "$d"
  mkdir -p "$d/2023-09-01-000000-0000_member_name_idx" "$d/2024-01-01-000000-0000_member_note"
  echo 'CREATE INDEX CONCURRENTLY members_full_name_idx ON members (full_name);' >"$d/2023-09-01-000000-0000_member_name_idx/up.sql"
  echo 'run_in_transaction = false' >"$d/2023-09-01-000000-0000_member_name_idx/metadata.toml"
  echo 'ALTER TABLE members ADD COLUMN note text;' >"$d/2024-01-01-000000-0000_member_note/up.sql"
  pgd manifest "$d" --json
  eq "$(j "$OUT" '[c["id"] for c in r["changes"] if c.get("online")]')" '["2023-09-01-000000-0000_member_name_idx"]' "online"
  has "$(ids)" "2021-01-19-170000_add_isbn 2023-02-07-101010-0000_create_reviews 2023-08-30-154500-0000_open_loans_idx 2023-09-01-000000-0000_member_name_idx 2024-01-01-000000-0000_member_note$" "order"
  pgd apply "$d" --project migrations
  eq "$RC" 0 "apply the two new ones"
  eq "$(q "SELECT count(*) FROM pg_index WHERE indexrelid = 'members_full_name_idx'::regclass AND indisvalid")" 1 "index built"
  # adopt: diesel's history lists the first five (versions without dashes).
  otherdb
  local first=() v
  mapfile -t first < <(cd "$src" && LC_ALL=C ls -d -- */ | tr -d / | head -5)
  for v in "${first[@]}"; do psql_files "$DB" "$src/$v/up.sql"; done
  q "CREATE TABLE __diesel_schema_migrations (version varchar(50) PRIMARY KEY, run_on timestamp NOT NULL DEFAULT now());"
  for v in "${first[@]}"; do v=${v%%_*}; q "INSERT INTO __diesel_schema_migrations (version) VALUES ('${v//-/}')"; done
  pgd adopt "$src" --from diesel --json
  eq "$RC" 0 "adopt"
  eq "$(j "$OUT" 'len(r["baselined"])')" 5 "adopted"
  pgd apply "$src" --json
  eq "$(j "$OUT" 'len(r["applied"])')" 5 "the rest runs"
}

# ---------------------------------------------------------------- goose

# goose_up FILE: the up section of a goose file, as goose runs it (to stdout).
goose_up() { sed -n '/^-- +goose [Uu]p/,/^-- +goose [Dd]own/p' "$1"; }

t_goose() {
  newdb
  local src=$L/goose
  pgd apply "$src" --json
  eq "$RC" 0 "apply"
  has "$ERR" "6 migration\(s\) \(1 online\), layout goose" "detected"
  has "$ERR" "00004_empty.sql is empty: recorded as change \"00004_empty\"" "empty file: a warning"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log")" \
    "00001_products 00002_orders 00003_stock 00004_empty 00005_sku_idx 00006_place_order" "recorded in folder order"
  eq "$(q "SELECT revert_sql FROM deploy.change_log WHERE change_id = '00006_place_order'")" \
    "DROP FUNCTION IF EXISTS place_order(TEXT, INTEGER);" "down section as revert"
  local raw f; raw=$(rawdb)
  for f in "$src"/*.sql; do goose_up "$f" >"$TMP/w/$(basename "$f")"; done
  psql_files "$raw" "$TMP"/w/0000*.sql
  same_schema "$raw"
  # adopt: goose logs ups and downs; 3 was applied then rolled back.
  otherdb
  psql_files "$DB" "$TMP"/w/0000[12]_*.sql
  q "CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL,
       tstamp timestamp DEFAULT now());
     INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), (3, true), (3, false);"
  adopt_then_rest "$src" goose '["00001_products", "00002_orders"]' "00003_stock 00004_empty 00005_sku_idx 00006_place_order"
}

# ---------------------------------------------------------------- pop

# pop_files DIR: the up files pop runs on PostgreSQL, in order: per version
# the .postgres. file, else the generic one.
pop_files() {
  python3 - "$1" <<'PY'
import os, re, sys
d = sys.argv[1]; chosen = {}
for n in sorted(os.listdir(d)):
    m = re.match(r"^(\d+)_[^.]+(\.(\w+))?(\.autocommit)?\.up\.sql$", n)
    if not m or m.group(3) in ("mysql", "sqlite3", "cockroach"):
        continue
    if m.group(3) == "postgres" or m.group(1) not in chosen:
        chosen[m.group(1)] = n
for v in sorted(chosen):
    print(os.path.join(d, chosen[v]))
PY
}

t_pop_kratos() {
  newdb
  local src=$L/pop
  pgd apply "$src" --json
  eq "$RC" 0 "apply"
  has "$ERR" "12 migration\(s\) \(1 online\), layout pop" "detected"
  has "$ERR" "20220110120000_users_email_collation.postgres.up.sql is empty" "empty file: a warning"
  eq "$(q "SELECT checksum FROM deploy.change_log WHERE change_id = '20220104090100_users'")" \
    "sha256:$(sha256sum <"$src/20220104090100_users.postgres.up.sql" | cut -d' ' -f1)" "the postgres file, not mysql's or sqlite's"
  eq "$(q "SELECT revert_sql IS NOT NULL FROM deploy.change_log WHERE change_id = '20220104090100_users'")" t "down file as revert"
  local raw; raw=$(rawdb)
  mapfile -t files < <(pop_files "$src")
  psql_files "$raw" "${files[@]}"
  same_schema "$raw"
  # .autocommit. makes a one-statement file online.
  local d; d=$(folder pop)
  cp -r "$src"/. "$d"
  echo 'CREATE INDEX CONCURRENTLY posts_author_id_idx ON posts (author_id);' >"$d/20220601000000_posts_author_idx.autocommit.up.sql"
  printf 'CREATE INDEX IF NOT EXISTS threads_forum_id_idx ON threads (forum_id);\nCREATE INDEX IF NOT EXISTS threads_author_id_idx ON threads (author_id);\n' \
    >"$d/20220601000100_threads_idx.postgres.autocommit.up.sql"
  pgd manifest "$d" --json
  eq "$(j "$OUT" '[c["id"] for c in r["changes"] if c.get("online")]')" \
    '["20220201100100_votes_user_idx", "20220601000000_posts_author_idx"]' "online: one statement only"
  # adopt from schema_migration (pop's history): the first six versions.
  otherdb
  psql_files "$DB" "${files[@]:0:6}"
  q "CREATE TABLE schema_migration (version varchar(48) NOT NULL, version_self int NOT NULL DEFAULT 0);
     CREATE UNIQUE INDEX schema_migration_version_idx ON schema_migration (version);"
  local f; for f in "${files[@]:0:6}"; do f=$(basename "$f"); q "INSERT INTO schema_migration VALUES ('${f%%_*}')"; done
  pgd adopt "$src" --from pop --json
  eq "$(j "$OUT" 'len(r["baselined"])')" 6 "adopted"
  pgd apply "$src" --json
  # the first transaction's changes, then the steps after it (the online index, the rest)
  eq "$(j "$OUT" 'len(r["applied"]) + len(r["phases"]["changes"])')" 6 "the rest runs"
}

# pop folders may name their schema with a Go template, as supabase/auth's do:
# {{ index .Options "Namespace" }}.
t_pop_templates_and_placeholders() {
  newdb
  local src=$L/pop-templates
  q "CREATE SCHEMA accounts"
  pgd apply "$src"
  eq "$RC" 2 "no value: bad input"
  has "$ERR" "00_init_accounts_schema.up.sql:3: \{\{ index .Options \"Namespace\" \}\} has no value" "file and line"
  has "$ERR" "PG_DEPLOY_PLACEHOLDER_NAME" "hint names the environment variable"
  nothing_applied
  PG_DEPLOY_PLACEHOLDER_Namespace=accounts pgd apply "$src" --json
  eq "$RC" 0 "apply with the value from the environment"
  eq "$(j "$OUT" 'len(r["applied"])')" 8 "applied"
  local raw f; raw=$(rawdb)
  "${PSQL[@]}" -d "$raw" -c "CREATE SCHEMA accounts"
  mkdir -p "$TMP/w/tpl"
  for f in $(pop_files "$src"); do
    sed 's/{{ *index \.Options "Namespace" *}}/accounts/g' "$f" >"$TMP/w/tpl/$(basename "$f")"
  done
  psql_files "$raw" $(pop_files "$TMP/w/tpl")
  same_schema "$raw"
  # The same folder with --placeholder is the same change: nothing to do.
  pgd apply "$src" --placeholder Namespace=accounts --json
  eq "$(j "$OUT" 'r["outcome"]')" no-op "re-apply"
  # The checksum covers the rendered text: another value for the same database is an edit, and the hint names the flag.
  pgd apply "$src" --placeholder Namespace=accounts_other
  eq "$RC" 1 "another value: refused"
  has "$ERR" "ERROR 23000: .*8 applied change\(s\) no longer match" "a checksum mismatch for every change"
  has "$ERR" "--accept-changed ID" "the hint names the client's flag"
  if grep -q accept_changed <<<"$ERR"; then echo "the JSON option leaked into the hint" >&2; return 1; fi
  # Flyway's ${name} and FLYWAY_PLACEHOLDERS_NAME.
  otherdb
  local d; d=$(folder fly)
  printf 'CREATE SCHEMA ${app_schema};\n' >"$d/V1__schema.sql"
  printf 'CREATE TABLE ${app_schema}.t (id int);\n' >"$d/V2__t.sql"
  FLYWAY_PLACEHOLDERS_APP_SCHEMA=shop pgd apply "$d" --json
  eq "$RC" 0 "Flyway's environment variable"
  eq "$(q "SELECT to_regclass('shop.t') IS NOT NULL")" t "filled in"
}

# ---------------------------------------------------------------- liquibase

t_liquibase() {
  newdb
  local src=$L/liquibase files
  pgd apply "$src" --json
  eq "$RC" 0 "apply"
  has "$ERR" "6 migration\(s\) \(1 online\), layout liquibase" "detected"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY deployment_id, ordinal) FROM deploy.change_log")" \
    "alice:1 alice:2 bob:account-email-idx carol:login-table carol:account-summary dave:f_login_count" "recorded"
  eq "$(q "SELECT revert_sql FROM deploy.change_log WHERE change_id = 'alice:2'")" \
    "ALTER TABLE account DROP COLUMN created_at;" "--rollback as revert"
  eq "$(q "SELECT kind FROM deploy.change_log WHERE change_id = 'carol:account-summary'")" repeatable "runOnChange: repeatable"
  eq "$(q "SELECT kind FROM deploy.change_log WHERE change_id = 'dave:f_login_count'")" repeatable "a function a file, in a sub-folder"
  eq "$(q "SELECT public.f_login_count(1)")" 0 "one statement, semicolons inside"
  local raw; raw=$(rawdb)
  mapfile -t files < <(deep_sql "$src")
  psql_files "$raw" "${files[@]}"
  same_schema "$raw"
  # adopt from databasechangelog: MARK_RAN counts, FAILED does not.
  otherdb
  q "CREATE TABLE account (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL);
     CREATE TABLE databasechangelog (id varchar(255) NOT NULL, author varchar(255) NOT NULL, filename varchar(255) NOT NULL,
       dateexecuted timestamp NOT NULL DEFAULT now(), orderexecuted int NOT NULL, exectype varchar(10) NOT NULL,
       md5sum varchar(35), description varchar(255), comments varchar(255), tag varchar(255), liquibase varchar(20),
       contexts varchar(255), labels varchar(255), deployment_id varchar(10));
     INSERT INTO databasechangelog (id, author, filename, orderexecuted, exectype) VALUES
       ('1', 'alice', 'changelog/001-accounts.sql', 1, 'EXECUTED'),
       ('2', 'alice', 'changelog/001-accounts.sql', 2, 'FAILED');"
  adopt_then_rest "$src" liquibase '["alice:1"]' \
    "alice:2 bob:account-email-idx carol:login-table carol:account-summary dave:f_login_count"
}

# A real Liquibase formatted-SQL history kept outside the repository
# (LIQUIBASE_HISTORY=DIR; --placeholder flags in LIQUIBASE_PLACEHOLDERS):
# apply's schema equals psql replaying the same files in path order.
t_liquibase_history() {
  if [ -z "${LIQUIBASE_HISTORY:-}" ]; then
    echo "# SKIP LIQUIBASE_HISTORY names no folder"
    return 77
  fi
  newdb
  local src=$LIQUIBASE_HISTORY files
  # shellcheck disable=SC2086 # one word a flag
  pgd apply "$src" --layout liquibase ${LIQUIBASE_PLACEHOLDERS:-} --json
  eq "$RC" 0 "apply"
  local raw; raw=$(rawdb)
  mapfile -t files < <(deep_sql "$src")
  psql_files "$raw" "${files[@]}"
  same_schema "$raw"
}

# ---------------------------------------------------------------- sqlx

t_sqlx() {
  newdb
  local src=$L/sqlx
  pgd apply "$src" --layout sqlx --json
  eq "$RC" 0 "apply"
  has "$ERR" "4 migration\(s\) \(1 online\), layout sqlx" "layout"
  pgd plan "$src" --project sqlx
  has "$ERR" "layout plain" "detected as plain (the same reading)"
  has "$OUT" "no-op" "the same changes"
  local raw; raw=$(rawdb)
  psql_files "$raw" "$src"/*.sql
  same_schema "$raw"
  # Reversible files and -- no-transaction.
  otherdb
  local d; d=$(folder rev)
  echo 'CREATE TABLE todos (id bigserial PRIMARY KEY, description text NOT NULL);' >"$d/20200718111257_todos.up.sql"
  echo 'DROP TABLE todos;' >"$d/20200718111257_todos.down.sql"
  printf -- '-- no-transaction\nCREATE INDEX CONCURRENTLY todos_description ON todos (description);\n' >"$d/20200718111300_idx.up.sql"
  pgd apply "$d" --layout sqlx --json
  eq "$RC" 0 "apply"
  eq "$(q "SELECT revert_sql FROM deploy.change_log WHERE change_id = '20200718111257_todos'")" "DROP TABLE todos;" "down as revert"
  eq "$(j "$OUT" 'r["phases"]["steps"][0]["kind"]')" online "no-transaction: online"
  # adopt from _sqlx_migrations: cli.sh's t_adopt_sqlx covers the table; here the fixture.
  db_named adopt
  psql_files "$DB" "$src/20240301120000_create_members.sql"
  q "CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, description text NOT NULL,
       installed_on timestamptz NOT NULL DEFAULT now(), success boolean NOT NULL, checksum bytea NOT NULL,
       execution_time bigint NOT NULL);
     INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (20240301120000, 'create members', true, '\\x00', 1);"
  adopt_then_rest "$src" sqlx '["20240301120000_create_members"]' \
    "20240301120500_create_events 20240302090000_member_handle_idx 20240315080000_event_seats_left"
}

# ---------------------------------------------------------------- versioned folders

# versioned_files DIR: the v* folders' files in run order: folders by
# version, inside each manifest.json's SchemaUpdateCqlFiles, else file names.
versioned_files() {
  python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
vs = [v for v in os.listdir(d) if os.path.isdir(os.path.join(d, v)) and v[1:].replace(".", "").isdigit()]
for v in sorted(vs, key=lambda v: [int(x) for x in v[1:].split(".")]):
    m = os.path.join(d, v, "manifest.json")
    names = json.load(open(m)).get("SchemaUpdateCqlFiles") if os.path.exists(m) else None
    if names is None:
        names = sorted(f for f in os.listdir(os.path.join(d, v)) if f.endswith(".sql"))
    for f in names:
        print(os.path.join(d, v, f))
PY
}

t_versioned_temporal() {
  newdb
  local src=$L/versioned
  pgd apply "$src" --json
  eq "$RC" 0 "apply"
  has "$ERR" "10 migration\(s\), layout versioned" "detected"
  eq "$(q "SELECT string_agg(change_id, ' ' ORDER BY ordinal) FROM deploy.change_log")" \
    "v1.0/schema v1.1/item_barcode v1.2/shipments v1.5/shipment_lines v1.5/carriers v1.5/audit v1.9/a_reorder_level v1.9/b_low_stock_view v1.10/shipment_status v1.10/delivered_idx" \
    "v1.2 < v1.10; in a folder, manifest.json's order, else file names"
  local raw; raw=$(rawdb)
  mapfile -t files < <(versioned_files "$src/versioned")
  psql_files "$raw" "${files[@]}"
  same_schema "$raw"
  # adopt from temporal's schema_version: everything up to 1.5.
  otherdb
  local n; n=$(python3 -c 'import sys; print(sum(1 for f in sys.argv[1:] if [int(x) for x in f.split("/")[-2][1:].split(".")] <= [1, 5]))' "${files[@]}")
  eq "$n" 6 "six files up to 1.5"
  psql_files "$DB" "${files[@]:0:$n}"
  q "CREATE TABLE schema_version (version_partition int NOT NULL, db_name varchar(255) NOT NULL, creation_time timestamp,
       curr_version varchar(64), min_compatible_version varchar(64), PRIMARY KEY (version_partition, db_name));
     INSERT INTO schema_version VALUES (0, 'warehouse', now(), '1.5', '1.0');"
  pgd adopt "$src" --from temporal --json
  eq "$(j "$OUT" 'len(r["baselined"])')" "$n" "adopted up to 1.5"
  pgd apply "$src" --json
  eq "$(j "$OUT" 'len(r["applied"])')" $((${#files[@]} - n)) "the rest runs"
}

# ---------------------------------------------------------------- real histories

# The fixtures above are hand-written in each tool's shape; real histories
# (ory/kratos, supabase/auth, temporal, ...) were replayed by hand during
# development and are not kept in the repository. Point REAL_HISTORY_<TOOL>
# at a local copy to replay one again: REAL_HISTORY_DIESEL (the migrations
# folder), REAL_HISTORY_GOOSE, REAL_HISTORY_POP (with
# REAL_HISTORY_NAMESPACE=auth for {{ index .Options "Namespace" }}; the
# schema is created first), REAL_HISTORY_SQLX, REAL_HISTORY_VERSIONED
# (LIQUIBASE_HISTORY for Liquibase, above). Each is skipped when unset.

# by_version FILE...: the files ordered by the number their names start with.
by_version() {
  python3 - "$@" <<'PY'
import os, re, sys
for f in sorted(sys.argv[1:], key=lambda f: (int(re.match(r"\d*", os.path.basename(f)).group() or 0), f)):
    print(f)
PY
}

# real_files TOOL DIR: the files TOOL runs on PostgreSQL, in its order,
# prepared for psql under $TMP/w/real when the tool's text needs it.
real_files() {
  local tool=$1 dir=$2 w=$TMP/w/real f
  mkdir -p "$w"
  case $tool in
    diesel) (LC_ALL=C; printf '%s\n' "$dir"/*/up.sql) ;;
    goose)
      for f in "$dir"/*.sql; do goose_up "$f" >"$w/$(basename "$f")"; done
      by_version "$w"/*.sql ;;
    pop)
      for f in $(pop_files "$dir"); do
        sed "s/{{-\{0,1\} *index \.Options \"Namespace\" *-\{0,1\}}}/${REAL_HISTORY_NAMESPACE:-}/g" "$f" >"$w/$(basename "$f")"
      done
      pop_files "$w" ;;
    sqlx) by_version $(ls "$dir"/*.sql | grep -v '\.down\.sql$') ;;
    versioned) if [ -d "$dir/versioned" ]; then versioned_files "$dir/versioned"; else versioned_files "$dir"; fi ;;
  esac
}

# real_history TOOL: apply REAL_HISTORY_<TOOL> with --layout TOOL; its
# schema equals psql running the same files in the tool's order.
real_history() {
  local tool=$1 var src flags=()
  var=REAL_HISTORY_${tool^^}
  src=${!var:-}
  if [ -z "$src" ]; then
    echo "# SKIP $var names no folder"
    return 77
  fi
  newdb
  local raw; raw=$(rawdb)
  if [ -n "${REAL_HISTORY_NAMESPACE:-}" ]; then
    flags=(--placeholder "Namespace=$REAL_HISTORY_NAMESPACE")
    q "CREATE SCHEMA IF NOT EXISTS \"$REAL_HISTORY_NAMESPACE\""
    "${PSQL[@]}" -d "$raw" -c "CREATE SCHEMA IF NOT EXISTS \"$REAL_HISTORY_NAMESPACE\""
  fi
  pgd apply "$src" --layout "$tool" "${flags[@]}" --json
  eq "$RC" 0 "apply"
  mapfile -t files < <(real_files "$tool" "$src")
  psql_files "$raw" "${files[@]}"
  same_schema "$raw"
}

t_real_history_diesel() { real_history diesel; }
t_real_history_goose() { real_history goose; }
t_real_history_pop() { real_history pop; }
t_real_history_sqlx() { real_history sqlx; }
t_real_history_versioned() { real_history versioned; }

# ---------------------------------------------------------------- bad input

# Each: exit 2, the file (and line) named, nothing applied.
t_bad_input_names_file_and_line() {
  newdb
  local d
  d=$(folder pop2)
  echo 'CREATE TABLE a (id int);' >"$d/1_a.postgres.up.sql"
  echo 'CREATE TABLE b (id int);' >"$d/1_b.postgres.up.sql"
  pgd apply "$d"
  eq "$RC" 2 "two dialect files"
  has "$ERR" "two files for version 1 \(postgres\): .*1_a.postgres.up.sql and .*1_b.postgres.up.sql" "message"
  nothing_applied
  d=$(folder goose)
  printf -- '-- +goose Up\nCREATE TABLE a (id int);\n' >"$d/1_a.sql"
  printf -- '-- a migration\nCREATE TABLE b (id int);\n' >"$d/2_b.sql"
  pgd apply "$d"
  eq "$RC" 2 "goose file without +goose Up"
  has "$ERR" "2_b.sql:2: SQL before the \"-- \+goose Up\" annotation" "message"
  nothing_applied
  d=$(folder lb)
  printf -- '--liquibase formatted sql\n--changeset alice:1\nCREATE TABLE a (id int);\n\n--changeset alice\nCREATE TABLE b (id int);\n' >"$d/1.sql"
  pgd apply "$d"
  eq "$RC" 2 "changeset without an id"
  has "$ERR" "1.sql:5: the changeset has no id" "message"
  nothing_applied
  d=$(folder fly)
  printf 'CREATE TABLE a (id int);\n-- owned by ${owner}\nCREATE TABLE ${schema}.b (id int);\n' >"$d/V1__a.sql"
  pgd apply "$d" --placeholder owner=me
  eq "$RC" 2 "placeholder left unfilled"
  has "$ERR" "V1__a.sql:3: \\$\{schema\} has no value" "message"
  nothing_applied
}

# manifest and apply report every offending file in one run, not only the first.
t_every_offending_file_in_one_run() {
  newdb
  local d; d=$(folder gm)
  printf 'CREATE TABLE t (a int, b int);\n' >"$d/1_t.up.sql"
  printf 'ALTER TABLE t ADD c int;\nCREATE INDEX CONCURRENTLY t_c ON t (c);\n' >"$d/2_c.up.sql"
  printf -- '-- no-transaction\nVACUUM t;\nVACUUM t;\n' >"$d/3_vacuum.up.sql"
  printf 'ALTER TABLE t ADD d int;\nDROP INDEX CONCURRENTLY t_c;\n' >"$d/4_d.up.sql"
  local cmd
  for cmd in manifest apply; do
    pgd "$cmd" "$d"
    eq "$RC" 2 "$cmd: exit code"
    has "$ERR" "3 problems:" "$cmd: all counted"
    has "$ERR" "2_c.up.sql: CREATE INDEX CONCURRENTLY \(line 2\)" "$cmd: first file"
    has "$ERR" "3_vacuum.up.sql: sqlx's" "$cmd: second file"
    has "$ERR" "4_d.up.sql: DROP INDEX CONCURRENTLY \(line 2\)" "$cmd: third file"
  done
  nothing_applied
}

# File-name problems too: every bad name, duplicate and clashing dialect file in one run.
t_every_bad_name_in_one_run() {
  newdb
  local d; d=$(folder popnames)
  echo 'CREATE TABLE a (id int);' >"$d/1_a.postgres.up.sql"
  echo 'CREATE TABLE b (id int);' >"$d/1_b.postgres.up.sql"
  echo 'CREATE TABLE c (id int);' >"$d/add_c.up.sql"
  echo 'CREATE TABLE e (id int);' >"$d/3_e.oracle.up.sql"
  echo 'CREATE TABLE f (id int);' >"$d/4_f.up.sql"
  local cmd
  for cmd in manifest apply; do
    pgd "$cmd" "$d" --layout pop
    eq "$RC" 2 "$cmd: exit code"
    has "$ERR" "3 problems:" "$cmd: all counted"
    has "$ERR" "two files for version 1 \(postgres\)" "$cmd: two dialect files"
    has "$ERR" "add_c.up.sql is not a pop migration name" "$cmd: no version"
    has "$ERR" "3_e.oracle.up.sql is not a pop migration name" "$cmd: unknown dialect"
  done
  nothing_applied
  d=$(folder goosenames)
  printf -- '-- +goose Up\nCREATE TABLE a (id int);\n' >"$d/1_a.sql"
  printf -- '-- +goose Up\nCREATE TABLE b (id int);\n' >"$d/00001_b.sql"
  printf -- '-- +goose Up\nCREATE TABLE c (id int);\n' >"$d/add_c.sql"
  printf -- 'CREATE TABLE d (id int);\n' >"$d/2_d.sql"
  pgd apply "$d" --layout goose
  eq "$RC" 2 "goose: exit code"
  has "$ERR" "3 problems:" "goose: all counted"
  has "$ERR" "duplicate version 1: .*00001_b.sql and .*1_a.sql" "goose: duplicate"
  has "$ERR" "add_c.sql is not a goose migration name" "goose: no version"
  has "$ERR" "2_d.sql:1: SQL before" "goose: content, with its line"
  nothing_applied
}

# new in each layout's fixture: the file it names, once filled in, is read
# and applied as a change of that name; the same name twice is refused.
t_new_in_each_layout() {
  local tool sub want d f
  for tool in diesel goose pop sqlx liquibase; do
    db_named "$tool"
    d=$(folder "$tool")
    cp -r "$L/$tool/." "$d"
    sub=$d; [ "$tool" = diesel ] && sub=$d/migrations
    pgd new add_widgets "$sub" --layout "$tool"
    eq "$RC" 0 "$tool: new"
    f=$(head -1 <<<"$OUT")
    case $tool in
      goose) printf -- '-- +goose Up\nCREATE TABLE widgets (id int);\n-- +goose Down\nDROP TABLE widgets;\n' >"$f" ;;
      liquibase) printf 'CREATE TABLE widgets (id int);\n' >>"$f" ;;
      *) echo 'CREATE TABLE widgets (id int);' >"$f" ;;
    esac
    pgd apply "$sub" --layout "$tool"
    eq "$RC" 0 "$tool: apply"
    eq "$(q "SELECT count(*) FROM pg_tables WHERE tablename = 'widgets'")" 1 "$tool: the new migration ran"
    want=$(q "SELECT string_agg(change_id, ' ') FROM deploy.change_log")
    has "$want" "add_widgets" "$tool: recorded under its name"
    pgd new add_widgets "$sub" --layout "$tool"
    eq "$RC" 2 "$tool: the same name twice"
  done
}

# dump and apply --dump: the schema through pg_dump, like dbmate's schema.sql.
t_dump() {
  newdb
  pgd apply "$L/goose" --dump "$TMP/w/schema.sql"
  eq "$RC" 0 "apply --dump"
  has "$ERR" "schema written to $TMP/w/schema.sql" "said where"
  has "$(cat "$TMP/w/schema.sql")" "^CREATE TABLE public.products" "the schema"
  has "$(cat "$TMP/w/schema.sql")" "^CREATE UNIQUE INDEX products_sku_idx" "the online change's index too"
  if grep -Eq '^\\(un)?restrict ' "$TMP/w/schema.sql"; then echo "per-run keys left in" >&2; return 1; fi
  pgd dump
  eq "$RC" 0 "dump to stdout"
  eq "$OUT" "$(cat "$TMP/w/schema.sql")" "the same schema"
  PG_DUMP=/nonexistent/pg_dump pgd dump "$TMP/w/x.sql"
  eq "$RC" 1 "no pg_dump"
  has "$ERR" "cannot run /nonexistent/pg_dump" "named"
}

# ---------------------------------------------------------------- guidance

# A role without pg_deploy's grants gets a hint naming them.
t_permission_denied_names_the_grants() {
  newdb
  q "DROP ROLE IF EXISTS lay_nogrant; CREATE ROLE lay_nogrant LOGIN; GRANT CREATE ON SCHEMA public TO lay_nogrant"
  PGUSER=lay_nogrant pgd apply "$L/sqlx"
  eq "$RC" 1 "exit code"
  has "$ERR" "permission denied for schema deploy" "the server's error"
  has "$ERR" "GRANT USAGE ON SCHEMA deploy TO" "the grants"
  has "$ERR" "docs/governance.md" "where they are explained"
}

# No connection settings at all: said at once, with the defaults tried; no long wait.
t_no_connection_settings() {
  local start=$SECONDS
  set +e
  ERR=$(env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE -u DATABASE_URL USER=lay_nobody \
    "$BIN" status --connect-retry 60 2>&1 >/dev/null)
  RC=$?
  set -e
  echo "$ERR"
  eq "$RC" 3 "exit code"
  has "$ERR" "^pg-deploy: no connection settings given .*trying libpq's defaults, server .*:5432 \(database lay_nobody, user lay_nobody\)" "said at once"
  [ $((SECONDS - start)) -le 15 ] || { echo "waited $((SECONDS - start)) s" >&2; return 1; }
}

# A plan whose trial run fails never says "would apply".
t_plan_with_failed_trial_run() {
  newdb
  local d; d=$(folder failing)
  printf -- '-- +goose Up\nCREATE TABLE a (id int);\n' >"$d/1_a.sql"
  printf -- '-- +goose Up\nINSERT INTO a SELECT 1/0;\n' >"$d/2_b.sql"
  pgd plan "$d" --execute
  eq "$RC" 1 "exit code"
  has "$OUT" "would fail \(the trial run failed\)" "first line"
  if grep -q "would apply" <<<"$OUT"; then echo "said would apply" >&2; return 1; fi
}

# ---------------------------------------------------------------- runner

run_tests cli-layouts-e2e "$@"
