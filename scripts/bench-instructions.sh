#!/usr/bin/env bash
# What fluxd does per job, counted rather than timed: the instructions it executes (valgrind's
# callgrind counts them, so the figure does not move with whatever else the machine is doing,
# where jobs/s and CPU time move by 25 % between runs of one build) and its store operations
# (from its own metrics), over COUNT jobs (default 3,000) run by `fluxctl bench jobs` at
# CONCURRENCY (default 32) with AGENTS simulated agents (default 50) on STORE (redb or redis).
# fluxd runs about 50 times slower under valgrind, so the point is small; what it is for is
# comparing two builds.
#
#   bash scripts/bench-instructions.sh
#   STORE=redis bash scripts/bench-instructions.sh
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-instructions.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
AGENTS="${AGENTS:-50}"
STORE="${STORE:-redb}"
COUNT="${COUNT:-3000}"
CONCURRENCY="${CONCURRENCY:-32}"
flux_need valgrind

flux_build
flux_scratch dir instructions
# fluxd under callgrind: a wrapper in place of the binary, beside the real agent and fluxctl.
real="$BIN"
BIN="$dir/bin"
mkdir -p "$BIN"
ln -s "$real/flux-agent" "$real/fluxctl" "$BIN/"
cat >"$BIN/fluxd" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" "$real/fluxd" "\$@"
EOF
chmod +x "$BIN/fluxd"

flux_point_flags "$AGENTS"
flux_up_store "$dir" "$STORE" "${FLUX_POINT_FLAGS[@]}"
flux_simulate "$AGENTS" 120 --simulate-run-ms 0 --label fleet=sim
# Warm: the first jobs build the leader's views and fill caches.
"$BIN/fluxctl" -o json bench jobs --count 300 --concurrency "$CONCURRENCY" >/dev/null
store_ops() {
    curl -sf --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        "$FLUX_SERVER/metrics" | awk '$1 ~ /^flux_store_op_duration_seconds_count/ { print $1, $2 }' | sort
}
store_ops >"$dir/ops-before"
callgrind_control -z "$FLUXD_PID" >/dev/null
echo "==> bench jobs: $COUNT jobs at concurrency $CONCURRENCY, fluxd under callgrind"
"$BIN/fluxctl" -o json bench jobs --count "$COUNT" --concurrency "$CONCURRENCY" >"$dir/bench-jobs.json"
callgrind_control -d "$FLUXD_PID" >/dev/null
store_ops >"$dir/ops-after"
jobs=$(flux_json "$dir/bench-jobs.json" .jobs)
[ "$jobs" -gt 0 ] || { echo "no job finished (see $dir)" >&2; exit 1; }
dump=$(ls -t "$dir"/callgrind."$FLUXD_PID".* | head -1)
total=$(awk '$1 == "totals:" { print $2 }' "$dump")
cmd="STORE=$STORE AGENTS=$AGENTS bash scripts/bench-instructions.sh"
flux_result "fluxd instructions per job, $STORE" \
    "$(awk -v t="$total" -v j="$jobs" 'BEGIN { printf "%.0f", t / j }') ($jobs jobs)" "$cmd"
join "$dir/ops-before" "$dir/ops-after" | while read -r series before after; do
    op=$(sed 's/.*op="\([^"]*\)".*/\1/' <<<"$series")
    per=$(awk -v a="$after" -v b="$before" -v j="$jobs" 'BEGIN { printf "%.2f", (a - b) / j }')
    [ "$per" = 0.00 ] || flux_result "store $op per job, $STORE" "$per" "$cmd"
done
