# Shared by examples/quickstart.sh and scripts/bench-jobs.sh: bring up a local fluxd (embedded
# store) and agents from release binaries, and stop them on exit. Source it, then call
# flux_build, flux_up DIR PORT [fluxd args...], flux_agent NAME [agent args...].

flux_build() {
    cargo build --quiet --release --bin fluxd --bin flux-agent --bin fluxctl
    BIN="${CARGO_TARGET_DIR:-$PWD/target}/release"
}

FLUX_PIDS=()
flux_cleanup() {
    for p in "${FLUX_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${FLUX_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap flux_cleanup EXIT

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
    FLUX_PIDS+=($!)
    for _ in $(seq 1 200); do
        [ -s "$FLUX_TOKEN_FILE" ] && [ -s "$FLUX_CA" ] && "$BIN/fluxctl" status >/dev/null 2>&1 && return 0
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

# flux_wait_agents N: waits until N agents are online.
flux_wait_agents() {
    for _ in $(seq 1 200); do
        [ "$("$BIN/fluxctl" agents list -o json | grep -c '"state": *"online"')" -ge "$1" ] && return 0
        sleep 0.1
    done
    echo "agents did not come online" >&2
    return 1
}
