#!/usr/bin/env bash
# Where the CPU of a job goes: one `fluxctl bench jobs` run with AGENTS simulated agents
# (default 1,000) on STORE (redb or redis), at CONCURRENCY for SECS seconds, then the CPU time
# (utime + stime from /proc, or the shell's `time` for the client) that each process spent
# during the run, in microseconds per job: fluxd, the simulator, the benchmark client and, on
# Redis, redis-server (with its commit script's calls from INFO commandstats). On 2 cores
# shared by all of them, their sum per job bounds the rate: 2,000,000 µs / sum = jobs/s.
#
#   bash scripts/bench-cpu.sh
#   STORE=redis bash scripts/bench-cpu.sh
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-cpu.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
AGENTS="${AGENTS:-1000}"
STORE="${STORE:-redb}"
SECS="${SECS:-20}"
CONCURRENCY="${CONCURRENCY:-512}"
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

flux_build
dir="$(mktemp -d -t fluxforge-cpu.XXXXXX)"
flux_jobs_point "$dir" "$STORE" "$AGENTS"
if [ "$STORE" = redis ]; then
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    redis0=$(flux_cpu_ticks "$REDIS_PID")
fi
fluxd0=$(flux_cpu_ticks "$FLUXD_PID")
sim0=$(flux_cpu_ticks "$SIM_PID")
echo "==> bench jobs at concurrency $CONCURRENCY for ${SECS}s"
TIMEFORMAT='%U %S'
{ time flux_jobs_window "$dir/bench-jobs.json" "$SECS" "$CONCURRENCY"; } 2>"$dir/client-time"
fluxd1=$(flux_cpu_ticks "$FLUXD_PID")
sim1=$(flux_cpu_ticks "$SIM_PID")
jobs=$(flux_json "$dir/bench-jobs.json" .jobs)
[ "$jobs" -gt 0 ] || { echo "no job finished (see $dir)" >&2; exit 1; }
per_job() { echo $(( ($2 - $1) * TICK_US / jobs )); }
client_us=$(awk -v j="$jobs" '{ printf "%d", ($1 + $2) * 1000000 / j }' "$dir/client-time")
fluxd_us=$(per_job "$fluxd0" "$fluxd1")
sim_us=$(per_job "$sim0" "$sim1")
cmd="STORE=$STORE AGENTS=$AGENTS bash scripts/bench-cpu.sh"
flux_result "jobs/s, $AGENTS simulated agents, $STORE" "$(flux_jobs_summary "$dir/bench-jobs.json")" "$cmd"
flux_result "CPU per job, fluxd" "$fluxd_us µs" "$cmd"
flux_result "CPU per job, simulator" "$sim_us µs" "$cmd"
flux_result "CPU per job, benchmark client" "$client_us µs" "$cmd"
total=$(( fluxd_us + sim_us + client_us ))
if [ "$STORE" = redis ]; then
    redis_us=$(per_job "$redis0" "$(flux_cpu_ticks "$REDIS_PID")")
    total=$(( total + redis_us ))
    flux_result "CPU per job, redis-server" "$redis_us µs" "$cmd"
    evalsha=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' | awk -F'[:,=]' \
        '$1 == "cmdstat_evalsha" { printf "%d calls, %.1f µs each", $3, $7 }')
    flux_result "redis-server, script calls" "$evalsha" "$cmd"
fi
flux_result "CPU per job, all processes" "$total µs" "$cmd"
