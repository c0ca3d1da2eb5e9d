#!/usr/bin/env bash
# Soak benchmark: does month six run like day one?
#
# Part 1 (history), per store of STORES: a fresh fluxd and AGENTS simulated agents; the probes
# (listing latency of `GET /v1/jobs?limit=20`, submission latency, one-client round trip) on
# the empty store; then HISTORY finished jobs built with `fluxctl bench jobs`; then the same
# probes again, and the store's size.
# Part 2 (retention), on redb: a fresh fluxd collecting finished jobs older than RETAIN, under a
# constant load for LOAD; the audit log is exported every SAMPLE seconds and pruned after
# AUDIT_RETAIN; the store file's size is sampled every SAMPLE seconds, to show that it levels off.
# Part 3 (collect), on redb: the collector's own rate on an otherwise idle fluxd. A backlog of
# BACKLOG finished jobs is built with retention off, the tenant's retention is then set to one
# second, and the jobs collected are counted every 2 s until the backlog is gone (bounded by
# 10 minutes); fluxd's CPU over that time is reported with the rate.
#
#   bash scripts/bench-soak.sh                                   # HISTORY=1000000, both stores
#   HISTORY=100000 STORES=redb bash scripts/bench-soak.sh        # a shorter run
#   PARTS=retention LOAD=10m bash scripts/bench-soak.sh
#   PARTS=collect BACKLOG=100000 bash scripts/bench-soak.sh
#   BIN_DIR=/path/to/release bash scripts/bench-soak.sh
#
# Every loop is bounded: the history build by HISTORY jobs and BUILD_DEADLINE, the probes by
# their counts, the load by LOAD. Figures are printed as "RESULT  figure: value" lines (and
# appended to $FLUX_RESULTS).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PARTS="${PARTS:-history retention}"
STORES="${STORES:-redb redis}"
HISTORY="${HISTORY:-1000000}"
AGENTS="${AGENTS:-1000}"
CONCURRENCY="${CONCURRENCY:-256}"
BUILD_DEADLINE="${BUILD_DEADLINE:-60m}"
LISTS="${LISTS:-5000}"
SUBMITS="${SUBMITS:-2000}"
ROUND_TRIP="${ROUND_TRIP:-15s}"
RETAIN="${RETAIN:-60s}"
LOAD="${LOAD:-5m}"
# Bounds the load's run as a whole (LOAD ends submissions; this, the wait for the last ones).
LOAD_DEADLINE="${LOAD_DEADLINE:-3h}"
# Audit records (one per submission) are exported every SAMPLE and pruned this long after
# they were made; 0 keeps them all, as fluxd does by default.
AUDIT_RETAIN="${AUDIT_RETAIN:-60s}"
LOAD_CONCURRENCY="${LOAD_CONCURRENCY:-64}"
SAMPLE="${SAMPLE:-30}"
BACKLOG="${BACKLOG:-100000}"

flux_build

# p50 and p99 (ms) of a column of seconds on stdin.
percentiles() {
    sort -n | awk '{ v[NR] = $1 * 1000 } END {
        if (NR == 0) { print "no samples"; exit }
        p50 = v[int((NR - 1) * 0.50) + 1]; p99 = v[int((NR - 1) * 0.99) + 1]
        printf "p50 %.2f ms, p99 %.2f ms (%d requests)", p50, p99, NR }'
}

# Listing latency: LISTS requests of the newest 20 user jobs over one kept-alive connection
# (5,000 by default: the p99 of a sub-millisecond request moves by 2x between runs of 1,000).
probe_list() {
    local cfg="$FLUX_DIR/list.curl"
    : >"$cfg"
    for _ in $(seq 1 "$LISTS"); do
        printf 'url = "%s/v1/jobs?limit=20"\noutput = "/dev/null"\n' "$FLUX_SERVER" >>"$cfg"
    done
    curl -s --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        -w '%{time_total}\n' --config "$cfg" | percentiles
}

