#!/usr/bin/env bash
# Fleet rollout: one migrations folder to many databases (a database per
# tenant, per region, per customer), with a canary, using only pg-deploy and
# psql (docs/cli.md#fleets).
#
#   status (outliers?) -> dry run with a trial -> canary -> the rest -> report -> status
#
# Exit code: 0 when every target is deployed; else the failing step's
# (pg-deploy: 1 a target failed, 2 bad input, 3 targets unreachable).
#
# Settings (environment):
#   MIGRATIONS      migrations folder                                    (default: migrations)
#   PROJECT         pg_deploy project                                    (default: the folder's name)
#   TARGETS         targets file, canaries first (one connection string a line)
#   DISCOVER        or/and: a glob of database names, e.g. 'tenant_*', found on the
#                   server of DATABASE_URL (or PG*)
#   CANARY          how many targets go first, alone                     (default: 1)
#   PARALLEL        targets at once                                      (default: 8)
#   TARGET_TIMEOUT  give up on (and roll back) one target after this     (default: 10min)
#   REPORT          where the JSON report goes                           (default: fleet-report.json)
#   ALLOW_OUTLIERS=1  roll out even when status flags outliers before
#   PG_DEPLOY       the client                                           (default: pg-deploy)
#
# Example:
#   TARGETS=fleet.txt PROJECT=shop MIGRATIONS=db/migrations bash examples/fleet-rollout.sh
#   DISCOVER='tenant_*' DATABASE_URL=postgres://deployer@db1/postgres bash examples/fleet-rollout.sh
set -euo pipefail

MIGRATIONS=${MIGRATIONS:-migrations}
PG_DEPLOY=${PG_DEPLOY:-pg-deploy}
REPORT=${REPORT:-fleet-report.json}
fleet=()
[ -n "${TARGETS:-}" ] && fleet+=(--targets "$TARGETS")
[ -n "${DISCOVER:-}" ] && fleet+=(--discover "$DISCOVER")
if [ ${#fleet[@]} = 0 ]; then echo "set TARGETS (a targets file) and/or DISCOVER (a pattern)" >&2; exit 2; fi
fleet+=(--parallel "${PARALLEL:-8}" --target-timeout "${TARGET_TIMEOUT:-10min}")
project=()
[ -n "${PROJECT:-}" ] && project=(--project "$PROJECT")

say() { echo "==> fleet-rollout: $*" >&2; }

say "status before (outliers: version skew, drift, failed or unfinished deployments, unreachable)"
if ! "$PG_DEPLOY" status "${project[@]}" "${fleet[@]}"; then
  if [ "${ALLOW_OUTLIERS:-0}" != 1 ]; then
    say "the fleet has outliers; fix them first, or set ALLOW_OUTLIERS=1"
    exit 1
  fi
  say "going on despite the outliers (ALLOW_OUTLIERS=1)"
fi

say "dry run: what would change where, with a trial run that is rolled back"
"$PG_DEPLOY" plan "$MIGRATIONS" "${project[@]}" "${fleet[@]}" --execute -q

say "rollout: ${CANARY:-1} canary target(s) first, then the rest"
set +e
"$PG_DEPLOY" apply "$MIGRATIONS" "${project[@]}" "${fleet[@]}" --canary "${CANARY:-1}" --json >"$REPORT"
rc=$?
set -e

# The report is JSON; psql reads it, so nothing but the client and psql is needed.
say "report ($REPORT):"
psql -X -q -At -v report="$(cat "$REPORT")" -d "${REPORT_DB:-postgres}" <<'SQL'
SELECT format('%s target(s): %s succeeded, %s failed, %s skipped',
              r -> 'summary' ->> 'targets', r -> 'summary' ->> 'succeeded',
              r -> 'summary' ->> 'failed', r -> 'summary' ->> 'skipped')
  FROM (SELECT :'report'::jsonb AS r) x;
SELECT format('  %s %s: %s %s', x ->> 'outcome', x ->> 'target', coalesce(x ->> 'sqlstate', ''), coalesce(x ->> 'error', ''))
  FROM jsonb_array_elements((:'report'::jsonb) -> 'rows') x
 WHERE x ->> 'outcome' IN ('failed', 'timed-out');
SQL

say "status after"
"$PG_DEPLOY" status "${project[@]}" "${fleet[@]}" || true
exit "$rc"
