#!/usr/bin/env bash
# Where the CPU of a job goes: one `fluxctl bench jobs` run with AGENTS simulated agents
# (default 1,000) on STORE (redb or redis), at CONCURRENCY for SECS seconds, then the CPU time
# (utime + stime from /proc, or the shell's `time` for the client) that each process spent
# during the run, in microseconds per job: fluxd, the simulator, the benchmark client and, on
# Redis, redis-server (with its script calls and the commands it ran per job, from INFO
# commandstats). On 2 cores shared by all of them, their sum per job bounds the rate:
# 2,000,000 µs / sum = jobs/s.
#
#   bash scripts/bench-cpu.sh
#   STORE=redis bash scripts/bench-cpu.sh
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-cpu.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
flux_jobs_defaults
TICK_US=$(( 1000000 / $(getconf CLK_TCK) ))

flux_build
flux_scratch dir cpu
flux_jobs_point "$dir" "$STORE" "$AGENTS"
if [ "$STORE" = redis ]; then
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    redis0=$(flux_cpu_ticks "$REDIS_PID")
fi
batches0=$(flux_metric flux_store_commit_batches_total)
commits0=$(flux_metric flux_store_commit_requests_total)
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
# The group commit: commits per job, and how many one durable step carried.
batches=$(( $(flux_metric flux_store_commit_batches_total) - batches0 ))
commits=$(( $(flux_metric flux_store_commit_requests_total) - commits0 ))
flux_result "store commits" "$(awk -v c="$commits" -v b="$batches" -v j="$jobs" \
    'BEGIN { printf "%.2f per job, %.1f per durable step (%d steps)", c / j, c / (b > 0 ? b : 1), b }')" "$cmd"
if [ "$STORE" = redis ]; then
    redis_us=$(per_job "$redis0" "$(flux_cpu_ticks "$REDIS_PID")")
    total=$(( total + redis_us ))
    flux_result "CPU per job, redis-server" "$redis_us µs" "$cmd"
    stats=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r')
    evalsha=$(awk -F'[:,=]' '$1 == "cmdstat_evalsha" { printf "%d calls, %.1f µs each", $3, $7 }' <<<"$stats")
    flux_result "redis-server, script calls" "$evalsha" "$cmd"
    # Every command redis-server ran (those the scripts ran included), per job: the work the
    # store does for a job, which unlike CPU time does not vary with the machine's load.
    per=$(awk -F'[:,=]' -v j="$jobs" '$1 ~ /^cmdstat_/ { n += $3; if ($1 == "cmdstat_evalsha") e = $3 }
        END { printf "%.1f commands, %.2f script calls", n / j, e / j }' <<<"$stats")
    flux_result "redis-server per job" "$per" "$cmd"
fi
flux_result "CPU per job, all processes" "$total µs" "$cmd"
