#!/usr/bin/env bash
# Desired-state convergence benchmark: one fluxd (STORE=redb or redis) and the targets, then
# `fluxctl bench converge`, which declares a state on every target (as `fluxctl apply` does:
# check, a marker file exists; apply, create it) and times until all are compliant.
#
#  simulated (default)  TARGETS simulated agents in one `flux-agent --simulate` process (their
#                       check exits 0, so a target is compliant after one check job)
#  real                 REAL=1: TARGETS real flux-agent processes (check fails, apply, verify)
#
#   bash scripts/bench-converge.sh                 # TARGETS=1000, simulated
#   REAL=1 TARGETS="10 100" bash scripts/bench-converge.sh
#
# Bounded: START_LIMIT seconds for the targets to come online, TIMEOUT for the convergence.
# Figures are printed as "RESULT  figure: value" lines (and appended to $FLUX_RESULTS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
TARGETS="${TARGETS:-1000}"
REAL="${REAL:-0}"
STORE="${STORE:-redb}"
TIMEOUT="${TIMEOUT:-5m}"

flux_build
for n in $TARGETS; do
    flux_scratch dir converge
    flux_up_store "$dir" "$STORE" --max-long-polls $(( n + 1000 )) \
        --max-agent-requests 4096 --max-requests 4096 --tenant-share 100
    kind=simulated; cmd="TARGETS=$n bash scripts/bench-converge.sh"
    if [ "$REAL" = 1 ]; then
        kind=real; cmd="REAL=1 $cmd"
        for i in $(seq 1 "$n"); do flux_agent "conv-$i" --slots 4 --label fleet=converge; done
        flux_wait_agents "$n"
    else
        flux_simulate "$n" "${START_LIMIT:-$(( 60 + n / 250 ))}" --simulate-run-ms 0 \
            --label fleet=converge || true
    fi
    [ "$STORE" = redb ] || cmd="STORE=$STORE $cmd"
    figure="time to converge $n $kind targets after apply, $STORE"
    echo "==> $n $kind targets: fluxctl bench converge --label fleet=converge"
    out="$FLUX_DIR/bench-converge.json"
    "$BIN/fluxctl" -o json bench converge --label fleet=converge --dir "$FLUX_DIR/markers" \
        --timeout "$TIMEOUT" >"$out" || true
    if [ -s "$out" ]; then
        jq -c . "$out"
        flux_result "$figure" "$(jq -r '"\(.elapsed_secs * 100 | round / 100) s (\(.compliant) of \(.targets) compliant, \(.failed) failed; per target p50 \(.p50_ms | round) ms, p99 \(.p99_ms | round) ms)"' "$out")" "$cmd"
    else
        flux_result "$figure" "failed (see $FLUX_DIR)" "$cmd"
    fi
done
