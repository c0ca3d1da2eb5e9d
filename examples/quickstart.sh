#!/usr/bin/env bash
# Brings up a single fluxd (embedded redb store) and one local flux-agent, runs a job through
# fluxctl and through curl (the original quick start), and stops everything on exit.
#
#   bash examples/quickstart.sh            # builds with cargo, then runs
#   FLUX_QS_DIR=/tmp/qs bash examples/quickstart.sh   # keep the data dir somewhere known
set -euo pipefail

cd "$(dirname "$0")/.."
cargo build --quiet --release --bin fluxd --bin flux-agent --bin fluxctl
BIN="$PWD/target/release"

DIR="${FLUX_QS_DIR:-$(mktemp -d -t fluxforge-quickstart.XXXXXX)}"
PORT="${FLUX_QS_PORT:-8443}"
export FLUX_SERVER="https://127.0.0.1:$PORT"
export FLUX_CA="$DIR/data/tls/ca.crt"
export FLUX_TOKEN_FILE="$DIR/data/admin.token"
export FLUX_CONFIG="$DIR/fluxctl.toml"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

echo "==> starting fluxd on $FLUX_SERVER (data in $DIR/data, log $DIR/fluxd.log)"
"$BIN/fluxd" --listen "127.0.0.1:$PORT" --data-dir "$DIR/data" --node-id fluxd-1 >"$DIR/fluxd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    [ -s "$FLUX_TOKEN_FILE" ] && [ -s "$FLUX_CA" ] && "$BIN/fluxctl" status >/dev/null 2>&1 && break
    sleep 0.1
done
"$BIN/fluxctl" status >/dev/null || { cat "$DIR/fluxd.log"; exit 1; }

echo "==> creating an agent token and starting flux-agent as agent-1"
"$BIN/fluxctl" token create --role agent --node-id agent-1 --ttl 1d -o json \
    | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' >"$DIR/agent.token"
chmod 600 "$DIR/agent.token"
FLUX_TOKEN_FILE="$DIR/agent.token" "$BIN/flux-agent" --server "$FLUX_SERVER" --ca "$FLUX_CA" \
    --label role=demo >"$DIR/agent.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    "$BIN/fluxctl" agents list -o json | grep -q '"state": *"online"' && break
    sleep 0.1
done

echo "==> fluxctl job run --wait -n agent-1 'echo Hello FluxForge from \$(hostname)'"
"$BIN/fluxctl" job run --wait -n agent-1 'echo Hello FluxForge from $(hostname)'

if command -v curl >/dev/null; then
    echo "==> the original quick start with curl: POST /jobs"
    curl -sS --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        -H 'Content-Type: application/json' \
        -d '{"command":"echo Hello FluxForge","node_id":"agent-1"}' "$FLUX_SERVER/jobs"
    echo
    echo "==> GET /metrics"
    curl -sS --cacert "$FLUX_CA" "$FLUX_SERVER/metrics" | grep -E '^flux_(leader_status|leader_epoch|connected_agents|queue_depth)'
else
    echo "==> (curl not installed: skipping the curl quick start)"
fi

echo "==> fluxctl job list"
"$BIN/fluxctl" job list
echo "==> fluxctl agents list"
"$BIN/fluxctl" agents list
echo "==> fluxctl status"
"$BIN/fluxctl" status
