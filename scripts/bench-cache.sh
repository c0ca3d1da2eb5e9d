#!/usr/bin/env bash
# The embedded store's page cache (`--store-cache`) against jobs/s, listing latency and
# fluxd's RSS, with AGENTS simulated agents (default 1,000) and `bench jobs` at CONCURRENCY.
#
#  fill  for each size of CACHES in turn, a fresh store and WINDOWS windows of SECS seconds
#        back to back: after each window its jobs/s, fluxd's RSS and the store file's size
#  cold  one store filled by FILL windows (default cache), then for each size of CACHES:
#        fluxd stopped, the kernel's page cache dropped (`echo 3 > /proc/sys/vm/drop_caches`,
#        which needs root), fluxd started again on the same store and port while the
#        simulated agents resume their sessions, one window: jobs/s, `GET /v1/jobs?limit=20`
#        p50 and max over 40 calls, RSS, and the bytes fluxd read from the disk
#
#   bash scripts/bench-cache.sh                        # both parts
#   PARTS=fill CACHES="64MiB 256MiB" WINDOWS=6 bash scripts/bench-cache.sh
#   BIN_DIR=/path/to/old/target/release bash scripts/bench-cache.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PARTS="${PARTS:-fill cold}"
CACHES="${CACHES:-256MiB 1GiB 256MiB 1GiB}"
AGENTS="${AGENTS:-1000}"
WINDOWS="${WINDOWS:-4}"
FILL="${FILL:-5}"
SECS="${SECS:-15}"
CONCURRENCY="${CONCURRENCY:-512}"

flux_build
mib() { echo $(( $1 / 1048576 )); }
rss() { echo "$(( $(flux_kb "$FLUXD_PID" VmRSS) / 1024 )) MiB"; }
file_size() { echo "$(mib "$(stat -c %s "$FLUX_DIR/data/flux.redb")") MiB"; }
rate() { flux_json "$1" '.jobs_per_sec | floor'; }

# list_latency: p50 and max of 40 `GET /v1/jobs?limit=20`, in ms.
list_latency() {
    for _ in $(seq 1 40); do
        curl -s -o /dev/null -w '%{time_total}\n' --cacert "$FLUX_CA" \
            -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" "$FLUX_SERVER/v1/jobs?limit=20"
    done | sort -n | awk '{ a[NR] = $1 } END { printf "p50 %.1f ms, max %.1f ms", a[int((NR + 1) / 2)] * 1000, a[NR] * 1000 }'
}

for part in $PARTS; do
    case "$part" in
    fill)
        for cache in $CACHES; do
            echo "==> --store-cache $cache: a fresh store, $WINDOWS windows of ${SECS}s"
            flux_scratch dir cache
            flux_jobs_point "$dir" redb "$AGENTS" --store-cache "$cache"
            rates=()
            for i in $(seq 1 "$WINDOWS"); do
                flux_jobs_window "$dir/w$i.json" "$SECS" "$CONCURRENCY"
                rates+=("$(rate "$dir/w$i.json")")
                echo "    window $i: ${rates[-1]} jobs/s ($(flux_json "$dir/w$i.json" .jobs) jobs); fluxd RSS $(rss), file $(file_size)"
            done
            flux_result "fill, --store-cache $cache" \
                "jobs/s ${rates[*]}; fluxd RSS $(rss), file $(file_size)" \
                "PARTS=fill CACHES=$cache WINDOWS=$WINDOWS bash scripts/bench-cache.sh"
            flux_stop_all
        done
        ;;
    cold)
        echo "==> a store filled by $FILL windows of ${SECS}s, then fluxd restarted cold per cache"
        flux_scratch dir cache
        flux_jobs_point "$dir" redb "$AGENTS"
        for i in $(seq 1 "$FILL"); do
            flux_jobs_window "$dir/fill$i.json" "$SECS" "$CONCURRENCY"
        done
        port="${FLUX_SERVER##*:}"
        for cache in $CACHES; do
            kill -TERM "$FLUXD_PID"; wait "$FLUXD_PID" || true
            size=$(file_size)
            sync
            echo 3 >/proc/sys/vm/drop_caches 2>/dev/null \
                || echo "    (could not drop the kernel's page cache: not root?)" >&2
            flux_up "$FLUX_DIR" "$port" "${FLUX_POINT_FLAGS[@]}" --store-cache "$cache"
            flux_jobs_window "$dir/cold.json" "$SECS" "$CONCURRENCY"
            read_mib=$(mib "$(awk '$1 == "read_bytes:" { print $2 }' "/proc/$FLUXD_PID/io")")
            flux_result "cold, --store-cache $cache, store $size" \
                "$(rate "$dir/cold.json") jobs/s; list $(list_latency); fluxd RSS $(rss), read $read_mib MiB from the disk" \
                "PARTS=cold bash scripts/bench-cache.sh"
        done
        ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
    esac
done
