#!/usr/bin/env bash
# Fuzzing: runs the fuzz harness of the core (core/tests/fuzz.rs) and of the
# client (cli/src/layout/fuzz.rs) in release mode over FUZZ_TOTAL inputs in
# all (default 10 million), shared out among the targets by their speed (see
# the per-mille shares in the harnesses), and prints inputs/second per target,
# the panic count and the totals. Results: bench/fuzz-results.md.
#
#   bash bench/fuzz.sh                       # 10,000,000 inputs, seed fixed
#   FUZZ_TOTAL=1000000 FUZZ_SEED=7 bash bench/fuzz.sh
#
# A failing input is shrunk and written in the corpus format under
# $CARGO_TARGET_DIR/tmp/fuzz-failures/ (core) or $TMPDIR/pg-deploy-fuzz-failures/
# (client); copy it into core/tests/fuzz_corpus/ once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

export FUZZ_TOTAL="${FUZZ_TOTAL:-10000000}"
export FUZZ_SEED="${FUZZ_SEED:-6573154091}"
unset FUZZ_CASES
threads="${FUZZ_THREADS:-$(nproc)}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

echo "building (release)…" >&2
cargo test --release -p pg_deploy_core --test fuzz --no-run >&2
cargo test --release -p pg-deploy-cli --no-run >&2

started=$(date +%s.%N)
status=0
# --nocapture: the harness prints one "fuzz <target>: …" line per target.
cargo test --release -p pg_deploy_core --test fuzz -- --nocapture --test-threads "$threads" 2>&1 | tee -a "$log" | grep -E '^fuzz |test result' >&2 || status=1
cargo test --release -p pg-deploy-cli -- layout::fuzz --nocapture --test-threads "$threads" 2>&1 | tee -a "$log" | grep -E '^fuzz |test result' >&2 || status=1
grep -q 'test result: FAILED' "$log" && status=1
finished=$(date +%s.%N)

out=bench/fuzz-results.md
{
    echo "# Fuzzing results"
    echo
    echo "\`FUZZ_TOTAL=$FUZZ_TOTAL FUZZ_SEED=$FUZZ_SEED bash bench/fuzz.sh\`, $(nproc) cores, test threads: $threads, $(date -u +%Y-%m-%d)."
    echo
    echo "| target | inputs | seconds | inputs/s | panics | failures |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    # fuzz <target>: <n> inputs in <t> s (<r> inputs/s), <p> panics, <f> failures, …
    grep -E '^fuzz [a-z_]+: [0-9]+ inputs in ' "$log" | sed -E 's/^fuzz ([a-z_]+): ([0-9]+) inputs in ([0-9.]+) s \(([0-9]+) inputs\/s\), ([0-9]+) panics, ([0-9]+) failures.*/| \1 | \2 | \3 | \4 | \5 | \6 |/'
    awk -v wall="$(awk -v a="$started" -v b="$finished" 'BEGIN { print b - a }')" '
        /^fuzz [a-z_]+: [0-9]+ inputs in / {
            n += $3
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^panics/) p += $(i - 1)
                if ($i ~ /^failures/) f += $(i - 1)
            }
        }
        END {
            printf "| **all** | **%d** | **%.0f** (wall) | **%.0f** | **%d** | **%d** |\n", n, wall, n / wall, p, f
        }' "$log"
    echo
    grep -E '^fuzz (cli )?corpus' "$log" | sed 's/^/- /'
} >"$out"
cat "$out"
exit "$status"
