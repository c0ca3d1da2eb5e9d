#!/usr/bin/env bash
# Real-job benchmark: one fluxd on the embedded store (STORE=redis: on a redis-server started
# here, appendfsync always) and real flux-agent processes (SLOTS slots each) that run every job
# with `sh -c true`, then `fluxctl bench jobs`. Each point AGENTS:CLIENTS of POINTS gets a fresh
# fluxd; a run lasts DURATION (COUNT jobs at most), so every point is bounded in time.
#
#   bash scripts/bench-jobs.sh                      # POINTS="1:1 10:40"
#   POINTS=1:1 bash scripts/bench-jobs.sh           # one-client round trip p50/p99
#   POINTS=10:40 bash scripts/bench-jobs.sh         # `sh -c true` jobs/s across 10 agents
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-jobs.sh
#
# Figures are printed as "RESULT  figure: value" lines (and appended to $FLUX_RESULTS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
POINTS="${POINTS:-1:1 10:40}"
COUNT="${COUNT:-1000000}"
DURATION="${DURATION:-20s}"
DEADLINE="${DEADLINE:-2m}"
SLOTS="${SLOTS:-4}"
STORE="${STORE:-redb}"
COMMAND="${COMMAND:-true}"

flux_build
for point in $POINTS; do
    agents="${point%%:*}" clients="${point##*:}"
    flux_scratch dir jobs
    flux_up_store "$dir" "$STORE"
    for i in $(seq 1 "$agents"); do flux_agent "bench-$i" --slots "$SLOTS"; done
    flux_wait_agents "$agents"
    echo "==> $agents agent(s), $clients client(s), jobs of 'sh -c $COMMAND' for $DURATION on $STORE"
    if [ "$clients" = 1 ]; then
        figure="one-client round trip, \`sh -c $COMMAND\`, $agents real agent(s), $STORE"
    else
        figure="real \`sh -c $COMMAND\` jobs/s, $agents agents, $clients clients, $STORE"
    fi
    cmd="POINTS=$point bash scripts/bench-jobs.sh"
    [ "$STORE" = redb ] || cmd="STORE=$STORE $cmd"
    flux_bench_jobs "$figure" "$cmd" --count "$COUNT" --duration "$DURATION" \
        --deadline "$DEADLINE" --concurrency "$clients" --command "$COMMAND"
done
