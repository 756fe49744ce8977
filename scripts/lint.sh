#!/usr/bin/env bash
# The lint gate: rustfmt and clippy (warnings are errors) on every crate.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy -p pg_deploy_core -p pg-deploy-cli --all-targets -- -D warnings
cargo clippy -p pg_deploy -- -D warnings
echo "lint: rustfmt and clippy clean"
