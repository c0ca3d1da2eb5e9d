#!/usr/bin/env bash
# Failover benchmark: three fluxd nodes on one redis-server (AOF, appendfsync always) with the
# default lease settings (TTL 3 s, renew 1 s, follower retry 250 ms). Each trial stops the
# current leader and measures the time until another node reports that it leads, polled with
# `fluxctl status -o json` on every survivor (a poll round takes a few ms, so figures carry that
# much granularity). The stopped node is started again before the next trial.
#
#   TRIALS=20 bash scripts/bench-failover.sh      # needs redis-server on PATH
set -euo pipefail
cd "$(dirname "$0")/.."
TRIALS="${TRIALS:-20}"
command -v redis-server >/dev/null || { echo "redis-server is not installed" >&2; exit 1; }
cargo build --quiet --release --bin fluxd --bin fluxctl
BIN="$PWD/target/release"
DIR="$(mktemp -d -t fluxforge-failover.XXXXXX)"
RPORT="${FLUX_BENCH_REDIS_PORT:-16379}"
BASE="${FLUX_BENCH_PORT:-18450}"
declare -A PID

cleanup() {
    for p in "${PID[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || kill "$RPID" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes \
    --appendfsync always --save '' >"$DIR/redis.log" 2>&1 &
RPID=$!
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/"$RPORT") 2>/dev/null && break; sleep 0.05; done
STORE="redis://127.0.0.1:$RPORT/0"

start_node() {
    local i="$1" extra=()
    if [ "$i" != 1 ]; then
        extra=(--signing-key "$DIR/n1/signing-key.json" --tls-cert "$DIR/n1/tls/server.crt"
               --tls-key "$DIR/n1/tls/server.key")
    fi
    "$BIN/fluxd" --listen "127.0.0.1:$((BASE + i))" --data-dir "$DIR/n$i" --node-id "node-$i" \
        --store "$STORE" "${extra[@]}" >>"$DIR/fluxd-$i.log" 2>&1 &
    PID[$i]=$!
}
export FLUX_CA="$DIR/n1/tls/ca.crt" FLUX_TOKEN_FILE="$DIR/n1/admin.token" FLUX_CONFIG="$DIR/none.toml"
unset FLUX_TOKEN FLUX_CONTEXT FLUX_SERVER
st() { "$BIN/fluxctl" --server "https://127.0.0.1:$((BASE + $1))" -o json status 2>/dev/null; }
up() { st "$1" >/dev/null; }
# The answering node's own flag is the top-level "leader" (node records are nested deeper).
leads() { st "$1" | grep -q '^  "leader": true'; }

start_node 1
for _ in $(seq 1 200); do up 1 && break; sleep 0.05; done
start_node 2; start_node 3
for i in 2 3; do for _ in $(seq 1 200); do up "$i" && break; sleep 0.05; done; done

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
leader() { for i in 1 2 3; do leads "$i" && { echo "$i"; return; }; done; echo ""; }

trial() { # trial SIGNAL -> prints milliseconds until a survivor leads
    local sig="$1" l=""
    while [ -z "$l" ]; do l=$(leader); done
    local t0; t0=$(now_ms)
    kill -"$sig" "${PID[$l]}"
    while :; do
        for i in 1 2 3; do
            [ "$i" = "$l" ] && continue
            if leads "$i"; then echo $(( $(now_ms) - t0 )); wait "${PID[$l]}" 2>/dev/null || true
                start_node "$l"; for _ in $(seq 1 200); do up "$l" && break; sleep 0.05; done
                return; fi
        done
    done
}

report() { # report NAME < samples
    sort -n | awk -v name="$1" '{ v[NR] = $1 } END {
        p50 = v[int((NR * 50 + 99) / 100)]; p99 = v[int((NR * 99 + 99) / 100)];
        printf "%-10s trials %d  p50 %d ms  p99 %d ms  max %d ms\n", name, NR, p50, p99, v[NR] }'
}

echo "==> $TRIALS trials each; logs in $DIR"
# Redirected, not piped: a pipeline would run the trials in a subshell and lose the restarted
# nodes' pids between the two series.
for _ in $(seq 1 "$TRIALS"); do trial KILL >>"$DIR/kill.txt"; done
for _ in $(seq 1 "$TRIALS"); do trial TERM >>"$DIR/term.txt"; done
report "kill -9" <"$DIR/kill.txt"
report "SIGTERM" <"$DIR/term.txt"
