#!/usr/bin/env bash
# Profiles fluxd at one benchmark point: AGENTS simulated agents (default 1,000) on STORE
# (redb or redis), `fluxctl bench jobs` at CONCURRENCY for SECS seconds, with fluxd under
# `perf record` for the same window; prints the top of `perf report --no-children` and keeps
# perf.data (path printed) in a directory of its own; the store and logs go on exit.
#
#   bash scripts/profile.sh                          # 1,000 agents, redb, 20 s
#   STORE=redis AGENTS=10000 bash scripts/profile.sh
#   CALLGRAPH="--call-graph dwarf" bash scripts/profile.sh    # deeper stacks (large perf.data)
#   BIN_DIR=/path/to/old/target/release bash scripts/profile.sh
#
# Needs perf; with kernel.perf_event_paranoid above 1 only root sees kernel frames, above 2
# only root may profile at all.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
flux_jobs_defaults
CALLGRAPH="${CALLGRAPH:--g}"
FREQ="${FREQ:-999}"
TOP="${TOP:-60}"
PERF="${PERF:-$(command -v perf || echo /usr/bin/perf)}"
[ -x "$PERF" ] || { echo "perf is not installed" >&2; exit 1; }
paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo 2)
if [ "$(id -u)" != 0 ] && [ "$paranoid" -gt 2 ]; then
    echo "kernel.perf_event_paranoid is $paranoid: only root may profile (sysctl kernel.perf_event_paranoid=1)" >&2
    exit 1
fi
[ "$(id -u)" = 0 ] || [ "$paranoid" -le 1 ] || echo "note: perf_event_paranoid $paranoid, user-space frames only" >&2

flux_build
flux_scratch dir profile
perf_dir="$(mktemp -d -t fluxforge-perf.XXXXXX)"
flux_jobs_point "$dir" "$STORE" "$AGENTS"
echo "==> perf record $CALLGRAPH -F $FREQ on fluxd ($FLUXD_PID) for ${SECS}s, bench jobs at concurrency $CONCURRENCY"
"$PERF" record $CALLGRAPH -F "$FREQ" -p "$FLUXD_PID" -o "$perf_dir/perf.data" -- sleep "$SECS" \
    >"$dir/perf-record.log" 2>&1 &
perf_pid=$!
flux_jobs_window "$dir/bench-jobs.json" "$SECS" "$CONCURRENCY"
wait "$perf_pid" || { cat "$dir/perf-record.log" >&2; exit 1; }
echo "    bench: $(flux_jobs_summary "$dir/bench-jobs.json")"
echo "==> perf report --no-children (top $TOP lines); data: $perf_dir/perf.data"
"$PERF" report -i "$perf_dir/perf.data" --no-children --stdio --percent-limit 0.5 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -n "$TOP"