# Submission latency (p50/p99 of acknowledgements) and the one-client round trip.
probe_submit() {
    local out="$FLUX_DIR/submit.json"
    "$BIN/fluxctl" -o json bench submit --count "$SUBMITS" --concurrency 8 >"$out"
    jq -r '"p50 \(.latency.p50_ms * 10 | round / 10) ms, p99 \(.latency.p99_ms * 10 | round / 10) ms"' "$out"
}
probe_round_trip() {
    local out="$FLUX_DIR/rt.json"
    "$BIN/fluxctl" -o json bench jobs --duration "$ROUND_TRIP" --count 100000 \
        --deadline 1m --concurrency 1 >"$out"
    jq -r '"p50 \(.p50_ms * 10 | round / 10) ms, p99 \(.p99_ms * 10 | round / 10) ms"' "$out"
}

# A metric's value (first series whose line starts with the name given).
metric() {
    curl -sf --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        "$FLUX_SERVER/metrics" | awk -v m="$1" 'index($1, m) == 1 { print $2; exit }'
}

# What an operator with --audit-retention does: exports the audit records older than 30 s
# (50,000 per file at most, so again while the export says more remain, at most 10 files) and
# drops the files, so that the leader may prune them.
export_audit() {
    local f="$FLUX_DIR/audit-export.json" i
    for i in $(seq 1 10); do
        "$BIN/fluxctl" audit export --before 30s "$f" >/dev/null || return 0
        [ "$(jq -r '.more' "$f")" = true ] || break
    done
    rm -f "$f"
}

# Jobs collected so far (flux_gc_deleted_total{kind="job"}).
collected() {
    curl -sf --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        "$FLUX_SERVER/metrics" | awk '$1 ~ /^flux_gc_deleted_total\{kind="job"\}/ { print $2 }'
}

# Waits (bounded) until the queue is empty: the submitted probe jobs have run.
drain_queue() {
    flux_wait_for 300 sh -c "\"$BIN/fluxctl\" -o json status | jq -e '.queue_depth == 0' >/dev/null"
}

