#!/usr/bin/env bash
# Every benchmark figure in one run, printed at the end as one markdown table
# (figure | value | command). Sizes are chosen to finish in about 15 minutes on 2 cores; each
# can be changed by its variable below. Run it against two builds to compare them:
#
#   bash scripts/bench-all.sh                               # builds this checkout (release)
#   bash scripts/bench-all.sh /path/to/old/target/release   # or BIN_DIR=... bash scripts/bench-all.sh
#
# Every step logs to OUT (a new temporary directory unless given); a step that fails shows
# "failed" in the table and the rest still run. Each table row's command reproduces that
# figure alone (with BIN_DIR set to the same build).
set -uo pipefail
BIN_DIR="${1:-${BIN_DIR:-}}"
if [ -n "$BIN_DIR" ]; then BIN_DIR="$(cd "$BIN_DIR" && pwd)" || exit 1; fi
source "$(dirname "$0")/lib.sh"
OUT="${OUT:-$(mktemp -d -t fluxforge-bench-all.XXXXXX)}"
mkdir -p "$OUT"
SCALE_STORES="${SCALE_STORES:-redb redis}"
SCALE_AGENTS="${SCALE_AGENTS:-1000 10000}"
DURATION="${DURATION:-20s}"              # each jobs/s point
CONCURRENCY="${CONCURRENCY:-512}"        # simulated-agent points
REAL_POINTS="${REAL_POINTS:-10:40 1:1}"  # real agents:clients
CONVERGE_TARGETS="${CONVERGE_TARGETS:-1000}"
IDLE_AGENTS="${IDLE_AGENTS:-100000}"
WINDOW="${WINDOW:-60}"
FAILOVER_TRIALS="${FAILOVER_TRIALS:-10}"
STEPS="${STEPS:-scale real converge idle failover}"

flux_build || exit 1
export BIN_DIR="$BIN"
export FLUX_RESULTS="$OUT/results.txt"
: >"$FLUX_RESULTS"
started=$(date +%s)

step() { # step NAME FIGURE-IF-FAILED COMMAND-IF-FAILED ENV... -- SCRIPT
    local name="$1" figure="$2" cmd="$3"; shift 3
    local envs=()
    while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
    local before; before=$(wc -l <"$FLUX_RESULTS")
    echo "==> $name: ${envs[*]} bash $1 (log: $OUT/$name.log)"
    local t0; t0=$(date +%s)
    env "${envs[@]}" bash "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "    $(( $(date +%s) - t0 )) s, exit $rc"
    grep '^RESULT' "$OUT/$name.log" | sed 's/^/    /'
    if [ "$rc" != 0 ] && [ "$(wc -l <"$FLUX_RESULTS")" = "$before" ]; then
        flux_result "$figure" "failed (exit $rc, see $OUT/$name.log)" "$cmd" >/dev/null
    fi
}

for s in $STEPS; do
    case "$s" in
    scale)
        for store in $SCALE_STORES; do for n in $SCALE_AGENTS; do
            step "scale-$store-$n" "control-plane jobs/s, $n simulated agents, $store" \
                "PARTS=jobs STORES=$store JOB_AGENTS=$n bash scripts/bench-scale.sh" \
                PARTS=jobs STORES="$store" JOB_AGENTS="$n" DURATION="$DURATION" \
                CONCURRENCY="$CONCURRENCY" -- scripts/bench-scale.sh
        done; done ;;
    real)
        for p in $REAL_POINTS; do
            step "real-${p/:/-}" "real jobs, point $p" "POINTS=$p bash scripts/bench-jobs.sh" \
                POINTS="$p" DURATION="$DURATION" -- scripts/bench-jobs.sh
        done ;;
    converge)
        for n in $CONVERGE_TARGETS; do
            step "converge-$n" "time to converge $n simulated targets after apply, redb" \
                "TARGETS=$n bash scripts/bench-converge.sh" \
                TARGETS="$n" -- scripts/bench-converge.sh
        done ;;
    idle)
        for n in $IDLE_AGENTS; do
            step "idle-$n" "fluxd idle with $n simulated agents (30 s heartbeats): CPU, RSS" \
                "PARTS=idle IDLE_AGENTS=$n bash scripts/bench-scale.sh" \
                PARTS=idle IDLE_AGENTS="$n" HEARTBEAT=30 WINDOW="$WINDOW" -- scripts/bench-scale.sh
        done ;;
    failover)
        step failover "leader failover after kill -9, default lease settings (Redis)" \
            "TRIALS=$FAILOVER_TRIALS bash scripts/bench-failover.sh" \
            TRIALS="$FAILOVER_TRIALS" SIGNALS=KILL -- scripts/bench-failover.sh ;;
    *) echo "unknown step $s (steps: scale real converge idle failover)" >&2 ;;
    esac
done

echo
echo "Build: $BIN ($("$BIN/fluxd" --version 2>/dev/null)); $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ);" \
    "$(( ($(date +%s) - started) / 60 )) min; logs in $OUT"
echo
echo "| figure | value | command |"
echo "|---|---|---|"
while IFS='|' read -r figure value cmd; do
    echo "| $figure | $value | \`BIN_DIR=$BIN $cmd\` |"
done <"$FLUX_RESULTS"
