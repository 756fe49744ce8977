#!/usr/bin/env bash
# The README's first command, run as a newcomer runs it: `bash scripts/demo.sh`
# (setup, a throwaway cluster, examples/bookings v1 then v2, status), then
# what it printed is checked. Port 5497 unless DEMO_PORT says otherwise.
# Prints "ok - name" / "not ok - name" and ends with "demo-e2e: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=$(mktemp /tmp/pg_deploy_demo_test.XXXXXX)
trap 'rm -f "$OUT"' EXIT

PORT=${DEMO_PORT:-5497} bash scripts/demo.sh >"$OUT" 2>&1
rc=$?
passed=0 failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "ok - $name"
    passed=$((passed + 1))
  else
    echo "not ok - $name"
    failed=$((failed + 1))
  fi
}
# The report of each apply, as jsonb_pretty prints it.
has() { grep -Eq -- "$1" "$OUT"; }
count() { grep -Ec -- "$1" "$OUT"; }

check "demo exits 0" test "$rc" = 0
check "both applies report outcome applied" test "$(count '"outcome": "applied"')" = 2
check "v2 applies after 1.0.0" has '"previous_version": "1.0.0"'
check "status: bookings at 1.1.0, two deployments, no drift" \
  has '^ bookings \| 1\.1\.0 +\| +11 \| +2 \| +2 \| applied .*\| \{bookings\} +\| f '
check "the deployment log lists both" has '^ +2 \| bookings \| 1\.1\.0 +\| applied \| +3 \|'
check "the cluster is stopped at the end" has '^==> cluster stopped; files kept in /tmp/pg_deploy_demo\.'

dir=$(sed -nE 's|^==> cluster stopped; files kept in (/tmp/pg_deploy_demo\.[A-Za-z0-9]+)$|\1|p' "$OUT")
[ -n "$dir" ] && rm -rf "$dir"
if [ "$failed" != 0 ]; then
  echo "--- demo output"
  cat "$OUT"
fi
echo "demo-e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
