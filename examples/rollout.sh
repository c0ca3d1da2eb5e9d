#!/usr/bin/env bash
# Roll a change out to every agent labelled role=web, a tenth at a time, one canary first, and
# stop at the second failure. It needs only fluxctl on PATH and the usual environment:
#   FLUX_SERVER=https://cp.example:8443  FLUX_CA=ca.crt  FLUX_TOKEN=<operator token>
#
#   examples/rollout.sh 'apt-get install -y nginx=1.26.*'
#
# The control plane drives the rollout; this script only follows it. Its exit code is the
# rollout's: 0 every target succeeded, 1 some failed within the budget, 3 the budget or the
# canary stopped it, 130 it was cancelled. On 1 or 3 it offers the retry of what did not succeed.
set -uo pipefail
cmd="${1:?usage: rollout.sh COMMAND}"

out=$(fluxctl -o json job run -l role=web --all \
    --max-concurrency 10% --max-errors 1 --canary 1 \
    --verify "${VERIFY:-true}" --batch-wait "${BATCH_WAIT:-10s}" --timeout 10m \
    --wait -- "$cmd")
rc=$?
id=$(printf '%s' "$out" | sed -n 's/^  "rollout_id": "\(.*\)",$/\1/p' | head -n1)
case $rc in
    0) echo "rollout $id: every target succeeded" ;;
    1|3)
        echo "rollout $id stopped or finished with errors (exit $rc):" >&2
        fluxctl rollout get "$id" >&2
        echo "run the failed, skipped and not started targets again with:" >&2
        echo "  fluxctl rollout retry $id --wait" >&2
        ;;
    130) echo "rollout $id was cancelled" >&2 ;;
    *) echo "fluxctl failed (exit $rc): $out" >&2 ;;
esac
exit $rc
