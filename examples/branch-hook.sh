#!/usr/bin/env bash
# Branch hook: try a migrations folder on a throwaway branch of the database.
#
#   create branch -> pg-deploy apply -> run tests -> pg-deploy status -> drop branch
#
# Written for any Postgres that offers branches (Neon, Lakebase, Supabase
# branching, Aurora clones, ...) or templates: each step that talks to the
# provider is a command you set. The branch is dropped however the hook ends
# (unless KEEP_BRANCH=1). Exit code: 0 when apply and the tests pass, else the
# failing step's code (pg-deploy: 1 change failed/refused, 2 bad input,
# 3 cannot connect).
#
# Settings (environment):
#   MIGRATIONS         migrations folder                      (default: migrations)
#   BRANCH             branch name                            (default: pr-<epoch seconds>)
#   BRANCH_CREATE_CMD  creates $BRANCH                        (default: createdb -T "$MAIN_DB" "$BRANCH")
#   BRANCH_URL_CMD     prints the branch's connection string  (default: libpq key=value for local $BRANCH)
#   BRANCH_DROP_CMD    drops $BRANCH                          (default: dropdb --if-exists "$BRANCH")
#   TEST_CMD           the tests; they find the branch in DATABASE_URL (default: none)
#   MAIN_DB            template database for the defaults     (default: $PGDATABASE or postgres)
#   PG_DEPLOY          the client                             (default: pg-deploy)
#   PG_DEPLOY_ARGS     extra arguments for apply, e.g. "--project shop --release 1.4.0"
#   KEEP_BRANCH=1      leave the branch for inspection
#
# The commands run with bash -c and see BRANCH (and DATABASE_URL once known).
#
# Examples:
#   # Neon (neonctl):
#   BRANCH_CREATE_CMD='neonctl branches create --name "$BRANCH"' \
#   BRANCH_URL_CMD='neonctl connection-string "$BRANCH"' \
#   BRANCH_DROP_CMD='neonctl branches delete "$BRANCH"' \
#   TEST_CMD='npm test' bash examples/branch-hook.sh
#
#   # Any PostgreSQL: a "branch" is a database created from a template
#   # (the template must have no other connections while it is copied):
#   MAIN_DB=app TEST_CMD='pytest tests/db' bash examples/branch-hook.sh
set -euo pipefail

MIGRATIONS=${MIGRATIONS:-migrations}
export BRANCH=${BRANCH:-pr-$(date +%s)}
export MAIN_DB=${MAIN_DB:-${PGDATABASE:-postgres}}
BRANCH_CREATE_CMD=${BRANCH_CREATE_CMD:-'createdb -T "$MAIN_DB" "$BRANCH"'}
BRANCH_URL_CMD=${BRANCH_URL_CMD:-'echo "dbname=$BRANCH"'}
BRANCH_DROP_CMD=${BRANCH_DROP_CMD:-'dropdb --if-exists "$BRANCH"'}
TEST_CMD=${TEST_CMD:-}
PG_DEPLOY=${PG_DEPLOY:-pg-deploy}
read -r -a DEPLOY_ARGS <<<"${PG_DEPLOY_ARGS:-}"

say() { echo "==> branch-hook: $*" >&2; }

drop_branch() {
  local rc=$?
  if [ "${KEEP_BRANCH:-0}" = 1 ]; then
    say "keeping branch $BRANCH"
  else
    say "dropping branch $BRANCH"
    bash -c "$BRANCH_DROP_CMD" || say "could not drop branch $BRANCH"
  fi
  exit "$rc"
}

say "creating branch $BRANCH"
bash -c "$BRANCH_CREATE_CMD"
trap drop_branch EXIT

DATABASE_URL=$(bash -c "$BRANCH_URL_CMD")
export DATABASE_URL

say "applying $MIGRATIONS to $BRANCH"
"$PG_DEPLOY" apply "$MIGRATIONS" "${DEPLOY_ARGS[@]}"

if [ -n "$TEST_CMD" ]; then
  say "running tests: $TEST_CMD"
  bash -c "$TEST_CMD"
fi

say "status of $BRANCH"
"$PG_DEPLOY" status
