#!/usr/bin/env bash
# Runs the whole test suite (both backends) RUNS times in a row, optionally with the
# machine loaded, and reports every test that failed even once. Not part of CI: a test
# that fails here at random is a defect to find, never one to retry.
#
#   scripts/flake-loop.sh                 # 20 runs
#   RUNS=5 LOAD=2 scripts/flake-loop.sh   # 5 runs, two busy loops competing for the CPU
#
# Needs MDM_TEST_DATABASE_URL (default: the local PostgreSQL of the README). Logs go to
# target/flake-loop/run-N.log.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${RUNS:-20}"
load="${LOAD:-0}"
export MDM_TEST_DATABASE_URL="${MDM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-6}"
logs=target/flake-loop
mkdir -p "$logs"

# Build once, so that the runs time the tests and not the compiler.
cargo test --workspace --locked --no-run -q

loaders=()
stop_load() {
    for pid in "${loaders[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap stop_load EXIT
for _ in $(seq 1 "$load"); do
    (while :; do :; done) &
    loaders+=("$!")
done

failed_runs=0
for run in $(seq 1 "$runs"); do
    started=$(date +%s)
    # --no-fail-fast: one failing test binary must not hide the others' failures.
    if cargo test --workspace --locked --no-fail-fast -q >"$logs/run-$run.log" 2>&1; then
        echo "run $run: ok ($(($(date +%s) - started)) s)"
    else
        failed_runs=$((failed_runs + 1))
        echo "run $run: FAILED ($(($(date +%s) - started)) s):"
        grep -E '^test .* FAILED$|^    [a-z_:]+$' "$logs/run-$run.log" | sed 's/^/    /' || true
    fi
done
echo "$failed_runs of $runs runs failed (logs in $logs)"
[ "$failed_runs" -eq 0 ]
