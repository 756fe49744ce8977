#!/usr/bin/env bash
# A versioned binary tarball of the extension for one PostgreSQL major:
#   scripts/package.sh [PG_CONFIG]      (default: Debian's PostgreSQL 15)
# writes dist/pg_deploy-<version>-pg<major>-<os>-<arch>.tar.gz, laid out as
# `pg_config --pkglibdir` and `--sharedir`/extension, with the 0.1.0 install
# script and every upgrade script, plus an install.sh that copies them into
# the pg_config it is given. Built by `cargo pgrx package` (release profile).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${1:-/usr/lib/postgresql/15/bin/pg_config}
[ -x "$PG_CONFIG" ] || { echo "no pg_config at $PG_CONFIG" >&2; exit 2; }

VERSION=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
NAME=pg_deploy-$VERSION-pg$MAJOR-$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
OUT=$TARGET/release/pg_deploy-pg$MAJOR

echo "==> cargo pgrx package (PostgreSQL $MAJOR, $VERSION)"
rm -rf "$OUT"
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$OUT" >/dev/null

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/$NAME/lib" "$STAGE/$NAME/extension"
find "$OUT" -name 'pg_deploy.so' -exec cp {} "$STAGE/$NAME/lib/" \;
find "$OUT" -path '*/extension/*' \( -name 'pg_deploy*.sql' -o -name 'pg_deploy.control' \) -exec cp {} "$STAGE/$NAME/extension/" \;
cp sql/pg_deploy--0.1.0.sql sql/pg_deploy--*--*.sql "$STAGE/$NAME/extension/"
[ -f "$STAGE/$NAME/lib/pg_deploy.so" ] && [ -f "$STAGE/$NAME/extension/pg_deploy--$VERSION.sql" ] \
  || { echo "cargo pgrx package did not produce the library and pg_deploy--$VERSION.sql" >&2; exit 1; }
cp README.md META.json "$STAGE/$NAME/"
cat >"$STAGE/$NAME/install.sh" <<EOF
#!/bin/sh
# Installs pg_deploy $VERSION (built for PostgreSQL $MAJOR): sh install.sh [PG_CONFIG]
set -eu
cd "\$(dirname "\$0")"
PG_CONFIG=\${1:-pg_config}
major=\$("\$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\\1/')
[ "\$major" = $MAJOR ] || { echo "this package is for PostgreSQL $MAJOR, \$PG_CONFIG is \$major" >&2; exit 2; }
install -m 755 lib/pg_deploy.so "\$("\$PG_CONFIG" --pkglibdir)/"
install -m 644 extension/* "\$("\$PG_CONFIG" --sharedir)/extension/"
echo "pg_deploy $VERSION installed; in each database: CREATE EXTENSION pg_deploy; (or ALTER EXTENSION pg_deploy UPDATE;)"
EOF
chmod +x "$STAGE/$NAME/install.sh"
mkdir -p dist
tar -C "$STAGE" -czf "dist/$NAME.tar.gz" "$NAME"
echo "dist/$NAME.tar.gz"
tar -tzf "dist/$NAME.tar.gz" | sed 's/^/    /'
