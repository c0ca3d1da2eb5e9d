#!/usr/bin/env bash
# Failover benchmark: three fluxd nodes on one redis-server (started here on a free loopback
# port; AOF, appendfsync always) with the default lease settings (TTL 3 s, renew 1 s, follower
# retry 250 ms). Each trial stops the current leader with each of SIGNALS and measures the time
# until another node reports that it leads, polled with `fluxctl status -o json` on every
# survivor (a poll round takes a few ms, so figures carry that much granularity). The stopped
# node is started again before the next trial. A trial gives up after TRIAL_LIMIT seconds (and
# is counted as a miss).
#
#   TRIALS=20 bash scripts/bench-failover.sh                 # kill -9, needs redis-server
#   SIGNALS="KILL TERM" bash scripts/bench-failover.sh       # and graceful stops
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-failover.sh
#
# Figures are printed as "RESULT  figure: value" lines (and appended to $FLUX_RESULTS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
TRIALS="${TRIALS:-20}"
SIGNALS="${SIGNALS:-KILL}"
TRIAL_LIMIT="${TRIAL_LIMIT:-30}"
flux_build
flux_scratch DIR failover
declare -A PID PORT

cleanup() {
    local rc=$?
    for p in "${PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    flux_exit "$rc"
}
trap cleanup EXIT

flux_redis_up "$DIR/redis"
for i in 1 2 3; do PORT[$i]=$(flux_free_port); done

start_node() {
    local i="$1" extra=()
    if [ "$i" != 1 ]; then
        extra=(--signing-key "$DIR/n1/signing-key.json" --tls-cert "$DIR/n1/tls/server.crt"
               --tls-key "$DIR/n1/tls/server.key")
    fi
    "$BIN/fluxd" --listen "127.0.0.1:${PORT[$i]}" --data-dir "$DIR/n$i" --node-id "node-$i" \
        --store "$FLUX_REDIS_URL" "${extra[@]}" >>"$DIR/fluxd-$i.log" 2>&1 &
    PID[$i]=$!
}
export FLUX_CA="$DIR/n1/tls/ca.crt" FLUX_TOKEN_FILE="$DIR/n1/admin.token" FLUX_CONFIG="$DIR/none.toml"
unset FLUX_TOKEN FLUX_CONTEXT FLUX_SERVER
st() { "$BIN/fluxctl" --server "https://127.0.0.1:${PORT[$1]}" -o json status 2>/dev/null; }
up() { st "$1" >/dev/null; }
# The answering node's own flag is the top-level "leader" (node records are nested deeper).
leads() { st "$1" | grep -q '^  "leader": true'; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
leader() { for i in 1 2 3; do leads "$i" && { echo "$i"; return; }; done; echo ""; }

start_node 1
flux_wait_for 30 up 1 || { echo "node 1 did not come up" >&2; cat "$DIR/fluxd-1.log" >&2; exit 1; }
start_node 2; start_node 3
for i in 2 3; do flux_wait_for 30 up "$i" || { echo "node $i did not come up" >&2; exit 1; }; done

trial() { # trial SIGNAL -> prints milliseconds until a survivor leads, or "miss"
    local sig="$1" l="" t0 limit
    limit=$(( $(now_ms) + TRIAL_LIMIT * 1000 ))
    while [ -z "$l" ]; do
        l=$(leader)
        [ "$(now_ms)" -lt "$limit" ] || { echo miss; return; }
    done
    t0=$(now_ms); limit=$(( t0 + TRIAL_LIMIT * 1000 ))
    kill -"$sig" "${PID[$l]}"
    local took=miss
    while [ "$(now_ms)" -lt "$limit" ]; do
        for i in 1 2 3; do
            [ "$i" = "$l" ] && continue
            if leads "$i"; then took=$(( $(now_ms) - t0 )); break 2; fi
        done
    done
    echo "$took"
    wait "${PID[$l]}" 2>/dev/null || true
    start_node "$l"
    flux_wait_for 30 up "$l" || true
}

report() { # report NAME < samples: "p50 X ms, p99 Y ms, max Z ms (N trials[, M misses])"
    awk '$1 == "miss" { m++; next } { print }  END { if (m) print "misses " m > "/dev/stderr" }' \
        | sort -n | awk -v trials="$TRIALS" '{ v[NR] = $1 } END {
        if (NR == 0) { printf "no failover within the trial limit (%d trials)", trials; exit }
        p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)];
        printf "p50 %d ms, p99 %d ms, max %d ms (%d trials", p50, p99, v[NR], trials;
        if (NR < trials) printf ", %d without a new leader", trials - NR;
        printf ")" }'
}

echo "==> $TRIALS trials per signal ($SIGNALS); logs in $DIR"
for sig in $SIGNALS; do
    # Redirected, not piped: a pipeline would run the trials in a subshell and lose the
    # restarted nodes' pids.
    : >"$DIR/$sig.txt"
    for _ in $(seq 1 "$TRIALS"); do trial "$sig" >>"$DIR/$sig.txt"; done
    name="leader failover after kill -$sig, default lease settings (Redis)"
    [ "$sig" = KILL ] && name="leader failover after kill -9, default lease settings (Redis)"
    cmd="TRIALS=$TRIALS bash scripts/bench-failover.sh"
    [ "$sig" = KILL ] || cmd="SIGNALS=$sig $cmd"
    flux_result "$name" "$(report "$sig" 2>/dev/null <"$DIR/$sig.txt")" "$cmd"
done
