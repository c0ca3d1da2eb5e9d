#!/usr/bin/env bash
# Desired-state convergence benchmark: one fluxd on the embedded store with N real flux-agent
# processes (default: 10, then 100), then `fluxctl bench converge`, which declares a state on
# every agent (check: a marker file exists; apply: create it) and times until all are compliant.
#
#   bash scripts/bench-converge.sh            # AGENTS="10 100" by default
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
AGENTS="${AGENTS:-10 100}"

flux_build
for n in $AGENTS; do
    flux_cleanup; FLUX_PIDS=()
    flux_up "$(mktemp -d -t fluxforge-bench.XXXXXX)" "${FLUX_BENCH_PORT:-18444}"
    for i in $(seq 1 "$n"); do flux_agent "conv-$i" --slots 4 --label bench=converge; done
    flux_wait_agents "$n"
    echo "==> $n agents: fluxctl bench converge --label bench=converge"
    "$BIN/fluxctl" bench converge --label bench=converge --dir "$FLUX_DIR/markers"
done
