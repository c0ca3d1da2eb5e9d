#!/usr/bin/env bash
# Brings up a single fluxd (embedded redb store) and one local flux-agent, runs a job through
# fluxctl and through curl (the original quick start), and stops everything on exit.
#
#   bash examples/quickstart.sh
#   FLUX_QS_DIR=/tmp/qs FLUX_QS_PORT=9443 bash examples/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

flux_build
flux_up "${FLUX_QS_DIR:-$(mktemp -d -t fluxforge-quickstart.XXXXXX)}" "${FLUX_QS_PORT:-8443}"
echo "==> fluxd is up on $FLUX_SERVER (data and logs in $FLUX_DIR)"

echo "==> fluxctl token create --role enroll --uses 1; flux-agent enrolls with it as agent-1"
flux_enroll_agent agent-1 --label role=demo
flux_wait_agents 1

echo "==> fluxctl job run --wait -n agent-1 'echo Hello FluxForge from \$(hostname)'"
"$BIN/fluxctl" job run --wait -n agent-1 'echo Hello FluxForge from $(hostname)'

echo "==> what the agent reported of its machine, and a job placed by selector (labels and facts)"
"$BIN/fluxctl" -o wide agents list
"$BIN/fluxctl" job run --wait -l 'role in (demo),fact.cpus>=1' 'echo placed by selector on $FLUX_NODE_ID'

if command -v curl >/dev/null; then
    echo "==> the original quick start with curl: POST /jobs"
    curl -sS --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        -H 'Content-Type: application/json' \
        -d '{"command":"echo Hello FluxForge","node_id":"agent-1"}' "$FLUX_SERVER/jobs"
    echo
    echo "==> GET /metrics (a token of the cluster tenant, or an unauthenticated --metrics-listen)"
    curl -sS --cacert "$FLUX_CA" -H "Authorization: Bearer $(cat "$FLUX_TOKEN_FILE")" \
        "$FLUX_SERVER/metrics" \
        | grep -E '^flux_(leader_status|leader_epoch|connected_agents|queue_depth) '
else
    echo "==> (curl is not installed: skipping the curl quick start)"
fi

echo "==> a CI-style script: examples/ci-deploy.sh"
PATH="$BIN:$PATH" bash examples/ci-deploy.sh agent-1

echo "==> desired state: fluxctl diff -f examples/state.toml (exit 1: changes pending)"
"$BIN/fluxctl" diff -f examples/state.toml || [ $? -eq 1 ]
echo "==> fluxctl apply -f examples/state.toml --wait"
"$BIN/fluxctl" apply -f examples/state.toml --wait --timeout 60s
echo "==> drift by hand (rm /tmp/fluxforge-demo/motd); the reconciler repairs it within one interval"
rm -f /tmp/fluxforge-demo/motd
for _ in $(seq 1 120); do
    [ -f /tmp/fluxforge-demo/motd ] && break
    sleep 0.25
done
[ -f /tmp/fluxforge-demo/motd ] && echo "repaired: $(cat /tmp/fluxforge-demo/motd)"
"$BIN/fluxctl" get states demo-motd

echo "==> fluxctl job list"
"$BIN/fluxctl" job list
echo "==> fluxctl agents list"
"$BIN/fluxctl" agents list
echo "==> fluxctl status"
"$BIN/fluxctl" status
