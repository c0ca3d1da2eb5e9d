#!/usr/bin/env bash
# Scale benchmark with simulated agents (`flux-agent --simulate N`: N agents in one process,
# jobs not executed, each "runs" 10 ms and prints one line). Release builds; one fluxd.
#
#  jobs     jobs/s and p50/p99 of `fluxctl bench jobs` with 1,000 simulated agents, on the
#           embedded store (redb) and on Redis (its own redis-server, AOF, appendfsync always)
#  idle     memory (VmRSS, VmHWM) and CPU (utime+stime over an idle window, % of one core) of
#           fluxd holding 10,000 and 50,000 connected agents, and the simulator's own RSS
#  latency  job round trip at fixed concurrency with 100, 1,000 and 10,000 agents
#
#   bash scripts/bench-scale.sh                   # all three; PARTS="idle" for one of them
#
# Big fleets heartbeat less often: every heartbeat is a durable store write, and 2 s (the
# default) for 50,000 agents would be 25,000 writes per second. These runs keep heartbeats to
# about 400 writes/s: one every 30 s up to 12,000 agents, every N/400 s above (125 s for
# 50,000), unreachable after 3 and dead after 6 intervals. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
PARTS="${PARTS:-jobs idle latency}"
COUNT="${COUNT:-2000}"              # jobs per `fluxctl bench jobs` run
CONCURRENCY="${CONCURRENCY:-32}"
IDLE_AGENTS="${IDLE_AGENTS:-10000 50000}"
LATENCY_AGENTS="${LATENCY_AGENTS:-100 1000 10000}"
WINDOW="${WINDOW:-}"                # idle CPU window (s); default one heartbeat interval, >= 60
PORT="${FLUX_BENCH_PORT:-18460}"
RPORT="${FLUX_BENCH_REDIS_PORT:-16389}"
LIMITS=(--max-long-polls 60000 --max-requests 4096 --max-agent-requests 4096 --tenant-share 100)

flux_build
TICK=$(getconf CLK_TCK)

cleanup_all() {
    flux_cleanup
    [ -n "${RPID:-}" ] && { redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || kill "$RPID" 2>/dev/null || true; }
    wait 2>/dev/null || true
}
trap cleanup_all EXIT

# up N [fluxd args]: a fresh fluxd on a new data directory, liveness settings for N agents.
up() {
    local n="$1"; shift
    hb=$(( n / 400 > 30 ? n / 400 : 30 ))
    flux_cleanup; FLUX_PIDS=()
    flux_up "$(mktemp -d -t fluxforge-scale.XXXXXX)" "$PORT" "${LIMITS[@]}" \
        --heartbeat-interval "${hb}s" --unreachable-after "$((3 * hb))s" \
        --dead-after "$((6 * hb))s" "$@"
    FLUXD_PID=${FLUX_PIDS[0]}
    echo "    fluxd: heartbeat every ${hb} s"
}

# simulate N: starts N simulated agents with the admin token and waits (bounded) for them.
simulate() {
    local n="$1" t0; t0=$(date +%s)
    "$BIN/flux-agent" --server "$FLUX_SERVER" --ca "$FLUX_CA" --token-file "$FLUX_TOKEN_FILE" \
        --simulate "$n" --label fleet=sim >"$FLUX_DIR/simulator.log" 2>&1 &
    SIM_PID=$!
    FLUX_PIDS+=("$SIM_PID")
    local limit=$(( 60 + n / 100 ))   # seconds
    while [ "$(online)" -lt "$n" ]; do
        if [ $(( $(date +%s) - t0 )) -gt "$limit" ] || ! kill -0 "$SIM_PID" 2>/dev/null; then
            echo "only $(online) of $n agents came online within ${limit}s; simulator log tail:" >&2
            tail -5 "$FLUX_DIR/simulator.log" >&2
            return 1
        fi
        sleep 1
    done
    echo "    $n agents online after $(( $(date +%s) - t0 )) s"
}

# online: agents online, as the leader counts them (the flux_connected_agents metric).
online() {
    curl -sf --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        "$FLUX_SERVER/metrics" | awk '$1 == "flux_connected_agents" { print $2; f = 1 } END { if (!f) print 0 }'
}

cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
tcp_conns() { ls -l "/proc/$1/fd" 2>/dev/null | grep -c 'socket:' || true; }

bench_jobs() {
    "$BIN/fluxctl" bench jobs --count "$COUNT" --concurrency "$CONCURRENCY" --deadline 5m
}

if [[ " $PARTS " == *" jobs "* ]]; then
    command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
    echo "==> jobs/s with 1000 simulated agents, $COUNT jobs at concurrency $CONCURRENCY"
    up 1000
    simulate 1000
    echo "    embedded store (redb):"; bench_jobs
    RDIR="$(mktemp -d -t fluxforge-redis.XXXXXX)"
    redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$RDIR" --appendonly yes \
        --appendfsync always --save '' >"$RDIR/redis.log" 2>&1 &
    RPID=$!
    for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/"$RPORT") 2>/dev/null && break; sleep 0.05; done
    up 1000 --store "redis://127.0.0.1:$RPORT/0"
    simulate 1000
    echo "    Redis (appendfsync always):"; bench_jobs
    flux_cleanup; FLUX_PIDS=()
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || kill "$RPID" 2>/dev/null || true
    wait "$RPID" 2>/dev/null || true; RPID=
fi

if [[ " $PARTS " == *" idle "* ]]; then
    for n in $IDLE_AGENTS; do
        echo "==> $n connected simulated agents, idle"
        up "$n"
        simulate "$n"
        # A window of a whole heartbeat interval (and more than one 25 s poll cycle) sees
        # every agent's heartbeat and poll renewal.
        w=${WINDOW:-$(( hb > 60 ? hb : 60 ))}
        echo "    idle window ${w} s"
        sleep 5   # let the last registrations' work settle before the window
        c0=$(cpu_ticks "$FLUXD_PID"); s0=$(cpu_ticks "$SIM_PID")
        sleep "$w"
        c1=$(cpu_ticks "$FLUXD_PID"); s1=$(cpu_ticks "$SIM_PID")
        awk -v d=$((c1 - c0)) -v t="$TICK" -v w="$w" -v r="$(kb "$FLUXD_PID" VmRSS)" \
            -v h="$(kb "$FLUXD_PID" VmHWM)" -v c="$(tcp_conns "$FLUXD_PID")" \
            'BEGIN { printf "    fluxd:     CPU %.1f%% of a core, VmRSS %.0f MiB, VmHWM %.0f MiB, %d sockets\n", 100 * d / t / w, r / 1024, h / 1024, c }'
        awk -v d=$((s1 - s0)) -v t="$TICK" -v w="$w" -v r="$(kb "$SIM_PID" VmRSS)" \
            -v n="$n" -v c="$(tcp_conns "$SIM_PID")" \
            'BEGIN { printf "    simulator: CPU %.1f%% of a core, VmRSS %.0f MiB (%.1f KiB per agent), %d sockets\n", 100 * d / t / w, r / 1024, r / n, c }'
        echo "    still online: $(online) of $n"
    done
fi

if [[ " $PARTS " == *" latency "* ]]; then
    for n in $LATENCY_AGENTS; do
        echo "==> job round trip with $n simulated agents, $COUNT jobs at concurrency $CONCURRENCY"
        up "$n"
        simulate "$n"
        bench_jobs
    done
fi
