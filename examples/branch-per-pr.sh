#!/usr/bin/env bash
# Branch per pull request: a CI job that gives each pull request its own
# branch of production, deploys the pull request's migrations there, tests
# them, and shows how the branch now differs from production. Only pg-deploy
# and psql (plus your provider's branch command, if any) are used.
#
#   on push to the PR:  bash examples/branch-per-pr.sh up     (create the branch once, apply, test, compare)
#   on PR close/merge:  bash examples/branch-per-pr.sh down   (drop the branch)
#   after merge:        pg-deploy apply "$MIGRATIONS" --database-url "$PROD_URL"  (the same changes, the same manifest)
#
# A branch copies pg_deploy's history with the data, so apply on the branch
# runs only what the pull request adds, exactly as it will later run on
# production; `pg-deploy compare` then shows the difference (history and
# schema), and after the merge production and the branch have the same schema
# fingerprint and manifest hash.
#
# Settings (environment):
#   MIGRATIONS         migrations folder                               (default: migrations)
#   PROJECT            pg_deploy project                               (default: the folder's name)
#   PR_NUMBER          the pull request                                (default: local)
#   PROD_DB            production database, for the local defaults     (default: app)
#   PROD_URL           production's connection string                  (default: dbname=$PROD_DB)
#   BRANCH             branch name                                     (default: ${PROD_DB}_pr_$PR_NUMBER)
#   BRANCH_CREATE_CMD  creates $BRANCH from production   (default: CREATE DATABASE "$BRANCH" TEMPLATE "$PROD_DB",
#                      which needs production free of other connections while it copies: use your provider's
#                      branch command for a live database, e.g. neonctl branches create --name "$BRANCH")
#   BRANCH_URL_CMD     prints the branch's connection string           (default: dbname=$BRANCH)
#   BRANCH_DROP_CMD    drops $BRANCH                                   (default: DROP DATABASE IF EXISTS)
#   TEST_CMD           the tests; they find the branch in DATABASE_URL (default: none)
#   PG_DEPLOY          the client                                      (default: pg-deploy)
#
# Exit code: 0 when apply and the tests pass on the branch; else the failing
# step's (pg-deploy: 1 a change failed/refused, 2 bad input, 3 cannot connect).
set -euo pipefail

MODE=${1:-up}
MIGRATIONS=${MIGRATIONS:-migrations}
export PROD_DB=${PROD_DB:-app}
PROD_URL=${PROD_URL:-dbname=$PROD_DB}
export BRANCH=${BRANCH:-${PROD_DB}_pr_${PR_NUMBER:-local}}
BRANCH_CREATE_CMD=${BRANCH_CREATE_CMD:-'psql -X -q -d postgres -c "CREATE DATABASE \"$BRANCH\" TEMPLATE \"$PROD_DB\""'}
BRANCH_URL_CMD=${BRANCH_URL_CMD:-'echo "dbname=$BRANCH"'}
BRANCH_DROP_CMD=${BRANCH_DROP_CMD:-'psql -X -q -d postgres -c "DROP DATABASE IF EXISTS \"$BRANCH\""'}
PG_DEPLOY=${PG_DEPLOY:-pg-deploy}
project=()
[ -n "${PROJECT:-}" ] && project=(--project "$PROJECT")

say() { echo "==> branch-per-pr: $*" >&2; }

if [ "$MODE" = down ]; then
  say "dropping branch $BRANCH"
  bash -c "$BRANCH_DROP_CMD"
  exit 0
fi
[ "$MODE" = up ] || { echo "usage: $0 up|down" >&2; exit 2; }

# One branch per pull request, kept across pushes: a later push applies only
# its new migrations (a rewritten migration is refused: drop and branch again).
branch_url=$(bash -c "$BRANCH_URL_CMD")
if psql -X -At -d "$branch_url" -c 'SELECT 1' >/dev/null 2>&1; then
  say "branch $BRANCH exists"
else
  say "creating branch $BRANCH from production"
  bash -c "$BRANCH_CREATE_CMD"
  branch_url=$(bash -c "$BRANCH_URL_CMD")
fi
export DATABASE_URL=$branch_url

say "what this pull request would do to production (dry run, nothing changes)"
"$PG_DEPLOY" plan "$MIGRATIONS" "${project[@]}" --database-url "$PROD_URL" -q || true

say "applying $MIGRATIONS to $BRANCH"
"$PG_DEPLOY" apply "$MIGRATIONS" "${project[@]}"

if [ -n "${TEST_CMD:-}" ]; then
  say "running tests: $TEST_CMD"
  bash -c "$TEST_CMD"
fi

say "how $BRANCH differs from production (history and schema)"
name=${PROJECT:-$(basename "$MIGRATIONS")}
"$PG_DEPLOY" compare "$PROD_URL" "$branch_url" --project "$name" || true
