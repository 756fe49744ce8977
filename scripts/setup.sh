#!/usr/bin/env bash
# Idempotent machine setup: packages, cargo-pgrx, pgrx init, extension install.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PGRX_VERSION=0.18.0
APT_PKGS=(postgresql-15 postgresql-server-dev-15 libclang-dev clang sudo pgbouncer python3-pip)

step() { echo "==> $*"; }
# Root installs directly; anyone else through sudo (apt and PostgreSQL's directories need it).
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo)

step "apt packages"
if dpkg -s "${APT_PKGS[@]}" >/dev/null 2>&1; then
  echo "    already installed"
else
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${APT_PKGS[@]}"
fi

step "cargo-pgrx $PGRX_VERSION"
if grep -q "$PGRX_VERSION" <<<"$(cargo pgrx --version 2>/dev/null)"; then
  echo "    already installed"
else
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

step "cargo pgrx init (pg15 -> $PG_CONFIG)"
# cargo-pgrx keeps its config under $PGRX_HOME, default ~/.pgrx
PGRX_CONFIG="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if grep -Eq "^pg15 *= *\"$PG_CONFIG\"" "$PGRX_CONFIG" 2>/dev/null; then
  echo "    already initialised"
else
  cargo pgrx init --pg15 "$PG_CONFIG"
fi

step "cargo pgrx install --release"
if [ "$(id -u)" = 0 ]; then
  cargo pgrx install --release --pg-config "$PG_CONFIG"
else
  cargo pgrx install --release --sudo --pg-config "$PG_CONFIG"
fi

# pgrx writes the current release's install script and copies the upgrade
# scripts; the 0.1.0 install script is what databases created at 0.1.0 ran,
# kept so upgrades from it can be tested (pg_test/upgrade.sh).
step "pg_deploy 0.1.0 install script"
"${SUDO[@]}" install -m 644 sql/pg_deploy--0.1.0.sql "$("$PG_CONFIG" --sharedir)/extension/"
