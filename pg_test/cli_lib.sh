# Shared by the client's end-to-end suites (cli.sh, cli_phases.sh): a
# cluster on $PORT, the client built, helpers. Sourced, not run.

ROOT=$PWD
# shellcheck source=lib.sh
source "$ROOT/pg_test/lib.sh"
PORT=${CLI_PORT:-5491}
COLD_PORT=${CLI_COLD_PORT:-5492}
BOUNCER_PORT=${CLI_BOUNCER_PORT:-5493}
FIXTURES=$ROOT/pg_test/fixtures

cargo build -q -p pg-deploy-cli
# Where cargo put it: CARGO_TARGET_DIR when set (a worktree's own), else target/.
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug/pg-deploy

start_cluster cli "$PORT"
chmod 755 "$TMP"
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