store_size() { # store_size STORE: bytes the store holds on disk
    if [ "$1" = redb ]; then
        stat -c %s "$FLUX_DIR/data/flux.redb"
    else
        redis-cli -p "$REDIS_PORT" bgrewriteaof >/dev/null
        flux_wait_for 120 sh -c "redis-cli -p $REDIS_PORT info persistence | grep -q 'aof_rewrite_in_progress:0'"
        du -sb "$FLUX_DIR/redis" | cut -f1
    fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

start_store() { # start_store STORE [fluxd args]
    local store="$1"; shift
    local dir
    flux_scratch dir soak
    flux_up_store "$dir" "$store" "$@"
    flux_simulate "$AGENTS" 120
}

for part in $PARTS; do
    case "$part" in
    history)
        for store in $STORES; do
            # Keep the whole history: the default count limit (100,000 per tenant) would
            # collect most of it while it is built, and there would be no history to measure.
            start_store "$store" --job-retention-count "$(( HISTORY * 2 ))"
            echo "==> $store, empty store"
            # The submission probe first, so that the first listing has 20 jobs to return
            # (like every later one), not an empty page.
            sub0=$(probe_submit); drain_queue; list0=$(probe_list); rt0=$(probe_round_trip)
            echo "    list $list0; submit $sub0; round trip $rt0"
            echo "==> $store: building a history of $HISTORY finished jobs"
            t0=$(date +%s)
            # Submissions refused by load shedding (429) do not make jobs, so the build goes
            # on in rounds until HISTORY jobs have finished (at most 5 rounds, all within
            # BUILD_DEADLINE).
            built=0; refused=0
            for _ in 1 2 3 4 5; do
                [ "$built" -lt "$HISTORY" ] || break
                "$BIN/fluxctl" -o json bench jobs --count "$(( HISTORY - built ))" \
                    --duration "$BUILD_DEADLINE" --deadline "$BUILD_DEADLINE" \
                    --concurrency "$CONCURRENCY" >"$FLUX_DIR/history.json" || true
                jq -c . "$FLUX_DIR/history.json"
                built=$(( built + $(jq -r '.jobs' "$FLUX_DIR/history.json") ))
                refused=$(( refused + $(jq -r '.errors' "$FLUX_DIR/history.json") ))
            done
            echo "    $built jobs in $(( $(date +%s) - t0 )) s ($refused refused submissions)"
            sub1=$(probe_submit); drain_queue; list1=$(probe_list); rt1=$(probe_round_trip)
            size=$(store_size "$store")
            cmd="PARTS=history STORES=$store HISTORY=$HISTORY bash scripts/bench-soak.sh"
            flux_result "listing (limit 20), $store, empty → $built jobs of history" "$list0 → $list1" "$cmd"
            flux_result "submission, $store, empty → $built jobs of history" "$sub0 → $sub1" "$cmd"
            flux_result "one-client round trip, $store, empty → $built jobs of history" "$rt0 → $rt1" "$cmd"
            flux_result "store size, $store, $built jobs of history" "$(mib "$size")" "$cmd"
        done ;;
    retention)
        audit_args=()
        if [ "$AUDIT_RETAIN" != 0 ]; then
            audit_args=(--audit-retention "$AUDIT_RETAIN" --audit-verify-every 10s)
        fi
        start_store redb --job-retention "$RETAIN" --gc-interval 5s "${audit_args[@]}"
        echo "==> redb, retention $RETAIN, audit retention $AUDIT_RETAIN, $LOAD_CONCURRENCY clients for $LOAD; size every ${SAMPLE}s"
        "$BIN/fluxctl" -o json bench jobs --count 100000000 --duration "$LOAD" --deadline "$LOAD_DEADLINE" \
            --concurrency "$LOAD_CONCURRENCY" >"$FLUX_DIR/load.json" &
        load_pid=$!
        FLUX_PIDS+=("$load_pid")
        series=()
        t0=$(date +%s)
        while kill -0 "$load_pid" 2>/dev/null; do
            sleep "$SAMPLE"
            kill -0 "$load_pid" 2>/dev/null || break
            [ "$AUDIT_RETAIN" = 0 ] || export_audit
            size=$(store_size redb)
            series+=("$(( $(date +%s) - t0 ))s $(mib "$size")")
            echo "    ${series[-1]} (audit records pruned: $(metric flux_audit_pruned_total))"
        done
        wait "$load_pid" || true
        done_jobs=$(jq -r '.jobs' "$FLUX_DIR/load.json")
        gc=$(collected)
        flux_result "store size under load with --job-retention $RETAIN and audit retention $AUDIT_RETAIN, redb ($done_jobs jobs run, ${gc:-0} collected, $(metric flux_audit_pruned_total) audit records pruned)" \
            "$(IFS=,; echo "${series[*]}")" "PARTS=retention LOAD=$LOAD AUDIT_RETAIN=$AUDIT_RETAIN bash scripts/bench-soak.sh" ;;
    collect)
        start_store redb --job-retention 1h --job-retention-count "$(( BACKLOG * 2 ))" --gc-interval 5s
        echo "==> redb: a backlog of $BACKLOG finished jobs, then retention 1s; collected every 2s"
        "$BIN/fluxctl" -o json bench jobs --count "$BACKLOG" --deadline 1h \
            --concurrency "$CONCURRENCY" >"$FLUX_DIR/load.json" || true
        built=$(jq -r '.jobs' "$FLUX_DIR/load.json")
        drain_queue
        "$BIN/fluxctl" tenants quota set default --job-retention 1s >/dev/null
        # The rate is taken from the first sample that found collected jobs to the last, so
        # that the wait for the collector's first tick does not count.
        t0=$(date +%s); n=0; t1=; n1=0; c1=0
        while [ "${n%.*}" -lt "$built" ] && [ $(( $(date +%s) - t0 )) -lt 600 ]; do
            sleep 2
            n=$(collected); n=${n:-0}; n=${n%.*}
            if [ -z "$t1" ] && [ "$n" -gt 0 ]; then
                t1=$(date +%s); n1=$n; c1=$(flux_cpu_ticks "$FLUXD_PID")
            fi
            echo "    $(( $(date +%s) - t0 ))s $n collected"
        done
        t2=$(date +%s); secs=$(( t2 - ${t1:-$t2} )); secs=$(( secs > 0 ? secs : 1 ))
        cpu=$(( ( $(flux_cpu_ticks "$FLUXD_PID") - c1 ) * 100 / $(getconf CLK_TCK) / secs ))
        flux_result "collection of a $built-job backlog, redb, idle otherwise" \
            "$n of $built in $(( t2 - t0 ))s; $(( (n - n1) / secs )) jobs/s over the last ${secs}s, fluxd ${cpu}% of a core" \
            "PARTS=collect BACKLOG=$BACKLOG bash scripts/bench-soak.sh" ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
