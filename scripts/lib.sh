# Shared by examples/quickstart.sh and scripts/bench-*.sh: bring up a local fluxd and agents
# from release binaries, and stop them (and a redis-server flux_redis_up started) on exit.
# Source it, then call flux_build, flux_up DIR PORT [fluxd args...] (or flux_up_store DIR
# STORE [fluxd args...]), flux_agent NAME [agent args...].
#
# BIN_DIR=/path/to/release   use the fluxd, flux-agent and fluxctl found there (an older build,
#                            say) instead of building this checkout's release binaries.
# FLUX_RESULTS=FILE          flux_result appends each figure there as "figure|value|command".
#
# Sourcing it moves to the checkout's root (the directory above this file): flux_build and
# the scripts' own paths are relative to it.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || return

flux_build() {
    if [ -n "${BIN_DIR:-}" ]; then
        BIN="$(cd "$BIN_DIR" && pwd)"
    else
        cargo build --quiet --release --bin fluxd --bin flux-agent --bin fluxctl
        BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
    fi
    local b
    for b in fluxd flux-agent fluxctl; do
        [ -x "$BIN/$b" ] || { echo "no $b in $BIN" >&2; return 1; }
    done
    # Large simulated fleets need many sockets on both sides.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

FLUX_PIDS=()
flux_cleanup() {
    for p in "${FLUX_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${FLUX_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    FLUX_PIDS=()
}
# flux_stop_all: stops what flux_up, flux_agent, flux_simulate and flux_redis_up started.
flux_stop_all() { flux_cleanup; flux_redis_down; }

# flux_scratch VAR NAME: makes a fresh directory fluxforge-NAME.XXXXXX under $TMPDIR (or /tmp)
# and stores its path in VAR. A benchmark's stores there reach gigabytes, so these directories
# are removed when the script exits 0, unless FLUX_KEEP=1; a failed run keeps them, and says
# where, for its logs.
FLUX_SCRATCH=()
flux_scratch() {
    local d
    d="$(mktemp -d -t "fluxforge-$2.XXXXXX")" || return 1
    FLUX_SCRATCH+=("$d")
    printf -v "$1" '%s' "$d"
}

# flux_exit [RC]: the EXIT trap (RC: the script's exit status, by default $?). Stops
# everything, then removes or keeps the scratch directories.
flux_exit() {
    local rc="${1:-$?}"
    flux_stop_all
    [ ${#FLUX_SCRATCH[@]} -gt 0 ] || return 0
    if [ "$rc" -eq 0 ] && [ -z "${FLUX_KEEP:-}" ]; then
        rm -rf "${FLUX_SCRATCH[@]}"
    else
        echo "kept (data and logs): ${FLUX_SCRATCH[*]}" >&2
    fi
}
trap flux_exit EXIT

# flux_free_port: prints a TCP port on 127.0.0.1 that nothing listens on right now.
flux_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# flux_wait_for SECONDS COMMAND...: polls COMMAND every 50 ms until it succeeds; 1 on timeout.
flux_wait_for() {
    local limit=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
    until "$@"; do
        [ $(( $(date +%s%N) / 1000000 )) -lt "$limit" ] || return 1
        sleep 0.05
    done
}

# flux_up DIR PORT [extra fluxd args]: starts fluxd and exports what fluxctl needs.
flux_up() {
    FLUX_DIR="$1"; local port="$2"; shift 2
    mkdir -p "$FLUX_DIR"
    export FLUX_SERVER="https://127.0.0.1:$port"
    export FLUX_CA="$FLUX_DIR/data/tls/ca.crt"
    export FLUX_TOKEN_FILE="$FLUX_DIR/data/admin.token"
    export FLUX_CONFIG="$FLUX_DIR/fluxctl.toml"
    unset FLUX_TOKEN FLUX_CONTEXT
    "$BIN/fluxd" --listen "127.0.0.1:$port" --data-dir "$FLUX_DIR/data" --node-id fluxd-1 "$@" \
        >"$FLUX_DIR/fluxd.log" 2>&1 &
    FLUXD_PID=$!
    FLUX_PIDS+=("$FLUXD_PID")
    for _ in $(seq 1 300); do
        [ -s "$FLUX_TOKEN_FILE" ] && [ -s "$FLUX_CA" ] && "$BIN/fluxctl" status >/dev/null 2>&1 && return 0
        kill -0 "$FLUXD_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "fluxd did not come up; its log:" >&2
    cat "$FLUX_DIR/fluxd.log" >&2
    return 1
}

# flux_agent NAME [extra agent args]: creates an agent token for NAME and starts flux-agent.
flux_agent() {
    local name="$1"; shift
    "$BIN/fluxctl" token create --role agent --node-id "$name" --ttl 1d -o json \
        | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' >"$FLUX_DIR/$name.token"
    chmod 600 "$FLUX_DIR/$name.token"
    FLUX_TOKEN_FILE="$FLUX_DIR/$name.token" "$BIN/flux-agent" --server "$FLUX_SERVER" \
        --ca "$FLUX_CA" "$@" >"$FLUX_DIR/agent-$name.log" 2>&1 &
    FLUX_PIDS+=($!)
}

# flux_enroll_agent NAME [agent args]: makes a one-use enrollment token and starts flux-agent
# with it; the agent enrolls as NAME, keeps its own credential in $FLUX_DIR/agent-NAME (0600)
# and renews it itself.
flux_enroll_agent() {
    local name="$1"; shift
    "$BIN/fluxctl" token create --role enroll --uses 1 --ttl 1h -o json \
        | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' >"$FLUX_DIR/$name.enroll"
    chmod 600 "$FLUX_DIR/$name.enroll"
    env -u FLUX_TOKEN_FILE -u FLUX_TOKEN "$BIN/flux-agent" --server "$FLUX_SERVER" --ca "$FLUX_CA" \
        --enroll-token-file "$FLUX_DIR/$name.enroll" --node-id "$name" \
        --state-dir "$FLUX_DIR/agent-$name" "$@" >"$FLUX_DIR/agent-$name.log" 2>&1 &
    FLUX_PIDS+=($!)
}

# flux_wait_agents N: waits until N agents are online.
flux_wait_agents() {
    for _ in $(seq 1 300); do
        [ "$("$BIN/fluxctl" agents list -o json | grep -c '"state": *"online"')" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "agents did not come online" >&2
    return 1
}

# flux_metric NAME: the value of fluxd's unlabelled series NAME (0 if it has none).
flux_metric() {
    curl -sf --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        "$FLUX_SERVER/metrics" | awk -v n="$1" '$1 == n { print $2; f = 1 } END { if (!f) print 0 }'
}

# flux_online: agents online, as the leader counts them (the flux_connected_agents gauge,
# recomputed every --gauges-every).
flux_online() { flux_metric flux_connected_agents; }

# flux_simulate N LIMIT [agent args]: starts `flux-agent --simulate N` with the admin token
# (SIM_PID) and waits up to LIMIT seconds for N agents online. Returns 1 if they are not; the
# simulator keeps running either way (flux_cleanup stops it).
flux_simulate() {
    local n="$1" limit="$2"; shift 2
    local t0; t0=$(date +%s)
    "$BIN/flux-agent" --server "$FLUX_SERVER" --ca "$FLUX_CA" --token-file "$FLUX_TOKEN_FILE" \
        --simulate "$n" "$@" >"$FLUX_DIR/simulator.log" 2>&1 &
    SIM_PID=$!
    FLUX_PIDS+=("$SIM_PID")
    while [ "$(flux_online)" -lt "$n" ]; do
        if [ $(( $(date +%s) - t0 )) -ge "$limit" ] || ! kill -0 "$SIM_PID" 2>/dev/null; then
            SIM_SECS=$(( $(date +%s) - t0 ))
            kill -0 "$SIM_PID" 2>/dev/null || echo "    the simulator exited" >&2
            echo "    only $(flux_online) of $n simulated agents online after ${SIM_SECS}s; simulator log tail:" >&2
            tail -3 "$FLUX_DIR/simulator.log" >&2
            return 1
        fi
        sleep 1
    done
    SIM_SECS=$(( $(date +%s) - t0 ))
    echo "    $n simulated agents online after $SIM_SECS s"
}

# flux_redis_up DIR: a fresh redis-server on a free loopback port with the AOF fsynced on every
# write (appendfsync always); exports FLUX_REDIS_URL, sets REDIS_PID and REDIS_PORT.
flux_redis_up() {
    flux_need redis-server || return 1
    local dir="$1"; mkdir -p "$dir"
    REDIS_PORT=$(flux_free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync always --save '' >"$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    export FLUX_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
    flux_wait_for 10 sh -c "redis-cli -p $REDIS_PORT ping 2>/dev/null | grep -q PONG" || {
        echo "redis-server did not come up" >&2; cat "$dir/redis.log" >&2; return 1; }
}

flux_redis_down() {
    [ -n "${REDIS_PID:-}" ] || return 0
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

# flux_up_store DIR STORE [extra fluxd args]: stops what runs (flux_stop_all), then starts
# fluxd in DIR on a free port, with a fresh redis-server under DIR/redis as its store when
# STORE is redis (redb otherwise).
flux_up_store() {
    local dir="$1" store="$2" args=(); shift 2
    flux_stop_all
    if [ "$store" = redis ]; then flux_redis_up "$dir/redis"; args=(--store "$FLUX_REDIS_URL"); fi
    flux_up "$dir" "$(flux_free_port)" "${args[@]}" "$@"
}

# flux_point_flags AGENTS: sets FLUX_POINT_FLAGS to fluxd's per-node limits raised for AGENTS
# simulated agents that heartbeat every 30 s.
flux_point_flags() {
    FLUX_POINT_FLAGS=(--max-long-polls $(( $1 + 3000 )) --max-requests 4096
        --max-agent-requests 4096 --tenant-share 100 --token-share 100
        --heartbeat-interval 30s --unreachable-after 90s --dead-after 180s)
}

# flux_jobs_defaults: the defaults of the point profile.sh and bench-cpu.sh both measure,
# each kept if already set: AGENTS (1000), STORE (redb), SECS (20), CONCURRENCY (512).
flux_jobs_defaults() {
    AGENTS="${AGENTS:-1000}" STORE="${STORE:-redb}"
    SECS="${SECS:-20}" CONCURRENCY="${CONCURRENCY:-512}"
}

# flux_need CMD...: fails, naming it, when a command is not installed.
flux_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || { echo "$c is not installed" >&2; return 1; }
    done
}

# flux_jobs_point DIR STORE AGENTS [extra fluxd args]: fluxd on STORE (flux_up_store) with
# FLUX_POINT_FLAGS for AGENTS, then those agents, running jobs in no time
# (`--simulate-run-ms 0`): the point profile.sh, bench-cpu.sh and bench-cache.sh measure.
flux_jobs_point() {
    local dir="$1" store="$2" agents="$3"; shift 3
    flux_point_flags "$agents"
    flux_up_store "$dir" "$store" "${FLUX_POINT_FLAGS[@]}" "$@"
    flux_simulate "$agents" "$(( 60 + agents / 250 ))" --simulate-run-ms 0 --label fleet=sim
}

# flux_jobs_window OUT SECS CONCURRENCY: `fluxctl bench jobs` for SECS seconds at CONCURRENCY,
# its JSON report into OUT (a failed run leaves what it wrote; the caller reads OUT).
flux_jobs_window() {
    "$BIN/fluxctl" -o json bench jobs --count 100000000 --duration "${2}s" \
        --concurrency "$3" >"$1" || true
}

# CPU time (utime + stime, in clock ticks) and /proc/<pid>/status fields (in KiB) of a process.
flux_cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
flux_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# flux_json FILE EXPR: one value of a JSON report (jq syntax).
flux_json() { jq -r "$2" "$1"; }

# flux_result FIGURE VALUE COMMAND: prints a figure and appends it to $FLUX_RESULTS if set.
flux_result() {
    echo "RESULT  $1: $2"
    [ -n "${FLUX_RESULTS:-}" ] && printf '%s|%s|%s\n' "$1" "$2" "$3" >>"$FLUX_RESULTS"
    return 0
}

# flux_bench_jobs FIGURE COMMAND [bench jobs args]: runs `fluxctl bench jobs` into
# $FLUX_DIR/bench-jobs.json, prints the report and records FIGURE from it (flux_result), or
# that the run failed.
flux_bench_jobs() {
    local figure="$1" cmd="$2" out="$FLUX_DIR/bench-jobs.json"; shift 2
    "$BIN/fluxctl" -o json bench jobs "$@" >"$out" || true
    if [ -s "$out" ]; then
        jq -c . "$out"
        flux_result "$figure" "$(flux_jobs_summary "$out")" "$cmd"
    else
        flux_result "$figure" "failed (see $FLUX_DIR)" "$cmd"
    fi
}

# flux_jobs_summary FILE: "N jobs/s, p50 X ms, p99 Y ms" (+ errors) from `bench jobs -o json`.
flux_jobs_summary() {
    jq -r '"\(.jobs_per_sec | floor) jobs/s, p50 \(.p50_ms * 10 | round / 10) ms, p99 \(.p99_ms * 10 | round / 10) ms"
        + (if (.errors + .failed + .unfinished) > 0
           then " (\(.errors) errors, \(.failed) failed, \(.unfinished) unfinished)" else "" end)' "$1"
}
