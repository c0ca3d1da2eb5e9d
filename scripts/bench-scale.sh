#!/usr/bin/env bash
# Scale benchmark with simulated agents (`flux-agent --simulate N`: N agents in one process,
# jobs not executed; each "runs" RUN_MS ms, 0 by default, and prints one line). One fluxd,
# a fresh data directory (and a fresh redis-server) for every point.
#
#  jobs  control-plane jobs/s, p50/p99 of `fluxctl bench jobs` with each of JOB_AGENTS simulated
#        agents on each of STORES: redb (the embedded store) and redis (a redis-server started
#        here on a free loopback port, AOF with appendfsync always)
#  idle  fluxd holding each of IDLE_AGENTS connected agents that heartbeat every HEARTBEAT:
#        CPU (utime+stime from /proc/<pid>/stat over WINDOW seconds, once registration has
#        settled for SETTLE seconds, in % of one core), VmRSS and VmHWM; the simulator's own RSS
#
#   bash scripts/bench-scale.sh                                    # every part, default sizes
#   PARTS=jobs STORES=redis JOB_AGENTS=10000 bash scripts/bench-scale.sh   # one figure
#   PARTS=idle IDLE_AGENTS=100000 bash scripts/bench-scale.sh               # one figure
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-scale.sh         # another build
#   FLUXD_EXTRA="--sweep-interval 15s" bash scripts/bench-scale.sh       # more fluxd arguments
#
# Agents go unreachable after 3 and dead after 6 heartbeat intervals. Every wait is bounded:
# START_LIMIT (seconds for the fleet to come online; default 60 + N/250), DEADLINE for a
# `bench jobs` run. Figures are printed as "RESULT  figure: value" lines (and appended to
# $FLUX_RESULTS, see lib.sh).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PARTS="${PARTS:-jobs idle}"
STORES="${STORES:-redb redis}"
JOB_AGENTS="${JOB_AGENTS:-1000 10000}"
IDLE_AGENTS="${IDLE_AGENTS:-100000}"
COUNT="${COUNT:-1000000}"            # jobs per `bench jobs` run at most ...
DURATION="${DURATION:-20s}"          # ... and no new job after this long
DEADLINE="${DEADLINE:-2m}"
CONCURRENCY="${CONCURRENCY:-512}"    # `bench jobs` workers (up to 1024)
RUN_MS="${RUN_MS:-0}"
SLOTS="${SLOTS:-4}"                  # per simulated agent
HEARTBEAT="${HEARTBEAT:-30}"         # seconds
WINDOW="${WINDOW:-60}"               # idle CPU window, seconds
SETTLE="${SETTLE:-15}"               # seconds between "all online" and the window
START_CONCURRENCY="${START_CONCURRENCY:-64}"   # simulated agents registering at once (and fluxd's --max-registrations)

flux_build
TICK=$(getconf CLK_TCK)
# fluxd keeps a reserve of descriptors beyond its connection cap.
FDS=$(ulimit -n)
CONNS=$(( FDS > 9216 ? 8192 : FDS - 1024 ))

# up N STORE: a fresh fluxd (and for redis a fresh redis-server) sized for N agents.
up() {
    local n="$1" store="$2"
    flux_scratch dir scale
    flux_up_store "$dir" "$store" \
        --max-long-polls $(( n + 2 * 1024 + 1000 )) --max-requests 4096 \
        --max-agent-requests 4096 --max-registrations "$START_CONCURRENCY" \
        --tenant-share 100 --token-share 100 \
        --max-connections "$CONNS" --max-connections-per-ip "$CONNS" \
        --heartbeat-interval "${HEARTBEAT}s" --unreachable-after "$((3 * HEARTBEAT))s" \
        --dead-after "$((6 * HEARTBEAT))s" ${FLUXD_EXTRA:-}
}

simulate() { # simulate N
    flux_simulate "$1" "${START_LIMIT:-$(( 60 + $1 / 250 ))}" --simulate-run-ms "$RUN_MS" \
        --slots "$SLOTS" --label fleet=sim --simulate-start-concurrency "$START_CONCURRENCY"
}

if [[ " $PARTS " == *" jobs "* ]]; then
    for store in $STORES; do
        for n in $JOB_AGENTS; do
            echo "==> jobs/s with $n simulated agents on $store: bench jobs --concurrency $CONCURRENCY --duration $DURATION"
            figure="control-plane jobs/s, $n simulated agents, $store"
            cmd="PARTS=jobs STORES=$store JOB_AGENTS=$n bash scripts/bench-scale.sh"
            up "$n" "$store"
            if ! simulate "$n"; then
                flux_result "$figure" "not measured: only $(flux_online) of $n agents came online in ${SIM_SECS}s" "$cmd"
                continue
            fi
            flux_bench_jobs "$figure" "$cmd" --count "$COUNT" --duration "$DURATION" \
                --deadline "$DEADLINE" --concurrency "$CONCURRENCY"
        done
    done
fi

if [[ " $PARTS " == *" idle "* ]]; then
    for n in $IDLE_AGENTS; do
        echo "==> $n connected simulated agents, idle, heartbeat every ${HEARTBEAT}s"
        figure="fluxd idle with $n simulated agents (${HEARTBEAT} s heartbeats): CPU, RSS"
        cmd="PARTS=idle IDLE_AGENTS=$n bash scripts/bench-scale.sh"
        up "$n" redb
        note=""
        simulate "$n" || note=" (only $(flux_online) of $n online after ${SIM_SECS}s)"
        echo "    settle ${SETTLE}s, then an idle window of ${WINDOW}s"
        sleep "$SETTLE"
        c0=$(flux_cpu_ticks "$FLUXD_PID"); s0=$(flux_cpu_ticks "$SIM_PID")
        sleep "$WINDOW"
        c1=$(flux_cpu_ticks "$FLUXD_PID"); s1=$(flux_cpu_ticks "$SIM_PID")
        value=$(awk -v d=$((c1 - c0)) -v t="$TICK" -v w="$WINDOW" -v r="$(flux_kb "$FLUXD_PID" VmRSS)" \
            -v h="$(flux_kb "$FLUXD_PID" VmHWM)" \
            'BEGIN { printf "CPU %.1f%% of one core, RSS %.0f MiB (peak %.0f MiB)", 100 * d / t / w, r / 1024, h / 1024 }')
        sim=$(awk -v d=$((s1 - s0)) -v t="$TICK" -v w="$WINDOW" -v r="$(flux_kb "$SIM_PID" VmRSS)" -v n="$n" \
            'BEGIN { printf "simulator: CPU %.1f%% of one core, RSS %.0f MiB (%.1f KiB per agent)", 100 * d / t / w, r / 1024, r / n }')
        echo "    fluxd: $value"
        echo "    $sim"
        echo "    still online: $(flux_online) of $n"
        flux_result "$figure" "$value$note" "$cmd"
        flux_result "simulator holding $n agents: RSS" "${sim#simulator: }" "$cmd"
    done
fi
