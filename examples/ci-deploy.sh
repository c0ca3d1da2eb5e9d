#!/usr/bin/env bash
# A CI step that runs commands on a fleet node through FluxForge and fails the pipeline when one
# fails. It needs only fluxctl on PATH and the usual environment:
#   FLUX_SERVER=https://cp.example:8443  FLUX_CA=ca.crt  FLUX_TOKEN=<operator token>
#
#   examples/ci-deploy.sh NODE
#
# `fluxctl job run --wait -o json` prints one JSON document ({"job": ..., "output": ...}) and
# exits with the remote exit code, so `set -e` stops at the first failed step.
set -euo pipefail
node="${1:?usage: ci-deploy.sh NODE}"

step() {
    local name="$1"; shift
    local out
    # The idempotency key makes a CI retry of this pipeline run reuse the job instead of
    # running the step twice.
    out=$(fluxctl -o json job run --wait --node "$node" --timeout 10m \
        --idempotency-key "ci-${CI_PIPELINE_ID:-local-$$}-$name" "$@") || {
        echo "step $name failed:" >&2
        echo "$out" >&2
        return 1
    }
    # Pull fields out without jq so the script runs anywhere fluxctl does.
    local job_id exit_code
    job_id=$(printf '%s' "$out" | sed -n 's/^    "job_id": "\(.*\)",$/\1/p' | head -n1)
    exit_code=$(printf '%s' "$out" | sed -n 's/^    "exit_code": \(-\{0,1\}[0-9]*\),\{0,1\}$/\1/p' | head -n1)
    echo "step $name: job $job_id exit $exit_code"
}

step check-disk 'df -h / | tail -n 1'
step uname uname -sr
step deploy 'echo deploying build ${BUILD:-dev} on $(hostname)'
echo "all steps succeeded on $node"
