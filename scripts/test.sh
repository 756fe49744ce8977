#!/usr/bin/env bash
# All tests: core unit tests, #[pg_test]s, end-to-end tests.
# Ends with "summary: N passed, M failed"; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Without a fresh build+install the later stages would test a stale extension.
if ! bash scripts/setup.sh; then
  echo "summary: 0 passed, 1 failed"
  exit 1
fi

LOGS=$(mktemp -d /tmp/pg_deploy_test.XXXXXX)
# Parent dir for the #[pg_test] cluster; pgrx creates PGDATA inside it as postgres.
PGTEST_BASE=$(mktemp -d /tmp/pg_deploy_pgtest.XXXXXX)
chown postgres: "$PGTEST_BASE"
trap 'rm -rf "$LOGS" "$PGTEST_BASE"' EXIT

passed=0 failed=0

# stage NAME CMD...: run CMD, tee its output, add up its test counts.
# A stage that fails without reporting a failed test (e.g. a build error) counts as one failure.
stage() {
  local name=$1 log=$LOGS/$1.log rc p f
  shift
  echo "==> $name: $*"
  set +e
  "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  # cargo: "test result: ok. 3 passed; 0 failed; ..."; e2e: "e2e: 3 passed, 0 failed"; "cli-e2e: 3 passed, 0 failed", "security-e2e: …"
  read -r p f < <(sed -nE 's/^(test result: [A-Za-z]+\.|([a-z0-9]+-)*e2e:) ([0-9]+) passed[;,] ([0-9]+) failed.*/\3 \4/p' "$log" |
                   awk '{p += $1; f += $2} END {print p + 0, f + 0}')
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "==> $name exited $rc"; fi
  echo "==> $name: $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
  local major=15
  [[ $name =~ pg([0-9]+)$ ]] && major=${BASH_REMATCH[1]}
  by_major[$major]=$(( ${by_major[$major]:-0} + p ))
  failed_major[$major]=$(( ${failed_major[$major]:-0} + f ))
}
declare -A by_major failed_major

stage lint bash "$ROOT/scripts/lint.sh"
stage unit cargo test -p pg_deploy_core
# One test at a time: each #[pg_test] holds its transaction open, and two
# writing the same deploy rows in opposite orders can deadlock.
stage pg_test env RUST_TEST_THREADS=1 cargo pgrx test pg15 --runas postgres --pgdata "$PGTEST_BASE"
# cargo pgrx test installed its debug build into PostgreSQL 15: the suites on
# 15 below test the release build that setup.sh installed, as users run it.
stage reinstall-release cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config
stage pg_test_pg16 bash "$ROOT/scripts/test-pg.sh" 16
stage pg_test_pg18 bash "$ROOT/scripts/test-pg.sh" 18
stage e2e bash "$ROOT/pg_test/run.sh"
stage security-e2e bash "$ROOT/pg_test/security.sh"
stage lineage-e2e bash "$ROOT/pg_test/lineage.sh"
stage phases-e2e bash "$ROOT/pg_test/phases.sh"
stage upgrade-e2e bash "$ROOT/pg_test/upgrade.sh"
stage portability-e2e bash "$ROOT/pg_test/portability.sh"
# The end-to-end suites on the other majors; 16 first: the pg_upgrade test on
# 18 upgrades a 16 cluster, which needs pg_deploy installed in 16.
stage e2e-pg16 bash "$ROOT/scripts/e2e-pg.sh" 16 run security lineage phases upgrade portability cli cli_phases cli_layouts
stage e2e-pg18 bash "$ROOT/scripts/e2e-pg.sh" 18 run security lineage phases upgrade portability cli cli_phases cli_layouts
stage cli cargo test -p pg-deploy-cli
stage cli-e2e bash "$ROOT/pg_test/cli.sh"
stage cli-phases-e2e bash "$ROOT/pg_test/cli_phases.sh"
stage cli-fleet-e2e bash "$ROOT/pg_test/cli_fleet.sh"
stage cli-layouts-e2e bash "$ROOT/pg_test/cli_layouts.sh"
# The README's first command, as a newcomer runs it.
stage demo-e2e bash "$ROOT/pg_test/demo.sh"

for major in 15 16 18; do
  echo "==> PostgreSQL $major: ${by_major[$major]:-0} passed, ${failed_major[$major]:-0} failed"
done
echo "==> PostgreSQL 17: not tested (no installable PostgreSQL 17 with server headers in the package registries)"
echo "summary: $passed passed, $failed failed"
[ "$failed" = 0 ]
