#!/usr/bin/env bash
# Job round-trip benchmark: one fluxd on the embedded store, then `fluxctl bench jobs` with one
# agent and with ten agents (4 slots each). Prints a table per run; `-o json` for raw numbers.
#
#   bash scripts/bench-jobs.sh            # COUNT=500 by default
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
COUNT="${COUNT:-500}"

flux_build
run() {
    local agents="$1" concurrency="$2"
    flux_cleanup; FLUX_PIDS=()
    flux_up "$(mktemp -d -t fluxforge-bench.XXXXXX)" "${FLUX_BENCH_PORT:-18443}"
    for i in $(seq 1 "$agents"); do flux_agent "bench-$i" --slots 4; done
    flux_wait_agents "$agents"
    echo "==> $agents agent(s), concurrency $concurrency, $COUNT jobs of 'true'"
    "$BIN/fluxctl" bench jobs --count "$COUNT" --concurrency "$concurrency"
}
run 1 1
run 1 4
run 10 40
